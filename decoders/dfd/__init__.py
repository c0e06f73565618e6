"""The Deep Face Decoder (Križaj et al., EAAI 2024): face templates turned back into face images.

- :mod:`decoders.dfd.model`: :class:`~decoders.dfd.model.FaceDecoder` (template -> face chip);
- :mod:`decoders.dfd.losses`: pixel, Sobel-gradient, LPIPS and identity losses, global and local;
- :mod:`decoders.dfd.templates`: templates and target chips of a dataset, cached on disk;
- :mod:`decoders.dfd.checkpoint`: :func:`~decoders.dfd.checkpoint.load_decoder`;
- :mod:`decoders.dfd.gallery`: galleries of originals beside reconstructions (PNG grid, HTML).

Nothing is imported or loaded at package import time.
"""
