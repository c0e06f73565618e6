"""faceprobe's generating side: face decoders (and later aging GANs) built on :mod:`probes`.

- :mod:`decoders.model`: :class:`~decoders.model.FaceDecoder` (template -> face chip);
- :mod:`decoders.losses`: pixel, Sobel-gradient, LPIPS and identity losses, global and local;
- :mod:`decoders.templates`: templates and target chips of a dataset, cached on disk;
- :mod:`decoders.training`: the generic resumable / distributed :class:`~decoders.training.Trainer`;
- :mod:`decoders.checkpoints`: atomic self-describing checkpoints, ``load_decoder``;
- ``python -m decoders.train``: the training command.

Nothing is imported or loaded at package import time.
"""
