"""Errors about settings of the decoder's use (reconstruction, attack evaluation, perturbation analysis).

The checks name a setting as its config field is called (``max_images must be positive``) through
:func:`probes.cli.setting_error`; a command shows the same message with the setting's flag
(``--max-images must be positive``). :func:`run_and_save` is the part every such command shares.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from probes.cli import flag_names, setting_error
from probes.errors import FaceprobeError
from probes.outputs import check_output_folder, staged_output


class ReconstructionError(FaceprobeError, ValueError):
    """Settings of a reconstruction or an attack evaluation that cannot be used."""


def check_positive(error_type: type[FaceprobeError], setting: str, value: float | None) -> None:
    """Refuse ``value`` of ``setting`` unless it is None (not set) or positive."""
    if value is not None and value <= 0:
        raise setting_error(error_type, "{" + setting + "} must be positive, got {got}", got=value)


def check_choice(error_type: type[FaceprobeError], setting: str, value, choices: Sequence[str]) -> None:
    """Refuse ``value`` of ``setting`` unless it is one of ``choices``."""
    if value not in choices:
        raise setting_error(error_type, "{" + setting + "} must be one of {choices}, got {got!r}",
                            choices=", ".join(choices), got=value)


def run_and_save(job, args: argparse.Namespace, command: list[str], **renamed: str):
    """A command's run of ``job`` (an object with ``check_settings()`` and ``run()``, whose result can
    ``save(folder, command)``): settings and ``--out`` are checked before any work, errors name settings
    by their flags (``renamed``: those whose flag is not their name), and the result is saved into a
    staged ``--out`` (a failure leaves what was there). Returns the result."""
    with flag_names(vars(args), **renamed):
        job.check_settings()
        check_output_folder(args.out, args.overwrite)  # refuse before any work
        result = job.run()
    with staged_output(args.out, args.overwrite) as folder:
        result.save(folder, command)
    return result
