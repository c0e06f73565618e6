"""faceprobe's generating side, built on :mod:`probes`: what makes images, and what needs both sides.

- :mod:`decoders.dfd`: the Deep Face Decoder (template -> face), trained by ``python -m decoders.train``
  and used by ``decoders.reconstruct``, ``decoders.evaluate`` (the template-inversion attack) and
  ``decoders.perturbation``;
- :mod:`decoders.aging`: the aging GANs (IPCGAN, Age-cGAN), ``python -m decoders.aging.train``;
- :mod:`decoders.audit`: the audit of an aging model through face models, ``python -m decoders.audit``.

The generic trainer, output folders, statistics and verification thresholds live in :mod:`probes`
(the bottom layer); nothing here is imported or loaded at package import time:
``decoders.load_decoder(name_or_path)`` (a shipped decoder's name, e.g. ``dfd-dlib-resnet29``, or a
checkpoint) imports :mod:`decoders.dfd.checkpoint` on first use.
"""

from __future__ import annotations

import importlib

LAZY_EXPORTS = {"load_decoder": "decoders.dfd.checkpoint"}

__all__ = sorted(LAZY_EXPORTS)


def __getattr__(name: str):
    module = LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'decoders' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY_EXPORTS})
