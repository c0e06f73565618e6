"""The one command-line surface of faceprobe: shared options, runtime settings and exit codes.

Every command is parse -> config -> run -> save. The options every command shares are added here,
so a flag means the same thing everywhere:

``--data-root`` folder of the shared face data (default ``$FACEPROBE_DATA``), ``--out`` output
folder, ``--overwrite``, ``--max-images``, ``--backbone``/``--weights``, ``--device``,
``--threads``, ``--batch-size``, ``--seed``, ``--cache-dir``, ``--no-progress``.

Exit codes (:func:`run_command`): 0 success, 2 a usage error (argparse's own, or a
:class:`~probes.errors.FaceprobeError` naming the input at fault), 1 a failure while running
(:class:`~probes.errors.RunFailure`, e.g. a reference check that does not match), 130 Ctrl-C.

A library names a setting as its config field is called (``max_images must be positive``); a command
runs the library inside :func:`flag_names` to show the same message with the setting's flag
(``--max-images must be positive``), so library and command never disagree about a message: the
library makes such errors with :func:`setting_error`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from .errors import FaceprobeError, RunFailure

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help only when there is a default to tell and the help text
    does not already name one (argparse's own formatter prints "(default: None)" for every unset option)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is argparse.SUPPRESS or action.default is False \
                or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def make_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A parser with the shared help formatter; ``description`` is the command module's docstring."""
    first = (description or "").strip().split("\n\n")[0]
    return argparse.ArgumentParser(prog=prog, description=first, formatter_class=DefaultsHelpFormatter)


# --------------------------------------------------------------------------- shared options


def add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", "--data-home", dest="data_root", default=None,
                   help="folder of the shared face data, holding lfw_home/ and utkface/ (default $FACEPROBE_DATA)")


def add_out(p: argparse.ArgumentParser, required: bool = True, default: str | None = None) -> None:
    p.add_argument("--out", required=required and default is None, default=default,
                   help="output folder" + (f" (default {default})" if default else ""))
    p.add_argument("--overwrite", action="store_true",
                   help="replace results already in --out (kept until the new ones are complete)")


def add_max_images(p: argparse.ArgumentParser, default: int | None = None, what: str = "images") -> None:
    p.add_argument("--max-images", type=int, default=default,
                   help=f"use at most this many {what} (a seeded subset)" + ("" if default else "; default all"))


BACKBONE_HELP = ("face-recognition network: a registry name (`python -m probes.backbones list`), "
                 "package.module:function[=arg], path/to/file.py:function[=arg] (the function returns a FaceBackbone "
                 "or an nn.Module, wrapped with wrap_backbone's defaults) or path/to/model.onnx")


def add_backbone(p: argparse.ArgumentParser, default: str | None = "dlib-resnet29", help: str | None = None) -> None:
    p.add_argument("--backbone", default=default,
                   help=help or BACKBONE_HELP)
    p.add_argument("--weights", default=None,
                   help="weight file for --backbone (required for networks whose weights you bring; for "
                        "module:function, a PyTorch state dict loaded into its module)")


def add_runtime(p: argparse.ArgumentParser, batch_size: int | None = 64) -> None:
    """``--device``, ``--threads``, ``--batch-size`` (when given a default) and ``--no-progress``."""
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    if batch_size is not None:
        p.add_argument("--batch-size", type=int, default=batch_size, help="images per forward pass")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=int, default=default, help="random seed (subsets, initialisation)")


def cache_dir_value(value: str) -> str | bool:
    """A ``--cache-dir`` value as the library takes it: "none" (any case) disables the cache (False),
    anything else is the folder (not given: None, the default folder)."""
    return False if value.lower() == "none" else value


def add_cache_dir(p: argparse.ArgumentParser, what: str = "templates and features") -> None:
    p.add_argument("--cache-dir", default=None, type=cache_dir_value,
                   help=f"on-disk cache of {what} ('none' disables; default $FACEPROBE_HOME/cache)")


# --------------------------------------------------------------------------- settings named by their flags


def flag_name(setting: str) -> str:
    """A setting's flag: ``--`` and its name with dashes (``max_images`` -> ``--max-images``)."""
    return "--" + setting.replace("_", "-")


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


@contextlib.contextmanager
def flag_names(settings: Iterable[str], **renamed: str) -> Iterator[None]:
    """Inside, errors made by :func:`setting_error` name each of ``settings`` by its flag
    (:func:`flag_name`), or by the flag ``renamed`` gives it."""
    flags = {name: flag_name(name) for name in settings} | renamed
    try:
        yield
    except FaceprobeError as error:
        template = getattr(error, "setting_template", None)
        if template is not None:
            error.args = (template.format_map(SettingNames(error.setting_values, flags)),)
        raise


# --------------------------------------------------------------------------- running a command


def module_command(module: str, argv: Sequence[str] | None = None) -> list[str]:
    """The command line a run records: ``python -m module`` and its arguments (``argv``, default this
    process's)."""
    return [sys.executable, "-m", module] + list(sys.argv[1:] if argv is None else argv)


def apply_runtime(args: argparse.Namespace) -> None:
    """Apply ``--threads`` and check ``--device`` before any work (a missing GPU is a usage error)."""
    import torch

    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            raise FaceprobeError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    device = getattr(args, "device", None)
    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise FaceprobeError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise FaceprobeError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise FaceprobeError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")


def run_command(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], object],
                argv: Sequence[str] | None = None, name: str | None = None) -> int:
    """Parse ``argv``, apply the runtime options, call ``run(args)``; map errors to exit codes.

    A :class:`FaceprobeError` prints one line ``PROG: error: ...`` on stderr, as argparse does for its
    own usage errors (``name`` overrides the parser's prog), with no traceback, and returns 2; a
    :class:`RunFailure` returns 1.
    """
    args = parser.parse_args(argv)
    prefix = f"{name or parser.prog}: error:"
    try:
        apply_runtime(args)
        run(args)
    except RunFailure as exc:
        print(f"{prefix} {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except FaceprobeError as exc:
        print(f"{prefix} {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK
