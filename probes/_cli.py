"""Shared command-line helpers."""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help only when there is a default to tell and the help text
    does not already name one (argparse's own formatter prints "(default: None)" for every unset option)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is argparse.SUPPRESS or action.default is False \
                or "default" in text.lower():
            return text
        return super()._get_help_string(action)
