"""The Deep Face Decoder (Križaj et al., EAAI 2024): face templates turned back into face images.

- :mod:`decoders.dfd.model`: :class:`~decoders.dfd.model.FaceDecoder` (template -> face chip);
- :mod:`decoders.dfd.losses`: pixel, Sobel-gradient, LPIPS and identity losses, global and local;
- :mod:`decoders.dfd.templates`: templates and target chips of a dataset, cached on disk;
- :mod:`decoders.dfd.checkpoint`: :func:`~decoders.dfd.checkpoint.load_decoder`;
- :mod:`decoders.dfd.gallery`: galleries of originals beside reconstructions (PNG grid, HTML);
- using a trained decoder: :mod:`~decoders.dfd.inputs` (the decoder, its backbone, the run's images),
  :mod:`~decoders.dfd.scoring` (decode, identity/LPIPS/SSIM scores), :mod:`~decoders.dfd.reconstruction`,
  :mod:`~decoders.dfd.attack` (the template-inversion attack; :mod:`~decoders.dfd.attack_result`,
  :mod:`~decoders.dfd.lfw_scores`, :mod:`~decoders.dfd.transfer`) and
  :mod:`~decoders.dfd.perturbation_analysis` (:mod:`~decoders.dfd.perturbation_result`); errors about
  their settings in :mod:`~decoders.dfd.settings`.

Nothing is imported or loaded at package import time.
"""
