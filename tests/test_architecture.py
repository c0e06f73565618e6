"""The layering rules of the README's architecture section, checked on the source (.ci/architecture.py)."""

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def arch():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / ".ci" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["architecture"] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_the_tree_has_no_layering_violation(arch):
    modules = arch.read_modules()
    assert len(modules) > 50
    assert arch.violations(modules) == []


def test_the_readme_graph_is_current(arch):
    text = (ROOT / "README.md").read_text()
    drawn = text.split(arch.BEGIN, 1)[1].split(arch.END, 1)[0].strip()
    assert drawn == arch.mermaid(arch.read_modules())


def _tree(tmp_path, files: dict) -> Path:
    for name, body in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))
    return tmp_path


def test_the_checker_finds_each_kind_of_violation(arch, tmp_path):
    root = _tree(tmp_path, {
        "probes/__init__.py": "",
        "probes/errors.py": "from .align import x\n",            # bottom layer importing above it
        "probes/align.py": "from .capture import y\nx = 1\n",
        "probes/capture.py": "from .align import x\ny = 2\n",     # a cycle align <-> capture
        "probes/datasets.py": "from decoders.dfd import z\n",    # probes importing decoders
        "probes/images.py": "def f():\n    from .align import x\n",  # an import inside a function
        "decoders/__init__.py": "",
        "decoders/dfd.py": "from probes.align import _hidden\nz = 3\n",  # a private name
    })
    found = "\n".join(arch.violations(arch.read_modules(root)))
    assert "import cycle: probes.align <-> probes.capture" in found
    assert "probes.datasets (probes) imports decoders.dfd" in found
    assert "probes.errors (bottom layer) imports probes.align" in found
    assert "probes.images imports inside a function" in found
    assert "decoders.dfd imports the private probes.align: _hidden" in found


def test_a_facades_lazy_exports_count_as_its_imports(arch, tmp_path):
    root = _tree(tmp_path, {
        "probes/__init__.py": 'LAZY_EXPORTS = {"verify": "probes.quick"}\n',
        "probes/quick.py": "from probes import verify\n",  # a cycle through the lazy table
        "probes/errors.py": "",
        "decoders/__init__.py": "",
    })
    modules = arch.read_modules(root)
    assert modules["probes"].imports == {"probes.quick"} and not modules["probes"].inner
    assert "import cycle: probes <-> probes.quick" in "\n".join(arch.violations(modules))
    assert not arch.in_bottom_layer("probes") and arch.in_bottom_layer("probes.errors")
