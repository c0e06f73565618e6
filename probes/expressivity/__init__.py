"""Expressivity probe: mutual information between a layer's features and a face attribute.

Dhar et al. (FG 2020) measure the "expressivity" of a layer for an attribute as I(features; attribute)
estimated with MINE. This package provides that estimator and cheaper / more stable companions, all
returning one :class:`MIResult`:

>>> from probes.expressivity import LinearProbe, MINE
>>> result = MINE(random_state=0).estimate(features, ages)       # doctest: +SKIP
>>> result.estimate, result.ci_low, result.ci_high, result.p_value  # doctest: +SKIP

The per-layer sweep of a face network (``python -m probes.expressivity``) is
:class:`~probes.expressivity.pipeline.ExpressivitySweep` (not imported here: it loads the backbones,
datasets and labellers):

>>> from probes.expressivity.pipeline import ExpressivityConfig, ExpressivitySweep
>>> result = ExpressivitySweep(ExpressivityConfig(dataset="utkface", max_images=500)).run()  # doctest: +SKIP
>>> result.save("runs/expressivity")                                                         # doctest: +SKIP
"""

from .base import MIEstimator
from .linear_probe import LinearProbe, ProbeBound
from .neural import MINE, NWJ, SMILE, InfoNCE, NeuralMIEstimator
from .results import EstimationError, MIResult

__all__ = ["MINE", "NWJ", "SMILE", "EstimationError", "InfoNCE", "LinearProbe", "MIEstimator", "MIResult",
           "NeuralMIEstimator", "ProbeBound"]
