"""One command-line surface: every console script resolves, and shared flags mean the same everywhere."""

import importlib
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
SHARED_HELP = {
    "--data-root": "folder of the shared face data",
    "--device": "torch device: cpu, cuda or cuda:N",
    "--threads": "CPU threads for torch",
    "--no-progress": "no progress bars",
}


def _main(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_script_shows_help_with_the_shared_flags(script, capsys):
    main = _main(SCRIPTS[script])
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag, words in SHARED_HELP.items():
        if flag in text:
            assert words in text, f"{script}: {flag} is not described as elsewhere"


def test_every_command_module_has_a_script():
    targets = {t.partition(":")[0] for t in SCRIPTS.values()}
    commands = {str(p.relative_to(ROOT).with_suffix("")).replace("/", ".")
                for package in ("probes", "decoders") for p in (ROOT / package).glob("**/__main__.py")}
    commands |= {"decoders.train", "decoders.reconstruct", "decoders.evaluate", "decoders.perturbation",
                 "decoders.aging.train", "decoders.aging.ship"}
    assert commands <= targets


def _parser_of(script: str, monkeypatch):
    """The parser a console script builds (caught at parse time, before anything runs)."""
    import argparse

    built = []

    def catch(self, args=None, namespace=None):
        built.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    with pytest.raises(SystemExit):
        _main(SCRIPTS[script])([])
    return built[0]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_option_states_its_default_and_every_command_has_quiet_and_verbose(script, monkeypatch):
    from probes.cli import options_without_default

    parser = _parser_of(script, monkeypatch)
    assert options_without_default(parser) == []
    flags = {s for a in parser._actions for s in a.option_strings}
    assert {"--quiet", "--verbose"} <= flags


def test_options_without_default_finds_an_option_that_does_not_say_it():
    from probes.cli import describe_defaults, make_parser, options_without_default

    p = make_parser("x", None)
    p.add_argument("--given", type=int, default=3, help="shown by the formatter")
    p.add_argument("--unset", type=int, help="says nothing")
    p.add_argument("--from-config", type=float, help="a setting")
    p.add_argument("--flag", action="store_true", help="a switch")
    assert options_without_default(p) == ["x --unset", "x --from-config"]
    describe_defaults(p, {"from_config": 0.5, "unset": None})
    assert options_without_default(p) == ["x --unset"]
    assert "(default: 0.5)" in " ".join(p.format_help().split())


def test_logging_reports_on_stdout_errors_on_stderr_and_quiet_keeps_only_warnings(capsys):
    import logging

    from probes.cli import EXIT_USAGE, make_parser, run_command
    from probes.errors import FaceprobeError

    def run(args):
        logging.getLogger("probes.some_command").info("wrote results")
        logging.getLogger("decoders.other").debug("a detail")
        logging.getLogger("probes.some_command").warning("a caveat")
        if args.fail:
            raise FaceprobeError("--fail was given")

    p = make_parser("prog", None)
    p.add_argument("--fail", action="store_true")
    assert run_command(p, run, []) == 0
    out, err = capsys.readouterr()
    assert out == "wrote results\n" and err == "prog: warning: a caveat\n"
    assert run_command(p, run, ["--verbose"]) == 0
    assert capsys.readouterr().out == "wrote results\na detail\n"
    assert run_command(p, run, ["--quiet", "--fail"]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and err == "prog: warning: a caveat\nprog: error: --fail was given\n"
