"""Age-cGAN: face aging with a conditional GAN (Antipov, Baccouche & Dugelay, ICIP 2017).

Trained by the shared :class:`probes.training.Trainer` as one task
(:class:`AgeCGANTask`, checkpoint kind ``"agecgan"``) in two phases:

1. **Conditional GAN** (steps ``0 .. gan_steps - 1``): a DCGAN-like generator
   ``G(z, y)`` (``z``: ``latent_size``-D standard normal, ``y``: one-hot age
   group of :data:`~decoders.aging.groups.AGECGAN_GROUPS`, concatenated to
   ``z`` at the input as in the paper) against a conditional discriminator
   ``D(x, y)``. Deviations from the paper, for short CPU runs: ``D`` is
   spectrally normalised and conditioned by projection (Miyato & Koyama 2018)
   instead of label maps at its second layer; the group also sets G's batch
   norm scales and shifts (``conditional_norm``); the loss is least squares
   (LSGAN) instead of the cross entropy; faces are flipped at random; the
   generator kept is an exponential moving average (EMA) of the trained one.
2. **Encoder** (steps ``gan_steps ..``): ``E(x)`` learns the latent of
   generated faces, ``||E(G_ema(z, y)) - z||^2`` on fresh ``(z, y)`` drawn
   each step (``encoder_batch_size`` of them), with ``G_ema`` frozen. The
   discriminator and generator no longer change.

``log.csv`` has the same columns in both phases: ``phase`` (0 = GAN, 1 =
encoder); in the GAN phase ``latent_mse`` is the (untrained) encoder's error on
the batch's fakes, in the encoder phase the GAN columns are the frozen
networks' losses on the batch (no update). ``val.csv``: ``val_latent_mse`` and
``val_pixel_mse`` on 256 fixed latents, ``val_real_pixel_mse`` of ``G(E(x), y)``
on held-out real faces (its rows during the GAN phase show the untrained
encoder). Sample grids: in the GAN phase one row per fixed latent and one
column per age group; in the encoder phase, per face, the input, its
reconstruction ``G(E(x), y)`` and ``G(E(x), g)`` for every group ``g``.

3. **Latent optimisation** (at aging time, :func:`optimise_latents`): from
   ``z0 = E(x)`` Adam minimises, per face,
   ``pixel_weight * mean((G(z, y_src) - x)^2) + identity_weight *
   d(F(x), F(G(z, y_src))) + prior_weight * mean(z^2)``, ``F`` the frozen
   face-recognition network (:class:`~decoders.aging.identity.IdentityFeatures`,
   default ``dlib-resnet29``; ``d`` Euclidean as in the paper's
   "identity-preserving" optimisation, which used L-BFGS-B and the identity
   term alone), keeping the best ``z*`` seen; the aged face is
   ``G(z*, y_target)``. Settings and defaults: :class:`InversionConfig`. The
   source group ``y_src`` is an argument of :meth:`AgeCGAN.age`; without it,
   the group whose ``G(E(x), g)`` reconstructs ``x`` best is used.

Command (CPU; ``--steps`` counts both phases and must exceed ``gan_steps``)::

    python -m decoders.aging.train agecgan --out runs/agecgan --batch-size 32 --steps 3000 \\
        --set gan_steps=2000 --threads 1

:func:`load_agecgan` (or :func:`decoders.aging.models.load_aging_model`)
returns an :class:`AgeCGAN`, which meets :class:`~decoders.aging.groups.AgingModel`.
The networks take images in [-1, 1]; everything public takes uint8 or [0, 1].

Modules: :mod:`.config` (:class:`AgeCGANConfig`, :class:`InversionConfig`),
:mod:`.networks` (G, D, E), :mod:`.task` (:class:`AgeCGANTask`, :func:`build_task`),
:mod:`.inversion` (:func:`optimise_latents`), :mod:`.model` (:class:`AgeCGAN`, loading).
"""

from .config import GROUPS, KIND, AgeCGANConfig, Config, InversionConfig
from .inversion import latent_objective, optimise_latents
from .model import AgeCGAN, from_checkpoint, generator_from_checkpoint, load_agecgan
from .networks import (
    AgeCGANDiscriminator,
    AgeCGANEncoder,
    AgeCGANGenerator,
    ConditionalBatchNorm,
    build_networks,
    images_to_signed,
    latent_table,
)
from .task import AgeCGANTask, build_task

__all__ = ["GROUPS", "KIND", "AgeCGAN", "AgeCGANConfig", "AgeCGANDiscriminator", "AgeCGANEncoder",
           "AgeCGANGenerator", "AgeCGANTask", "ConditionalBatchNorm", "Config", "InversionConfig", "build_networks",
           "build_task", "from_checkpoint", "generator_from_checkpoint", "images_to_signed", "latent_objective",
           "latent_table", "load_agecgan", "optimise_latents"]
