"""The names :mod:`decoders.aging.nets` has always offered, from where they now live.

New code imports from the modules themselves:

- :mod:`decoders.aging.blocks`: image conversions, condition maps, spectrally normalised layers,
  :class:`ConditionalNorm`, LSGAN losses, the generator EMA, :func:`optimise`, :func:`frozen`;
- :mod:`decoders.aging.classifier`: :class:`AgeGroupClassifier`, its training and loading;
- :mod:`decoders.aging.identity`: :class:`IdentityFeatures` and :class:`EmbeddingCache`.
"""

from .blocks import (
    ConditionalNorm,
    condition_maps,
    ema_copy,
    ema_decay_at,
    frozen,
    images_to_unit,
    lsgan_d_loss,
    lsgan_g_loss,
    lsgan_loss,
    optimise,
    sn_conv2d,
    sn_linear,
    unit_to_uint8,
    update_ema,
)
from .classifier import (
    AGE_CLASSIFIER_KIND,
    AgeClassifierConfig,
    AgeClassifierTask,
    AgeGroupClassifier,
    age_classifier_from_state,
    age_classifier_scores,
    load_age_classifier,
    train_age_classifier,
)
from .identity import EmbeddingCache, IdentityFeatures

__all__ = ["AGE_CLASSIFIER_KIND", "AgeClassifierConfig", "AgeClassifierTask", "AgeGroupClassifier",
           "ConditionalNorm", "EmbeddingCache", "IdentityFeatures", "age_classifier_from_state",
           "age_classifier_scores", "condition_maps", "ema_copy", "ema_decay_at", "frozen", "images_to_unit",
           "load_age_classifier", "lsgan_d_loss", "lsgan_g_loss", "lsgan_loss", "optimise", "sn_conv2d",
           "sn_linear", "train_age_classifier", "unit_to_uint8", "update_ema"]
