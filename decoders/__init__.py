"""faceprobe's generating side, built on :mod:`probes`: what makes images, and what needs both sides.

- :mod:`decoders.dfd`: the Deep Face Decoder (template -> face), trained by ``python -m decoders.train``
  and used by ``decoders.reconstruct``, ``decoders.evaluate`` (the template-inversion attack) and
  ``decoders.perturbation``;
- :mod:`decoders.aging`: the aging GANs (IPCGAN, Age-cGAN), ``python -m decoders.aging.train``;
- :mod:`decoders.audit`: the audit of an aging model through face models, ``python -m decoders.audit``.

The generic trainer, output folders, statistics and verification thresholds live in :mod:`probes`
(the bottom layer); nothing here is imported or loaded at package import time.
"""
