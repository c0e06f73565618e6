"""The one command-line surface of faceprobe: shared options, runtime settings and exit codes.

Every command is parse -> config -> run -> save. The options every command shares are added here,
so a flag means the same thing everywhere:

``--data-root`` folder of the shared face data (default ``$FACEPROBE_DATA``), ``--out`` output
folder, ``--overwrite``, ``--max-images``, ``--backbone``/``--weights``, ``--device``,
``--threads``, ``--batch-size``, ``--seed``, ``--cache-dir``, ``--no-progress``; and on every command
``--quiet``/``--verbose``.

Commands report through :mod:`logging` (loggers under ``probes``, ``decoders`` and the running script's
``__main__``), configured by :func:`configure_logging`: information on stdout as plain lines (the
command's report: tables, what was written where), warnings and errors on stderr as
``PROG: warning: ...`` / ``PROG: error: ...``. ``--quiet`` keeps only warnings and errors (and turns off
progress bars), ``--verbose`` adds debug messages.

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
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from .errors import FaceprobeError, RunFailure

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help when there is a default to tell and the help text does
    not already name one (argparse's own formatter prints "(default: None)" for every unset option: an
    option whose default is None says in its help what not giving it means, see
    :func:`options_without_default`)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is argparse.SUPPRESS or action.default is False \
                or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def make_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A parser with the shared help formatter and ``--quiet``/``--verbose``; ``description`` is the
    command module's docstring."""
    first = (description or "").strip().split("\n\n")[0]
    parser = CommandParser(prog=prog, description=first)
    add_verbosity(parser)
    return parser


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with the shared help formatter, which its sub-command parsers inherit."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def add_verbosity(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quiet", "-q", action="store_true",
                       help="report only warnings and errors, no progress bars (default: report progress and results)")
    group.add_argument("--verbose", "-v", action="store_true", help="also report debug messages (default: off)")


def describe_defaults(p: argparse.ArgumentParser, defaults: Mapping[str, object]) -> None:
    """Add "(default: X)" from ``defaults`` (a config's field values) to the help of every option whose
    parser default is None because "not given" must stay distinguishable (e.g. a resumed run keeps its own)."""
    for action in p._actions:
        if action.option_strings and action.default is None and defaults.get(action.dest) is not None \
                and "default" not in (action.help or "").lower():
            value = defaults[action.dest]
            shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            action.help = ((action.help + " ") if action.help else "") + f"(default: {shown})"


def options_without_default(p: argparse.ArgumentParser) -> list[str]:
    """The optional, valued options of ``p`` (and its sub-commands) whose help shows no default: what
    the help test keeps empty."""
    missing = []
    one_of = {a for group in p._mutually_exclusive_groups if group.required for a in group._group_actions}
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                missing += options_without_default(sub)
            continue
        if not action.option_strings or action.required or action.nargs == 0 or action in one_of:
            continue
        if "default" not in p._get_formatter()._get_help_string(action).lower():
            missing.append(f"{p.prog} {action.option_strings[0]}")
    return missing


# --------------------------------------------------------------------------- shared options


def add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", "--data-home", dest="data_root", default=None,
                   help="folder of the shared face data, holding lfw_home/ and utkface/ (default $FACEPROBE_DATA)")


def add_out(p: argparse.ArgumentParser, required: bool = True, default: str | None = None,
            default_text: str | None = None) -> None:
    """``--out`` and ``--overwrite``; ``default_text`` says where an optional ``--out`` without a fixed
    default goes."""
    shown = default or default_text
    p.add_argument("--out", required=required and default is None, default=default,
                   help="output folder" + (f" (default {shown})" if shown else ""))
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
                        "module:function, a PyTorch state dict loaded into its module; default: the backbone's "
                        "own weights)")


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


LOGGERS = ("probes", "decoders", "experiments", "benchmarks", "__main__")


class _CurrentStream(logging.StreamHandler):
    """A handler writing to whatever ``sys.stdout``/``sys.stderr`` is when a message is emitted (so a
    redirected stream, e.g. pytest's capture, receives it)."""

    def __init__(self, name: str):
        self._stream_name = name
        super().__init__()

    @property
    def stream(self):
        return getattr(sys, self._stream_name)

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns one; the current stream is used instead
        pass


class _Format(logging.Formatter):
    def __init__(self, prog: str):
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{self.prog}: {record.levelname.lower()}: {message}"
        return message


_handlers: list[logging.Handler] = []


def configure_logging(prog: str, quiet: bool = False, verbose: bool = False) -> None:
    """Report through :mod:`logging`: INFO/DEBUG lines on stdout as they are, warnings and errors on
    stderr as ``PROG: warning: ...``; ``quiet`` keeps warnings and errors only, ``verbose`` adds DEBUG.
    Calling it again replaces the handlers it added before."""
    root = logging.getLogger()
    for handler in _handlers:
        root.removeHandler(handler)
    _handlers.clear()
    out, err = _CurrentStream("stdout"), _CurrentStream("stderr")
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(_Format(prog))
        root.addHandler(handler)
        _handlers.append(handler)
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    for name in LOGGERS:
        logging.getLogger(name).setLevel(level)


def run_command(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], object],
                argv: Sequence[str] | None = None, name: str | None = None) -> int:
    """Parse ``argv``, configure logging (``--quiet``/``--verbose``), apply the runtime options, call
    ``run(args)``; map errors to exit codes.

    A :class:`FaceprobeError` logs one line ``PROG: error: ...`` on stderr, as argparse does for its
    own usage errors (``name`` overrides the parser's prog), with no traceback, and returns 2; a
    :class:`RunFailure` returns 1.
    """
    args = parser.parse_args(argv)
    prog = name or parser.prog
    quiet = bool(getattr(args, "quiet", False))
    configure_logging(prog, quiet, bool(getattr(args, "verbose", False)))
    if quiet and hasattr(args, "no_progress"):
        args.no_progress = True
    log = logging.getLogger("probes.cli")
    try:
        apply_runtime(args)
        run(args)
    except RunFailure as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    except FaceprobeError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    return EXIT_OK
