"""Expressivity probe: mutual information between a layer's features and a face attribute.

Dhar et al. (FG 2020) measure the "expressivity" of a layer for an attribute as I(features; attribute)
estimated with MINE. This package provides that estimator and cheaper / more stable companions, all
returning one :class:`MIResult`:

>>> from probes.expressivity import LinearProbe, MINE
>>> result = MINE(random_state=0).estimate(features, ages)       # doctest: +SKIP
>>> result.estimate, result.ci_low, result.ci_high, result.p_value  # doctest: +SKIP
"""

from .estimators import (
           MINE,
           NWJ,
           SMILE,
           InfoNCE,
           LinearProbe,
           MIEstimator,
           NeuralMIEstimator,
           ProbeBound,
)
from .results import EstimationError, MIResult

__all__ = ["MINE", "NWJ", "SMILE", "EstimationError", "InfoNCE", "LinearProbe", "MIEstimator", "MIResult",
           "NeuralMIEstimator", "ProbeBound"]
