"""faceprobe's measuring side: face models, data, labellers, layer capture and measurements.

The one-call API for the common question sits here: :func:`verify` (are two faces the same person, at a
threshold measured for a stated false match rate) and :func:`embed` (templates of photos, detected and
aligned); see :mod:`probes.quick`. They are imported on first use (PEP 562), so ``import probes.errors``
and the other light modules stay as cheap as before. Nothing here downloads or loads weights at import
time. This package never imports :mod:`decoders` (the generating side depends on it, not the reverse).
"""

import importlib

__version__ = "0.1.0"

# name -> the module it comes from, imported when the name is first used. .ci/architecture.py reads this
# table as the package's imports (so the import graph and its cycle check see them).
LAZY_EXPORTS = {"Verification": "probes.quick", "embed": "probes.quick", "verify": "probes.quick"}

__all__ = sorted(LAZY_EXPORTS)


def __getattr__(name: str):
    module = LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'probes' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY_EXPORTS})
