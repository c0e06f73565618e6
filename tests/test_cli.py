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
