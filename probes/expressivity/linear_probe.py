"""LinearProbe: MI lower bounds from a linear predictor of y, scored on held-out data (the cheap, stable default)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.covariance import ledoit_wolf
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from .base import FitCore, MIEstimator
from .ceilings import label_entropy
from .inputs import Checked, Preprocessor, check_fractions, split_indices
from .results import EstimationError
from .ridge import RIDGE_ALPHAS, ridge_loo


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
      ``y_transform="rank"`` (the default) maps y to normal scores first, which makes a scalar y Gaussian
      (so the bound holds for any continuous y: skewed ages, near-binary scores) and the estimate invariant
      to monotone maps of y; ``"standardize"`` keeps y's own scale, a valid bound only for a Gaussian y.

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
    y_transform: "rank" (normal scores, the default) or "standardize" (continuous y only).
    x_transform: "standardize" (the default) or "rank" (normal scores of each feature column: bounded inputs
        that heavy tails cannot dominate; a map of X cannot raise MI, so the bound stays a bound). Not the
        default here: a linear read-out of normal scores loses what was linear in the raw features (1.63 ->
        1.15 nats on additive uniform noise, truth 1.71).
    n_bootstrap, n_permutations, permutation, ci_level: see the module docstring.
    max_iter: iteration cap of the logistic regression solver.
    random_state: seed for the split, bootstrap and permutations.
    """

    def __init__(self, attribute_kind="auto", C="auto", Cs=(1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0), alphas=None,
                 eval_fraction=0.3, pca=None, y_transform="rank", n_bootstrap=200, n_permutations=200,
                 permutation="heldout", ci_level=0.95, max_iter=300, classifier="auto", max_logistic_classes=50,
                 x_transform="standardize", random_state=None):
        self.attribute_kind = attribute_kind
        self.C = C
        self.Cs = Cs
        self.classifier = classifier
        self.max_logistic_classes = max_logistic_classes
        self.alphas = alphas
        self.eval_fraction = eval_fraction
        self.pca = pca
        self.y_transform = y_transform
        self.x_transform = x_transform
        self.n_bootstrap = n_bootstrap
        self.n_permutations = n_permutations
        self.permutation = permutation
        self.ci_level = ci_level
        self.max_iter = max_iter
        self.random_state = random_state

    def _fit_core(self, data: Checked, rng: np.random.Generator) -> FitCore:
        fractions = check_fractions(None, self.eval_fraction)
        strata = data.y if data.kind == "discrete" else None
        train, test = split_indices(len(data.X), fractions, rng, strata, data.groups)
        if len(train) < 10 or len(test) < 10:
            raise EstimationError(f"X has {len(data.X)} samples: the train/eval split ({len(train)}/{len(test)}) "
                                  "leaves fewer than 10 on a side")
        prep = Preprocessor(self.pca, self.y_transform, x_transform=self.x_transform)
        prep.fit(data.X[train], data.y[train], data.kind)
        Xtr, Xte = prep.transform_X(data.X[train]), prep.transform_X(data.X[test])
        ytr, yte = prep.transform_y(data.y[train]), prep.transform_y(data.y[test])
        diag = {"n_train": len(train), "n_features": data.X.shape[1], "n_features_used": prep.n_features_out_,
                "pca_variance_kept": prep.pca_variance_kept_}
        if data.kind == "discrete":
            return self._discrete(Xtr, ytr, Xte, yte, len(data.classes), rng, diag)
        return self._continuous(Xtr, ytr, Xte, yte, diag)

    # -- discrete: H(Y) - held-out cross-entropy
    def _discrete(self, Xtr, ytr, Xte, yte, n_classes, rng, diag) -> FitCore:
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
        diag.update(entropy_y=h_y, cross_entropy=float(ce_rows.mean()), n_classes=int(n_classes),
                    label_entropy_nats=label_entropy(yte))

        def bootstrap(B, g):
            idx = g.integers(n, size=(B, n))
            return h_y - ce_rows[idx].mean(axis=1)

        def heldout_null(B, g):
            return np.array([h_y + logq[np.arange(n), yte[g.permutation(n)]].mean() for _ in range(B)])

        return FitCore(h_y - ce_rows.mean(), n, bootstrap, heldout_null, diag)

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
    def _continuous(self, Xtr, ytr, Xte, yte, diag) -> FitCore:
        alphas = RIDGE_ALPHAS if self.alphas is None else np.asarray(self.alphas, dtype=np.float64)
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

        return FitCore(raw, n, bootstrap, heldout_null, diag)


class _SharedCovarianceLDA:
    """Linear discriminant analysis: class means, one pooled within-class covariance shrunk by Ledoit-Wolf.

    Closed form, O(n d^2 + d^2 K); classes with a single sample are fine (they share the pooled spread).
    ``decision_function`` gives the log-posterior up to a per-row constant, always N x K.

    Not ``sklearn``'s ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")``: that one
    standardises each feature before Ledoit-Wolf and weights the class covariances by the priors, so its
    numbers differ (300 x 20 Gaussian features, 12 classes: centred log-posteriors up to 0.37 apart, the
    predicted class the same for 93% of rows; 2.4 and 63% with feature scales from 0.1 to 10).
    """

    def fit(self, X: np.ndarray, y: np.ndarray):
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
    rows = np.arange(len(target))

    def ce(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, target].mean())

    found = minimize_scalar(ce, bounds=(np.log(1e-2), np.log(1e4)), method="bounded", options={"xatol": 1e-2})
    return float(np.exp(found.x))


ProbeBound = LinearProbe

_ABSENT_LOGIT = -1e4  # logit of a class never seen in training: probability 0 before the prior mix


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)

