"""Errors about settings of the decoder's use (reconstruction, attack evaluation, perturbation analysis).

The library names a setting as its config field is called (``max_images must be positive``); a
command runs the library inside :func:`flag_names` to show the same message with the setting's flag
(``--max-images must be positive``), so library and command never disagree about a message.
:func:`run_and_save` is the part every such command shares.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

from probes.errors import FaceprobeError
from probes.outputs import check_output_folder, staged_output


class ReconstructionError(FaceprobeError, ValueError):
    """Settings of a reconstruction or an attack evaluation that cannot be used."""


class SettingNames(dict):
    """``str.format_map`` values where every field not given a value is a setting, shown by ``names``."""

    def __init__(self, values: Mapping, names: Mapping[str, str]):
        super().__init__(values)
        self.names = names

    def __missing__(self, setting: str) -> str:
        return self.names.get(setting, setting)


def setting_error(error_type: type[FaceprobeError], template: str, **values) -> FaceprobeError:
    """An ``error_type`` whose message is ``template`` filled in: fields given in ``values`` take those
    values, every other field names a setting (its config name here; its flag under :func:`flag_names`)."""
    error = error_type(template.format_map(SettingNames(values, {})))
    error.setting_template, error.setting_values = template, values
    return error


def check_positive(error_type: type[FaceprobeError], setting: str, value: float | None) -> None:
    """Refuse ``value`` of ``setting`` unless it is None (not set) or positive."""
    if value is not None and value <= 0:
        raise setting_error(error_type, "{" + setting + "} must be positive, got {got}", got=value)


def check_choice(error_type: type[FaceprobeError], setting: str, value, choices: Sequence[str]) -> None:
    """Refuse ``value`` of ``setting`` unless it is one of ``choices``."""
    if value not in choices:
        raise setting_error(error_type, "{" + setting + "} must be one of {choices}, got {got!r}",
                            choices=", ".join(choices), got=value)


@contextlib.contextmanager
def flag_names(settings: Iterable[str], **renamed: str) -> Iterator[None]:
    """Inside, errors made by :func:`setting_error` name each of ``settings`` by its flag: ``--`` and the
    name with dashes (``max_images`` -> ``--max-images``), or the flag ``renamed`` gives it."""
    flags = {name: "--" + name.replace("_", "-") for name in settings} | renamed
    try:
        yield
    except FaceprobeError as error:
        template = getattr(error, "setting_template", None)
        if template is not None:
            error.args = (template.format_map(SettingNames(error.setting_values, flags)),)
        raise


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
