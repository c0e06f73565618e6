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

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from ._data import Checked, Preprocessor, check_fractions, check_inputs, split_indices
from .bounds import (
    ConcatCritic,
    DonskerVaradhan,
    GaussianBaseline,
    ResidualCritic,
    SeparableCritic,
    SoftmaxBaseline,
    batch_scores,
    make_bound,
)
from .results import EstimationError, MIResult

__all__ = ["MINE", "NWJ", "SMILE", "InfoNCE", "LinearProbe", "MIEstimator", "NeuralMIEstimator", "ProbeBound"]


@dataclass
class _Core:
    """What a fitted estimator hands the shared CI / permutation machinery."""

    raw: float
    n_eval: int
    bootstrap: Callable[[int, np.random.Generator], np.ndarray]
    heldout_null: Callable[[int, np.random.Generator], np.ndarray]
    diagnostics: dict = field(default_factory=dict)


class MIEstimator(BaseEstimator):
    """Base class: validation, CI, permutation test and timing around a subclass's ``_fit_core``."""

    def _name(self) -> str:
        return type(self).__name__

    def _min_samples(self) -> int:
        return 20

    def estimate(self, X, y) -> MIResult:
        """Fit on (X, y) and return the :class:`MIResult`."""
        return self.fit(X, y).result_

    def fit(self, X, y):
        """Estimate I(X; y); the answer is in ``self.result_``. Returns ``self``."""
        start = time.perf_counter()
        self._check_common_params()
        data = check_inputs(X, y, self.attribute_kind, self._min_samples())
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
            p_value = float((1 + np.sum(null >= raw)) / (1 + len(null)))
            diag["null_mean"] = float(np.mean(null))
            diag["null_q95"] = float(np.quantile(null, 0.95))

        self.result_ = MIResult(
            estimate=max(0.0, raw), ci_low=max(0.0, lo) if math.isfinite(lo) else lo,
            ci_high=max(0.0, hi) if math.isfinite(hi) else hi, n_samples=len(data.X), n_eval=core.n_eval,
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
            fitted = clone(worker).fit(data.X, y[rng.permutation(len(y))])
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

    def _fit_core(self, data: Checked, rng: np.random.Generator) -> _Core:
        raise NotImplementedError


# ------------------------------------------------------------------------------------- linear probe


class LinearProbe(MIEstimator):
    """Cheap, stable MI lower bounds from a linear predictor of y, scored on held-out data.

    * Discrete y: ``I >= H(Y) - CE``, with H(Y) the plug-in entropy of the training label frequencies
      and CE the held-out cross-entropy of a linear classifier (Barber-Agakov bound; it holds for any
      classifier scored on data it never saw). Up to ``max_logistic_classes`` classes the classifier is a
      multinomial logistic regression; ``C="auto"`` picks C from ``Cs`` on a validation part of the
      training split, then refits on all of it. With more classes (identities) it is shrinkage LDA (a
      linear classifier in closed form: shared covariance, Ledoit-Wolf shrinkage) whose log-probabilities
      are divided by a temperature fitted on a validation part of the training split: an iterative
      multinomial fit costs O(n d K) per iteration, about a second per iteration for 1,000+ identities.
      Predicted probabilities are mixed with weight 1/(n_train + 1) with the (add-1/2 smoothed) training
      label frequencies, so classes absent from training cost a finite amount. The plug-in H(Y) is biased
      low for many rare classes (identities), which keeps the bound conservative.
    * Continuous y: ``I >= 0.5 log det Cov(y) - 0.5 log det E[r r^T]`` on held-out data, r = y - ridge(X)
      (ridge with the penalty per attribute chosen by exact leave-one-out error over ``alphas``); for one
      attribute this is ``-0.5 log(1 - R^2_heldout)``, 0 when R^2 <= 0. Exact for jointly Gaussian (X, y);
      a lower bound whenever y is Gaussian, because a Gaussian has the largest entropy for its variance.
      ``y_transform="rank"`` maps y to normal scores first, which makes a scalar y Gaussian (so the bound
      holds for any continuous y) and the estimate invariant to monotone maps of y.

    Parameters
    ----------
    attribute_kind: "auto" | "continuous" | "discrete"
    C: "auto" or a float, inverse L2 strength of the logistic regression (features are standardised).
        The search fits len(Cs) models.
    Cs: candidate C values for ``C="auto"``.
    classifier: "auto" (logistic up to ``max_logistic_classes`` classes, LDA above), "logistic" or "lda".
    max_logistic_classes: where "auto" switches to LDA.
    alphas: ridge penalties tried (None: 1e-2 .. 1e5).
    eval_fraction: held-out share the bound is computed on.
    pca: None, "auto" (128 whitened components when d > 256) or an int; fitted on the training split.
    y_transform: "standardize" or "rank" (continuous y only).
    n_bootstrap, n_permutations, permutation, ci_level: see the module docstring.
    max_iter: iteration cap of the logistic regression solver.
    random_state: seed for the split, bootstrap and permutations.
    """

    def __init__(self, attribute_kind="auto", C="auto", Cs=(1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0), alphas=None,
                 eval_fraction=0.3, pca=None, y_transform="standardize", n_bootstrap=200, n_permutations=200,
                 permutation="heldout", ci_level=0.95, max_iter=300, classifier="auto", max_logistic_classes=50,
                 random_state=None):
        self.attribute_kind = attribute_kind
        self.C = C
        self.Cs = Cs
        self.classifier = classifier
        self.max_logistic_classes = max_logistic_classes
        self.alphas = alphas
        self.eval_fraction = eval_fraction
        self.pca = pca
        self.y_transform = y_transform
        self.n_bootstrap = n_bootstrap
        self.n_permutations = n_permutations
        self.permutation = permutation
        self.ci_level = ci_level
        self.max_iter = max_iter
        self.random_state = random_state

    def _fit_core(self, data: Checked, rng: np.random.Generator) -> _Core:
        fractions = check_fractions(None, self.eval_fraction)
        strata = data.y if data.kind == "discrete" else None
        train, test = split_indices(len(data.X), fractions, rng, strata)
        if len(train) < 10 or len(test) < 10:
            raise EstimationError(f"X has {len(data.X)} samples: the train/eval split ({len(train)}/{len(test)}) "
                                  "leaves fewer than 10 on a side")
        prep = Preprocessor(self.pca, self.y_transform).fit(data.X[train], data.y[train], data.kind)
        Xtr, Xte = prep.transform_X(data.X[train]), prep.transform_X(data.X[test])
        ytr, yte = prep.transform_y(data.y[train]), prep.transform_y(data.y[test])
        diag = {"n_train": len(train), "n_features": data.X.shape[1], "n_features_used": prep.n_features_out_,
                "pca_variance_kept": prep.pca_variance_kept_}
        if data.kind == "discrete":
            return self._discrete(Xtr, ytr, Xte, yte, len(data.classes), rng, diag)
        return self._continuous(Xtr, ytr, Xte, yte, diag)

    # -- discrete: H(Y) - held-out cross-entropy
    def _discrete(self, Xtr, ytr, Xte, yte, n_classes, rng, diag) -> _Core:
        if len(np.unique(ytr)) < 2:
            raise EstimationError("y has a single class in the training split; pass more samples per class")
        counts = np.bincount(ytr, minlength=n_classes).astype(np.float64)
        freq = counts / counts.sum()
        h_y = float(-np.sum(freq[freq > 0] * np.log(freq[freq > 0])))
        prior = (counts + 0.5) / (counts.sum() + 0.5 * n_classes)
        coef, intercept = self.linear_logits(Xtr, ytr, n_classes, rng, diag)
        proba = _softmax(Xte @ coef + intercept)
        lam = 1.0 / (len(ytr) + 1.0)
        logq = np.log((1.0 - lam) * proba + lam * prior)  # (n_eval, n_classes)
        n = len(yte)
        ce_rows = -logq[np.arange(n), yte]
        diag.update(entropy_y=h_y, cross_entropy=float(ce_rows.mean()), n_classes=int(n_classes))

        def bootstrap(B, g):
            idx = g.integers(n, size=(B, n))
            return h_y - ce_rows[idx].mean(axis=1)

        def heldout_null(B, g):
            return np.array([h_y + logq[np.arange(n), yte[g.permutation(n)]].mean() for _ in range(B)])

        return _Core(h_y - ce_rows.mean(), n, bootstrap, heldout_null, diag)

    def linear_logits(self, Xtr, ytr, n_classes, rng, diag) -> tuple[np.ndarray, np.ndarray]:
        """Fit the linear classifier on (Xtr, ytr): ``(coef (d, K), intercept (K,))`` with class logits
        ``X @ coef + intercept`` over all ``n_classes`` codes (classes absent from ytr get a logit of -1e4,
        i.e. probability 0 before the prior mix). Shared with the neural estimators' linear baseline."""
        if self.classifier not in ("auto", "logistic", "lda"):
            raise EstimationError(f"classifier={self.classifier!r}: expected 'auto', 'logistic' or 'lda'")
        use_lda = self.classifier == "lda" or (self.classifier == "auto" and n_classes > self.max_logistic_classes)
        diag["classifier"] = "lda" if use_lda else "logistic"
        coef = np.zeros((Xtr.shape[1], n_classes))
        intercept = np.full(n_classes, _ABSENT_LOGIT)
        if use_lda:
            classes, w, b = self._lda_logits(Xtr, ytr, rng, diag)
        else:
            classes, w, b = self._logistic_logits(Xtr, ytr, rng, diag)
        coef[:, classes], intercept[classes] = w, b
        return coef, intercept

    def _logistic_logits(self, Xtr, ytr, rng, diag):
        C = self.C
        if isinstance(C, str):
            if C != "auto":
                raise EstimationError(f"C={C!r}: expected 'auto' or a positive float")
            C = self._choose_C(Xtr, ytr, rng, diag)
        elif not C > 0:
            raise EstimationError(f"C={C!r}: expected 'auto' or a positive float")
        with warnings.catch_warnings():  # an unconverged solver still gives a valid (looser) bound
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = self._logistic(C).fit(Xtr, ytr)
        diag["solver_converged"] = bool(np.all(model.n_iter_ < self.max_iter))
        diag["C"] = float(C)
        if len(model.classes_) == 2:  # binary: sigmoid(z) = softmax([0, z])
            w = np.stack([np.zeros(Xtr.shape[1]), model.coef_[0]], axis=1)
            return model.classes_, w, np.array([0.0, model.intercept_[0]])
        return model.classes_, model.coef_.T, model.intercept_

    def _lda_logits(self, Xtr, ytr, rng, diag):
        """Shrinkage-LDA logits at a temperature chosen on a validation part of the training split."""
        inner, val = split_indices(len(ytr), (0.8, 0.2), rng, ytr)
        temperature = 1.0
        if len(val) and len(np.unique(ytr[inner])) >= 2:
            lda = _fit_lda(Xtr[inner], ytr[inner])
            seen = np.isin(ytr[val], lda.classes_)
            if seen.any():
                logits = lda.decision_function(Xtr[val][seen])
                target = np.searchsorted(lda.classes_, ytr[val][seen])
                temperature = _fit_temperature(logits, target)
        lda = _fit_lda(Xtr, ytr)
        diag.update(temperature=float(temperature), shrinkage=float(lda.shrinkage_))
        return lda.classes_, lda.coef_ / temperature, lda.intercept_ / temperature

    def _logistic(self, C, warm_start=False):
        return LogisticRegression(C=C, max_iter=self.max_iter, warm_start=warm_start)

    def _choose_C(self, Xtr, ytr, rng, diag) -> float:
        inner, val = split_indices(len(ytr), (0.8, 0.2), rng, ytr)
        seen = np.unique(ytr[inner])
        if len(seen) < 2 or len(val) == 0:
            return 1.0
        model = self._logistic(1.0, warm_start=True)  # warm starts along increasing C: a cheap path
        mask = np.isin(ytr[val], seen)
        lookup = np.searchsorted(seen, ytr[val][mask])
        scores = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for C in sorted(self.Cs):
                model.set_params(C=C).fit(Xtr[inner], ytr[inner])
                p = model.predict_proba(Xtr[val][mask])[np.arange(mask.sum()), lookup]
                scores.append(-np.mean(np.log(np.maximum(p, 1e-12))))
        best = float(sorted(self.Cs)[int(np.argmin(scores))])
        diag["C_search"] = dict(zip(map(float, sorted(self.Cs)), map(float, scores)))
        return best

    # -- continuous: Gaussian bound from held-out ridge residuals
    def _continuous(self, Xtr, ytr, Xte, yte, diag) -> _Core:
        alphas = _RIDGE_ALPHAS if self.alphas is None else np.asarray(self.alphas, dtype=np.float64)
        weight, bias, _, alpha = ridge_loo(Xtr, ytr, alphas)
        resid = yte - (Xte @ weight.T + bias)
        n = len(yte)

        def stat(y, r):
            yc = y - y.mean(axis=0)
            _, ld_y = np.linalg.slogdet(yc.T @ yc / len(y))
            _, ld_r = np.linalg.slogdet(r.T @ r / len(r))
            return 0.5 * (ld_y - ld_r)

        raw = stat(yte, resid)
        pred = yte - resid
        r2 = 1.0 - np.mean(resid**2, axis=0) / yte.var(axis=0)
        diag.update(alpha=alpha.astype(float).tolist(), r2_heldout=r2.tolist())

        def bootstrap(B, g):
            out = np.empty(B)
            for b in range(B):
                idx = g.integers(n, size=n)
                out[b] = stat(yte[idx], resid[idx])
            return out

        def heldout_null(B, g):
            out = np.empty(B)
            for b in range(B):
                ys = yte[g.permutation(n)]
                out[b] = stat(ys, ys - pred)
            return out

        return _Core(raw, n, bootstrap, heldout_null, diag)


class _SharedCovarianceLDA:
    """Linear discriminant analysis: class means, one pooled within-class covariance shrunk by Ledoit-Wolf.

    Closed form, O(n d^2 + d^2 K); classes with a single sample are fine (they share the pooled spread).
    ``decision_function`` gives the log-posterior up to a per-row constant, always N x K.
    """

    def fit(self, X: np.ndarray, y: np.ndarray):
        from sklearn.covariance import ledoit_wolf

        self.classes_, index = np.unique(y, return_inverse=True)
        counts = np.bincount(index).astype(np.float64)
        means = np.zeros((len(self.classes_), X.shape[1]))
        np.add.at(means, index, X)
        means /= counts[:, None]
        cov, self.shrinkage_ = ledoit_wolf(X - means[index], assume_centered=True)
        self.coef_ = np.linalg.solve(cov, means.T)  # d x K
        self.intercept_ = -0.5 * np.einsum("kd,dk->k", means, self.coef_) + np.log(counts / counts.sum())
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef_ + self.intercept_


def _fit_lda(X: np.ndarray, y: np.ndarray) -> _SharedCovarianceLDA:
    return _SharedCovarianceLDA().fit(X, y)


def _fit_temperature(logits: np.ndarray, target: np.ndarray) -> float:
    """The T > 0 minimising the cross-entropy of softmax(logits / T) (a 1-D search on log T)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    rows = np.arange(len(target))

    def ce(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, target].mean())

    found = minimize_scalar(ce, bounds=(np.log(1e-2), np.log(1e4)), method="bounded", options={"xatol": 1e-2})
    return float(np.exp(found.x))


ProbeBound = LinearProbe

_RIDGE_ALPHAS = np.logspace(-2, 5, 15)  # ridge penalties tried by default (probe and baseline alike)
_ABSENT_LOGIT = -1e4  # logit of a class never seen in training: probability 0 before the prior mix


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------- neural bounds


class NeuralMIEstimator(MIEstimator):
    """Variational MI lower bounds with a neural critic T(x, y), one training loop for all bounds.

    ``bound``: "dv" (MINE), "nwj", "smile" or "infonce"; the subclasses :class:`MINE`, :class:`NWJ`,
    :class:`SMILE` and :class:`InfoNCE` fix it (leave ``bound=None`` there).

    Critic. The concat critic is, by default (``baseline="auto"``), a residual one: T = T0 + MLP([x, y]),
    where T0 = log q(y | x) - log q(y) is the log density ratio of a linear model fitted on the training
    split (ridge regression with Gaussian residuals whose covariance comes from leave-one-out residuals for
    a continuous y; :class:`LinearProbe`'s classifier for a discrete y) and the MLP's last layer starts at
    zero. For a continuous y the Gaussian model is fitted to y itself or to its normal scores (a monotone
    map, which leaves the density ratio unchanged; it suits a skewed or near-binary y such as P(male)),
    whichever gives the larger DV bound on the training split, and no baseline when neither is positive.
    Besides [x, y], the MLP reads the baseline's view of each pair (the residual y - W x - b, or
    log q(y | x)), so a sharp function of the residual is easy to learn. T0 is the optimal critic when
    (x, y) are jointly Gaussian, and its bound is about LinearProbe's estimate otherwise, so training
    starts there and only has to learn what a linear model misses; the kept critic is chosen on
    validation data from step 0 on (the baseline alone is a candidate). A plain
    MLP critic has to find a direction in many features from a few thousand samples and memorises them
    first: on the closed-form benchmark (n = 5,000) it fell 0.065-0.11 nats short on 128-D and 8 x 8 Gaussian
    tasks where the residual critic is within 0.04 (benchmarks/README.md). ``baseline=None`` gives the
    plain critic of Belghazi et al.; the separable critic has no baseline.

    Procedure. Features are standardised (and, with ``pca``, projected on whitened principal axes),
    a continuous y standardised (or rank-normalised), all fitted on the training split; a discrete y
    enters the critic one-hot. Data are split train / validation / evaluation
    (``1 - val_fraction - eval_fraction`` / ``val_fraction`` / ``eval_fraction``, stratified for a
    discrete y). The critic is trained with Adam on batches of ``batch_size`` pairs; negatives (samples
    of the product of marginals) are the batch's other y's: ``n_negatives`` re-pairings per row for the
    concat critic, all other rows for the separable one. Every ``eval_every`` steps the bound is computed
    on (up to ``max_val_samples`` of) the validation split with fixed negatives and smoothed with an
    exponential average (weight ``smoothing`` on the newest value); the weights at the best smoothed value
    are kept. When it has not improved for ``patience`` checks (after ``min_steps``) training resumes from
    the kept weights with the learning rate times ``lr_drop_factor``, at most ``n_lr_drops`` times, then
    stops; ``diagnostics["converged"]`` records whether it stopped that way before ``max_steps``.

    Read-off rule: the bound of the kept (early-stopping) critic, computed once on the evaluation split,
    which played no part in training or in choosing the step. Not the maximum over training: the
    training-set bound of a flexible critic keeps rising as it memorises pairs (4x the truth at N = 10k,
    d = 512 in measurements here), and the maximum of a noisy held-out curve is biased upwards by the
    selection itself; the last held-out value is no better, as overfitting drives it below zero. A
    separate validation split removes the selection bias, and the evaluation-split value is an honest
    (noisy, slightly conservative) lower-bound estimate whose noise the bootstrap CI measures.

    Parameters
    ----------
    critic: "concat" (MLP on [x, y]), "separable" (f(x) . g(y)) or "auto" (separable for InfoNCE,
        which needs many negatives, concat otherwise).
    hidden: hidden widths of the critic MLP(s); (32, 32) by default: on top of the linear baseline, (64, 64)
        was no more accurate on the closed-form tasks and took 1.6x longer per step. embed_dim: output size
        of f and g (separable).
    batch_size: pairs per step; "auto" is 512, or the whole training split when it is smaller (at least
        32 training rows are required either way).
    max_steps, min_steps, learning_rate, weight_decay: optimisation (Adam). ``learning_rate="auto"``
        (default) is 1e-2 / sqrt(d), d the number of features entering the critic (after ``pca``): 1e-2 for
        1-D features, 8.8e-4 for 128-D. Low-dimensional high-MI tasks then converge in about half the
        steps of 1e-3, while many-feature critics, which memorise a few thousand samples within a few
        hundred steps at 1e-2, keep about the old 1e-3. ``diagnostics["learning_rate"]`` has the value used.
    n_lr_drops, lr_drop_factor: learning-rate drops on a validation plateau, see above.
    n_negatives: re-pairings per row per batch for the concat critic (None: 1 for MINE's DV as in
        Belghazi et al.; 4 otherwise); ignored by the separable critic (uses all).
    eval_negatives: re-pairings per row when scoring validation / evaluation data with the concat critic
        (the separable critic uses all pairs of up to 4096 rows).
    baseline: "auto" (linear for the concat critic, none for the separable one), "linear" or None; see Critic.
    tol: the smallest rise of the smoothed validation bound (nats) that counts as progress; slower creeping
        does not hold off the plateau rule (weights are still kept at the best value).
    eval_every, patience, smoothing, max_val_samples: early stopping, see above. Each check scores the
        validation split with ``eval_negatives + 1`` pairings per row. Checks every 80 steps with
        patience 3 (a 240-step window): with the residual critic and ``tol`` this stopped the slowest
        closed-form tasks (additive uniform, mixture, sectors) 20-40% sooner than every 100 with
        patience 4, at the same accuracy over three seeds.
    val_fraction, eval_fraction: split sizes (default 0.5 / 0.2 / 0.3: the evaluation split sets the noise of the
        estimate, about 0.03 nats sd at n = 5,000 for 1 nat, and the baseline needs little training data).
    pca: None (default), an int, or "auto" (128 whitened components when d > 256). A projection fitted
        on the training split cannot raise MI, so the estimate stays a lower bound, and fewer inputs mean
        a smaller first layer; but directions with little variance and much information are lost (on
        isotropic synthetic features PCA to 128 of 512 dims discards ~3/4 of a random signal direction),
        so it is off by default; ``diagnostics["pca_variance_kept"]`` reports what a projection kept.
    y_transform: "standardize" or "rank" (normal scores; invariance to monotone maps of y).
    ema_rate: MINE's moving-average rate for the gradient denominator (None: plain DV gradient).
    tau: SMILE's clipping threshold.
    n_bootstrap, n_permutations, permutation, ci_level: see the module docstring. The bootstrap
        resamples evaluation rows i together with their scored re-pairings T(x_i, y_j), so each replicate
        has as many marginal pairs as the point estimate (for DV the marginal term is the log-mean-exp over
        the resampled rows' re-pairings; re-scoring fresh pairs within each resample would cost
        n_bootstrap x n_eval x eval_negatives critic passes). The held-out permutation statistic is the
        mean critic score of the evaluation pairs, T(x_i, y_sigma(i)); the null values are reported in
        estimate units by subtracting the (pairing-free) rest of the bound.
    device: torch device for the critic.
    n_threads: torch intra-op threads while fitting (restored afterwards). 1 by default: a critic this
        small gains little from more, and several threads on a shared 2-core machine slow it several-fold;
        run estimates in parallel processes instead. None keeps torch's setting.
    random_state: seeds the split, critic initialisation, batches, bootstrap and permutations.
    """

    _bound = "dv"

    def __init__(self, bound=None, critic="auto", hidden=(32, 32), embed_dim=32, batch_size="auto", max_steps=5000,
                 min_steps=300, learning_rate="auto", n_lr_drops=1, lr_drop_factor=0.25, weight_decay=0.0,
                 n_negatives=None, eval_negatives=16,
                 eval_every=80, patience=3, smoothing=0.5, max_val_samples=2048, val_fraction=0.2,
                 eval_fraction=0.3, pca=None, y_transform="standardize", ema_rate=0.01, tau=5.0,
                 attribute_kind="auto", n_bootstrap=200, n_permutations=200, permutation="heldout",
                 ci_level=0.95, device="cpu", n_threads=1, baseline="auto", tol=0.005, random_state=None):
        self.baseline = baseline
        self.tol = tol
        self.bound = bound
        self.critic = critic
        self.hidden = hidden
        self.embed_dim = embed_dim
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.min_steps = min_steps
        self.learning_rate = learning_rate
        self.n_lr_drops = n_lr_drops
        self.lr_drop_factor = lr_drop_factor
        self.weight_decay = weight_decay
        self.n_negatives = n_negatives
        self.eval_negatives = eval_negatives
        self.eval_every = eval_every
        self.patience = patience
        self.smoothing = smoothing
        self.max_val_samples = max_val_samples
        self.val_fraction = val_fraction
        self.eval_fraction = eval_fraction
        self.pca = pca
        self.y_transform = y_transform
        self.ema_rate = ema_rate
        self.tau = tau
        self.attribute_kind = attribute_kind
        self.n_bootstrap = n_bootstrap
        self.n_permutations = n_permutations
        self.permutation = permutation
        self.ci_level = ci_level
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, X, y):
        previous = torch.get_num_threads()
        if self.n_threads is not None:
            torch.set_num_threads(int(self.n_threads))
        try:
            return super().fit(X, y)
        finally:
            torch.set_num_threads(previous)

    # -- resolved settings
    def _bound_name(self) -> str:
        name = self._bound if self.bound is None else self.bound
        if type(self) is not NeuralMIEstimator and self.bound not in (None, self._bound):
            raise EstimationError(f"bound={self.bound!r}: {type(self).__name__} always uses {self._bound!r}; "
                                  f"use NeuralMIEstimator(bound={self.bound!r})")
        if name not in ("dv", "nwj", "smile", "infonce"):
            raise EstimationError(f"bound={name!r}: expected 'dv', 'nwj', 'smile' or 'infonce'")
        return name

    def _critic_kind(self) -> str:
        if self.critic == "auto":
            return "separable" if self._bound_name() == "infonce" else "concat"
        if self.critic not in ("concat", "separable"):
            raise EstimationError(f"critic={self.critic!r}: expected 'auto', 'concat' or 'separable'")
        return self.critic

    def _baseline_kind(self, critic_kind: str) -> str | None:
        if self.baseline == "auto":
            return "linear" if critic_kind == "concat" else None
        if self.baseline is None or self.baseline == "none":
            return None
        if self.baseline != "linear":
            raise EstimationError(f"baseline={self.baseline!r}: expected 'auto', 'linear' or None")
        if critic_kind != "concat":
            raise EstimationError("baseline='linear' needs critic='concat' (a separable critic scores all pairs "
                                  "as one matrix product); pass baseline=None")
        return "linear"

    def _name(self) -> str:
        bound = self._bound_name()
        base = {"dv": "MINE", "nwj": "NWJ", "smile": f"SMILE(tau={self.tau:g})", "infonce": "InfoNCE"}[bound]
        default_critic = "separable" if bound == "infonce" else "concat"
        return base if self._critic_kind() == default_critic else f"{base}[{self._critic_kind()}]"

    def _min_samples(self) -> int:
        return 20

    def _check_params(self) -> None:
        if self.batch_size != "auto" and (not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 2):
            raise EstimationError(f"batch_size={self.batch_size!r}: expected 'auto' or an int >= 2")
        for name in ("max_steps", "eval_every", "patience", "max_val_samples", "eval_negatives"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise EstimationError(f"{name}={v!r}: expected a positive int")
        if self.n_negatives is not None and (not isinstance(self.n_negatives, (int, np.integer))
                                             or self.n_negatives < 1):
            raise EstimationError(f"n_negatives={self.n_negatives!r}: expected None or a positive int")
        if isinstance(self.learning_rate, str) and self.learning_rate != "auto":
            raise EstimationError(f"learning_rate={self.learning_rate!r}: expected 'auto' or a float > 0")
        if not isinstance(self.learning_rate, str) and not self.learning_rate > 0:
            raise EstimationError(f"learning_rate={self.learning_rate!r}: expected 'auto' or a float > 0")
        if not (isinstance(self.tol, (int, float)) and self.tol >= 0):
            raise EstimationError(f"tol={self.tol!r}: expected a number of nats >= 0")
        if not 0.0 < self.smoothing <= 1.0:
            raise EstimationError(f"smoothing={self.smoothing!r}: expected a weight in (0, 1]")

    # -- the fit
    def _fit_core(self, data: Checked, rng: np.random.Generator) -> _Core:
        self._check_params()
        bound = make_bound(self._bound_name(), self.ema_rate, self.tau)
        kind = self._critic_kind()
        fractions = check_fractions(self.val_fraction, self.eval_fraction)
        strata = data.y if data.kind == "discrete" else None
        train, val, test = split_indices(len(data.X), fractions, rng, strata)
        batch_size = min(_AUTO_BATCH, len(train)) if self.batch_size == "auto" else int(self.batch_size)
        if len(train) < max(batch_size, _MIN_BATCH):
            raise EstimationError(
                f"X has {len(data.X)} samples: the training split ({len(train)}) is smaller than "
                f"batch_size={max(batch_size, _MIN_BATCH)}; pass more samples or a smaller batch_size")
        if min(len(val), len(test)) < 10:
            raise EstimationError(f"X has {len(data.X)} samples: validation/evaluation splits "
                                  f"({len(val)}/{len(test)}) need at least 10 each")
        # Row order must be random: negatives pair row i with row i + s.
        val, test = rng.permutation(val)[: self.max_val_samples], rng.permutation(test)
        prep = Preprocessor(self.pca, self.y_transform).fit(data.X[train], data.y[train], data.kind)
        dev = torch.device(self.device)

        def tensors(idx):
            x = torch.as_tensor(prep.transform_X(data.X[idx]), dtype=torch.float32, device=dev)
            y = prep.transform_y(data.y[idx])
            y = torch.as_tensor(y, dtype=torch.long if data.kind == "discrete" else torch.float32, device=dev)
            return x, y

        (xtr, ytr), (xva, yva), (xte, yte) = tensors(train), tensors(val), tensors(test)
        n_classes = len(data.classes) if data.kind == "discrete" else None
        d_y = 1 if data.kind == "discrete" else ytr.shape[1]
        critic_seed = int(rng.integers(2**31 - 1))
        baseline_kind = self._baseline_kind(kind)
        baseline_diag: dict = {}
        fitted = None
        if baseline_kind == "linear":
            Xb, yb = prep.transform_X(data.X[train]), prep.transform_y(data.y[train])
            fitted = _linear_baseline(Xb, yb, n_classes, rng, baseline_diag)
            if fitted is None:
                baseline_kind = None  # no linear critic beats T = 0 on the training split
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(critic_seed)
            if kind == "separable":
                critic = SeparableCritic(prep.n_features_out_, d_y, n_classes, self.hidden, self.embed_dim)
            else:
                critic = ConcatCritic(prep.n_features_out_, d_y, n_classes, self.hidden)
            if fitted is not None:
                critic = ResidualCritic(critic, fitted)
        critic.to(dev)

        n_neg = self.n_negatives if self.n_negatives is not None else (1 if bound.name == "dv" else 4)
        shifts_val = _shifts(len(val), self.eval_negatives, rng)
        shifts_test = _shifts(len(test), self.eval_negatives, rng)
        lr = self._resolved_lr(prep.n_features_out_)
        curve, best_state, stop, steps = self._train(critic, bound, xtr, ytr, xva, yva, n_neg, shifts_val, rng, lr,
                                                     batch_size)

        diag = {"n_train": len(train), "n_val": len(val), "n_features": data.X.shape[1],
                "n_features_used": prep.n_features_out_, "pca_variance_kept": prep.pca_variance_kept_,
                "critic": kind, "baseline": baseline_kind, "baseline_fit": baseline_diag,
                "bound": bound.name, "learning_rate": lr, "batch_size": batch_size, "stop_reason": stop,
                "converged": stop == "plateau", "steps": steps,
                "chosen_step": best_state["step"], "val_at_chosen": best_state["val"],
                "val_smoothed_at_chosen": best_state["smoothed"],
                "train_at_chosen": best_state["train"]}
        with torch.no_grad():
            diag["eval_bound_final_weights"] = float(bound.value(*_split_scores(critic, xte, yte, shifts_test)))
            critic.load_state_dict(best_state["weights"])
            critic.eval()
            ex, ey = critic.encode_x(xte), critic.encode_y(yte)
            joint, neg = _encoded_scores(critic, ex, ey, shifts_test)
            raw = float(bound.value(joint, neg))
        diag["curve"] = _thin(curve, 120)
        self.critic_ = critic
        self.preprocessor_ = prep
        n = len(test)
        joint_np = joint.cpu().numpy().astype(np.float64)

        def bootstrap(B, g):
            # Resample evaluation rows, each with its scored re-pairings (same count of negative pairs as
            # the point estimate, so the spread of the replicates matches its sampling noise).
            idx = g.integers(n, size=(B, n))
            chunk = max(1, _CHUNK_ROWS // n)  # replicates per gather, bounding memory
            with torch.no_grad():
                return np.concatenate([
                    bound.resampled_values(joint, neg, torch.as_tensor(idx[i: i + chunk], device=dev)).cpu().numpy()
                    for i in range(0, B, chunk)]).astype(np.float64)

        def heldout_null(B, g):
            # Statistic: mean T(x_i, y_i) on the evaluation pairs; reported in estimate units
            # (raw + null mean - observed mean), the rest of the bound being pairing-free.
            # Several permutations share one critic pass (rows stacked), same draws as one at a time.
            perms = np.stack([g.permutation(n) for _ in range(B)]) if B else np.empty((0, n), dtype=np.int64)
            chunk = max(1, _CHUNK_ROWS // n)
            observed = joint_np.mean()
            out = []
            with torch.no_grad():
                for i in range(0, B, chunk):
                    p = torch.as_tensor(perms[i: i + chunk], device=dev)
                    scores = critic.score_pairs(ex.repeat(len(p), 1), ey[p.reshape(-1)]).reshape(len(p), n)
                    out.append(scores.double().mean(dim=1).cpu().numpy())
            return raw + np.concatenate(out) - observed if out else np.empty(0)

        return _Core(raw, n, bootstrap, heldout_null, diag)

    def _resolved_lr(self, n_features: int) -> float:
        if self.learning_rate != "auto":
            return float(self.learning_rate)
        # Few inputs: the critic must become a sharp function (high MI) and overfits little, so large
        # steps pay; many inputs: a 5,000-sample training set is memorised within a few hundred steps
        # of a large step size. 1e-2 / sqrt(d) bridges the two (measured: benchmarks/README.md, MINE speed).
        return 1e-2 / math.sqrt(max(1, n_features))

    def _train(self, critic, bound, xtr, ytr, xva, yva, n_neg, shifts_val, rng, lr, batch_size):
        opt = torch.optim.Adam(critic.parameters(), lr=lr, weight_decay=self.weight_decay, foreach=True)
        bound.reset()
        n, B = len(xtr), batch_size
        use_shifts = not critic.separable
        curve = {"step": [], "train": [], "val": [], "val_smoothed": [], "lr_drops": []}
        best = {"smoothed": -math.inf, "step": 0, "val": float("nan"), "train": float("nan"),
                "weights": copy.deepcopy(critic.state_dict())}
        order, pos = rng.permutation(n), 0
        smoothed, train_avg, stale, stop, step = None, None, 0, "max_steps", 0
        reference = -math.inf  # smoothed value at the last improvement of more than tol
        if isinstance(critic, ResidualCritic):  # the baseline alone is a candidate: training may only add
            critic.eval()
            with torch.no_grad():
                v0 = float(bound.value(*_split_scores(critic, xva, yva, shifts_val)))
            if math.isfinite(v0):
                smoothed = reference = v0
                best.update(smoothed=v0, val=v0)
                for key, value in (("step", 0), ("train", float("nan")), ("val", v0), ("val_smoothed", v0)):
                    curve[key].append(value)
        for step in range(1, self.max_steps + 1):
            if pos + B > n:
                order, pos = rng.permutation(n), 0
            idx = torch.as_tensor(order[pos: pos + B], device=xtr.device)
            pos += B
            critic.train()
            shifts = rng.choice(np.arange(1, B), size=min(n_neg, B - 1), replace=False) if use_shifts else None
            joint, neg = batch_scores(critic, critic.encode_x(xtr[idx]), critic.encode_y(ytr[idx]), shifts)
            loss = bound.loss(joint, neg)
            if not torch.isfinite(loss):
                stop = "diverged"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % self.eval_every and step != self.max_steps:
                continue
            with torch.no_grad():  # training-batch bound, averaged over checks (a noisy over-fitting gauge)
                tv = float(bound.value(joint, neg))
            train_avg = tv if train_avg is None else 0.7 * train_avg + 0.3 * tv
            critic.eval()
            with torch.no_grad():
                v = float(bound.value(*_split_scores(critic, xva, yva, shifts_val)))
            if not math.isfinite(v):
                stop = "diverged"
                break
            smoothed = v if smoothed is None else (1 - self.smoothing) * smoothed + self.smoothing * v
            for key, value in (("step", step), ("train", train_avg), ("val", v), ("val_smoothed", smoothed)):
                curve[key].append(value)
            if smoothed > best["smoothed"]:
                best = {"smoothed": smoothed, "step": step, "val": v, "train": train_avg,
                        "weights": copy.deepcopy(critic.state_dict())}
            if smoothed > reference + self.tol:
                reference, stale = smoothed, 0
            else:
                stale += 1
                if stale >= self.patience and step >= self.min_steps:
                    if len(curve["lr_drops"]) >= self.n_lr_drops:
                        stop = "plateau"
                        break
                    # Plateau: go back to the best weights and continue with a smaller step size.
                    lr *= self.lr_drop_factor
                    critic.load_state_dict(best["weights"])
                    opt = torch.optim.Adam(critic.parameters(), lr=lr, weight_decay=self.weight_decay, foreach=True)
                    curve["lr_drops"].append(step)
                    stale = 0
        return curve, best, stop, step


class MINE(NeuralMIEstimator):
    """MINE (Belghazi et al. 2018): Donsker-Varadhan bound, moving-average-corrected gradient, concat critic.

    See :class:`NeuralMIEstimator` for the parameters, the procedure and the read-off rule.
    """

    _bound = "dv"


class NWJ(NeuralMIEstimator):
    """NWJ / f-divergence bound (Nguyen et al. 2010). See :class:`NeuralMIEstimator`."""

    _bound = "nwj"


class SMILE(NeuralMIEstimator):
    """SMILE (Song & Ermon 2020): JS-trained critic, clipped DV read-off (``tau``, default 5).
    See :class:`NeuralMIEstimator`."""

    _bound = "smile"


class InfoNCE(NeuralMIEstimator):
    """InfoNCE (van den Oord et al. 2018) with a separable critic and all in-batch negatives; capped at
    log(batch_size) in training and log(n_eval) at read-off. See :class:`NeuralMIEstimator`."""

    _bound = "infonce"


# ------------------------------------------------------------------------------------------ helpers

_AUTO_BATCH = 512  # batch_size="auto": this many pairs, or the whole training split when it is smaller
_MIN_BATCH = 32  # fewer training rows than this make a noisy critic; refuse rather than mislead
_MATRIX_MAX = 4096  # separable critic: score all pairs up to this many rows
_CHUNK_ROWS = 65536  # rows per batched bootstrap / permutation pass


def _shifts(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(np.arange(1, n), size=min(k, n - 1), replace=False)


def _encoded_scores(critic, ex, ey, shifts):
    if critic.separable and len(ex) <= _MATRIX_MAX:
        return batch_scores(critic, ex, ey, None)
    return batch_scores(critic, ex, ey, shifts)


def _split_scores(critic, x, y, shifts):
    return _encoded_scores(critic, critic.encode_x(x), critic.encode_y(y), shifts)


def _linear_baseline(X: np.ndarray, y: np.ndarray, n_classes: int | None, rng: np.random.Generator,
                     diag: dict):
    """The frozen linear critic T0 fitted on the (preprocessed) training split: the log density ratio of a
    ridge-Gaussian model (continuous y; residual covariance from leave-one-out residuals, so it is not
    over-confident) or of LinearProbe's classifier (discrete y)."""
    if n_classes is None:
        # Two candidate maps of y: none, and normal scores (monotone, so the density ratio is the same);
        # the one whose T0 has the larger DV bound on the training split is kept, and none at all when
        # neither bound is positive (T0 = 0 scores 0).
        candidates = {"identity": _gaussian_baseline(X, y, None, None)}
        y_knots, z_knots = _normal_score_knots(y)
        candidates["normal-scores"] = _gaussian_baseline(X, y, y_knots, z_knots)
        xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
        shifts = np.arange(1, 9) * max(1, len(X) // 9)  # fixed: the fit's random stream stays untouched
        scores = {}
        with torch.no_grad():
            for name, base in candidates.items():
                ex, ey = base.encode_x(xt), base.encode_y(yt)
                neg = torch.stack([base.score(ex, torch.roll(ey, -int(k), dims=0)) for k in shifts], dim=1)
                scores[name] = float(DonskerVaradhan().value(base.score(ex, ey), neg))
        scores = {k: (v if math.isfinite(v) else -math.inf) for k, v in scores.items()}
        best = max(scores, key=scores.get)
        diag.update(train_dv={k: round(v, 4) for k, v in scores.items()}, y_map=best if scores[best] > 0 else None)
        return candidates[best] if scores[best] > 0 else None
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    prior = (counts + 0.5) / (counts.sum() + 0.5 * n_classes)
    coef, intercept = LinearProbe().linear_logits(X, y, n_classes, rng, diag)
    return SoftmaxBaseline(coef, intercept, prior, 1.0 / (len(y) + 1.0))


def _gaussian_baseline(X, y, y_knots, z_knots) -> GaussianBaseline:
    """Ridge-Gaussian T0 of (the optionally mapped) y on X, residual covariance from leave-one-out residuals."""
    target = y
    if y_knots is not None:
        target = np.stack([np.interp(y[:, j], y_knots[j], z_knots[j]) for j in range(y.shape[1])], axis=1)
    weight, bias, loo_resid, _ = ridge_loo(X, target, _RIDGE_ALPHAS)
    y_cov = np.atleast_2d(np.cov(target, rowvar=False))
    resid_cov = np.atleast_2d(np.cov(loo_resid, rowvar=False))
    return GaussianBaseline(weight, bias, resid_cov, target.mean(axis=0), y_cov, y_knots, z_knots)


def _normal_score_knots(y: np.ndarray, n_knots: int = 257) -> tuple[np.ndarray, np.ndarray]:
    """Per-column knots of a piecewise-linear normal-score map: distinct y quantiles and Phi^-1 of their
    mid-ranks (ties, as in a saturated attribute, share one knot). Columns with fewer distinct knots are
    padded past their maximum with a flat z, so all columns have the same number of knots."""
    from scipy.special import ndtri

    n = len(y)
    columns = []
    for col in y.T:
        ordered = np.sort(col)
        knots = np.unique(np.quantile(ordered, np.linspace(0.0, 1.0, n_knots)))
        mid = (np.searchsorted(ordered, knots, "left") + np.searchsorted(ordered, knots, "right")) / (2.0 * n)
        columns.append((knots, ndtri(np.clip(mid, 0.5 / n, 1 - 0.5 / n))))
    m = max(len(k) for k, _ in columns)
    y_knots, z_knots = np.empty((len(columns), m)), np.empty((len(columns), m))
    for j, (knots, z) in enumerate(columns):
        extra = m - len(knots)
        y_knots[j] = np.concatenate([knots, knots[-1] + np.arange(1, extra + 1)])
        z_knots[j] = np.concatenate([z, np.full(extra, z[-1])])
    return y_knots, z_knots


def ridge_loo(X: np.ndarray, Y: np.ndarray, alphas: np.ndarray):
    """Ridge regression of each column of Y on X (with intercept), the penalty per column chosen by exact
    leave-one-out error over ``alphas`` (as RidgeCV). Returns (weight (k, d), bias (k,), LOO residuals (n, k),
    chosen alphas (k,)). One eigendecomposition serves every alpha: of X'X, or of XX' when d > n."""
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    n, d = Xc.shape
    if d <= n:
        s, V = np.linalg.eigh(Xc.T @ Xc)
        P = Xc @ V  # n x d, P = U sqrt(s)
    else:
        s, U = np.linalg.eigh(Xc @ Xc.T)
        P = U * np.sqrt(np.maximum(s, 0.0))
    s = np.maximum(s, 0.0)
    PtY = P.T @ Yc
    k = Y.shape[1]
    best_err, best_alpha = np.full(k, np.inf), np.zeros(k)
    loo = np.zeros_like(Yc)
    for alpha in alphas:
        inv = 1.0 / (s + alpha)
        fitted = P @ (inv[:, None] * PtY)
        hat = (P**2) @ inv + 1.0 / n  # leverage, the intercept's 1/n included
        r = (Yc - fitted) / (1.0 - hat)[:, None]
        err = np.mean(r**2, axis=0)
        better = err < best_err
        best_err[better], best_alpha[better], loo[:, better] = err[better], alpha, r[:, better]
    # Coefficients in feature space: X'(XX' + a)^-1 Y = (X'X + a)^-1 X'Y, per column's alpha.
    weight = np.zeros((k, d))
    for j in range(k):
        inv = 1.0 / (s + best_alpha[j])
        if d <= n:
            weight[j] = V @ (inv * (V.T @ (Xc.T @ Yc[:, j])))
        else:
            weight[j] = Xc.T @ (U @ ((1.0 / (s + best_alpha[j])) * (U.T @ Yc[:, j])))
    bias = Y.mean(axis=0) - weight @ X.mean(axis=0)
    return weight, bias, loo, best_alpha


def _thin(curve: dict, max_points: int) -> dict:
    curve = dict(curve)
    drops = [int(v) for v in curve.pop("lr_drops", [])]
    n = len(curve["step"])
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(int)) if n > max_points else np.arange(n)
    out = {k: [float(vals[i]) for i in keep] for k, vals in curve.items()}
    out["lr_drops"] = drops
    return out
