"""Every mutual-information estimator I(X; y) by its sweep name, and the classes themselves.

All estimators are scikit-learn style (see :mod:`probes.expressivity.base` for what they share):
:class:`LinearProbe` (alias :class:`ProbeBound`), the cheap stable default, in
:mod:`~probes.expressivity.linear_probe`; :class:`MINE`, :class:`NWJ`, :class:`SMILE` and :class:`InfoNCE`
(one training loop, different bound) in :mod:`~probes.expressivity.neural`.
"""

from __future__ import annotations

from ..errors import UnknownNameError
from .base import MIEstimator
from .linear_probe import LinearProbe, ProbeBound
from .neural import MINE, NWJ, SMILE, InfoNCE, NeuralMIEstimator

__all__ = ["ESTIMATORS", "MINE", "NWJ", "SMILE", "InfoNCE", "LinearProbe", "MIEstimator", "NeuralMIEstimator",
           "ProbeBound", "make_estimator"]

ESTIMATORS: dict[str, type[MIEstimator]] = {
    "probe": LinearProbe, "mine": MINE, "nwj": NWJ, "smile": SMILE, "infonce": InfoNCE}


def make_estimator(name: str, random_state: int = 0, **params) -> MIEstimator:
    """An estimator by its sweep name (``probe``, ``mine``, ``nwj``, ``smile``, ``infonce``)."""
    try:
        cls = ESTIMATORS[name.lower()]
    except KeyError:
        raise UnknownNameError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}") from None
    return cls(random_state=random_state, **params)
