"""Mutual-information estimators I(X; y) between layer features X and one attribute y.

All estimators are scikit-learn style: hyper-parameters and ``random_state`` go to ``__init__``,
``fit(X, y)`` learns and returns ``self`` with the answer in ``result_`` (an :class:`MIResult`),
and ``estimate(X, y)`` is ``fit(X, y).result_``. They share:

* input checks (:class:`EstimationError` naming ``X``/``y``) and ``attribute_kind`` resolution
  ("auto": non-numeric, boolean, or integer-valued with <= 20 distinct values -> discrete);
* a random split into a training part and a held-out evaluation part (neural estimators also carve
  a validation part for early stopping); every transform (standardisation, PCA, rank scores) is
  fitted on the training part only;
* the read-off on held-out data, reported as ``max(0, bound)`` (I >= 0, so clipping keeps a lower bound a
  lower bound; the unclipped value is ``diagnostics["raw_estimate"]``);
* a 95% CI: bootstrap over the evaluation split with the fitted model fixed (rows resampled, the bound
  recomputed), as the percentile interval of the replicates re-centred on the point estimate. It measures
  evaluation-sample noise only; training randomness shows across ``random_state`` values;
* a permutation p-value ``(1 + #{null >= observed}) / (1 + B)``. ``permutation="heldout"`` (default)
  shuffles y within the evaluation split and recomputes the statistic with the fitted model fixed.
  The model never saw the evaluation split, so under independence the evaluation pairs are
  exchangeable and this is an exact permutation test conditional on the fitted model; it costs B
  forward passes, not B fits. ``permutation="refit"`` re-runs the whole ``fit`` on shuffled y
  (same ``random_state``), an unconditional test that costs B fits.

Estimators: :class:`LinearProbe` (alias :class:`ProbeBound`), the cheap stable default;
:class:`MINE`, :class:`NWJ`, :class:`SMILE`, :class:`InfoNCE` (one training loop, different bound).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, clone

from .ceilings import cap_at_ceiling
from .inputs import Checked, check_inputs
from .results import EstimationError, MIResult


@dataclass
class FitCore:
    """What a fitted estimator hands the shared CI / permutation machinery."""

    raw: float
    n_eval: int
    bootstrap: Callable[[int, np.random.Generator], np.ndarray]
    heldout_null: Callable[[int, np.random.Generator], np.ndarray]
    diagnostics: dict = field(default_factory=dict)


class MIEstimator(BaseEstimator):
    """Base class: validation, CI, permutation test and timing around a subclass's ``_fit_core``,
    which returns a :class:`FitCore`."""

    def _name(self) -> str:
        return type(self).__name__

    def _min_samples(self) -> int:
        return 20

    def estimate(self, X, y, groups=None) -> MIResult:
        """Fit on (X, y) and return the :class:`MIResult` (``groups``: see :meth:`fit`)."""
        return self.fit(X, y, groups).result_

    def fit(self, X, y, groups=None):
        """Estimate I(X; y); the answer is in ``self.result_``. Returns ``self``.

        ``groups`` (one label per row, e.g. the person): every split keeps a group on one side, so rows
        that depend on each other (several images of one person) never sit on both sides of it.
        """
        start = time.perf_counter()
        self._check_common_params()
        data = check_inputs(X, y, self.attribute_kind, self._min_samples(), groups)
        rng = np.random.default_rng(self.random_state)
        core = self._fit_core(data, rng)
        raw = float(core.raw)
        diag = dict(core.diagnostics)
        diag["raw_estimate"] = raw

        lo = hi = float("nan")
        if self.n_bootstrap > 0 and math.isfinite(raw):
            reps = np.asarray(core.bootstrap(self.n_bootstrap, rng), dtype=np.float64)
            reps = reps[np.isfinite(reps)]
            if len(reps):
                alpha = 1.0 - self.ci_level
                centred = reps - reps.mean()
                lo = raw + float(np.quantile(centred, alpha / 2))
                hi = raw + float(np.quantile(centred, 1 - alpha / 2))
                diag["bootstrap_sd"] = float(reps.std(ddof=1)) if len(reps) > 1 else 0.0

        p_value = float("nan")
        if self.n_permutations > 0:
            if self.permutation == "heldout":
                null = np.asarray(core.heldout_null(self.n_permutations, rng), dtype=np.float64)
            else:
                null = self._refit_null(data, rng)
            # The test is of the reported estimate (clipped at 0), so an estimate of 0 never comes with a
            # small p-value: a null value counts when it reaches the estimate as reported.
            p_value = float((1 + np.sum(np.maximum(null, 0.0) >= max(raw, 0.0))) / (1 + len(null)))
            diag["null_mean"] = float(np.mean(null))
            diag["null_q95"] = float(np.quantile(null, 0.95))

        estimate = max(0.0, raw)
        lo, hi = (max(0.0, v) if math.isfinite(v) else v for v in (lo, hi))
        if "label_entropy_nats" in diag:
            # I(X; y) <= H(y): a discrete label's estimate never passes the entropy of the labels it is read on.
            estimate, lo, hi, diag["capped_at_entropy"] = cap_at_ceiling(estimate, lo, hi, diag["label_entropy_nats"])
        self.result_ = MIResult(
            estimate=estimate, ci_low=lo, ci_high=hi, n_samples=len(data.X), n_eval=core.n_eval,
            wall_time_s=time.perf_counter() - start, p_value=p_value, estimator=self._name(),
            attribute_kind=data.kind, diagnostics=diag, ci_level=self.ci_level)
        return self

    def _refit_null(self, data: Checked, rng: np.random.Generator) -> np.ndarray:
        # Same hyper-parameters and random_state on shuffled y: the estimate becomes a fixed
        # function of the data, so (observed, null fits) are exchangeable under independence.
        worker = clone(self).set_params(n_bootstrap=0, n_permutations=0, attribute_kind=data.kind)
        y = data.y
        null = []
        for _ in range(self.n_permutations):
            fitted = clone(worker).fit(data.X, y[rng.permutation(len(y))], data.groups)
            null.append(fitted.result_.diagnostics["raw_estimate"])
        return np.asarray(null)

    def _check_common_params(self) -> None:
        for name in ("n_bootstrap", "n_permutations"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 0:
                raise EstimationError(f"{name}={v!r}: expected a non-negative int")
        if not (0.0 < self.ci_level < 1.0):
            raise EstimationError(f"ci_level={self.ci_level!r}: expected a level in (0, 1)")
        if self.permutation not in ("heldout", "refit"):
            raise EstimationError(f"permutation={self.permutation!r}: expected 'heldout' or 'refit'")

    def _fit_core(self, data: Checked, rng: np.random.Generator) -> FitCore:
        raise NotImplementedError
