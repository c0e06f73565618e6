"""The frozen linear critic T0 that the neural estimators' residual critic starts from.

T0(x, y) = log q(y | x) - log q(y) for a linear model fitted on the training split: a ridge-Gaussian
model for a continuous y (:class:`GaussianBaseline`), :class:`~probes.expressivity.linear_probe.LinearProbe`'s
classifier for a discrete y (:class:`SoftmaxBaseline`). :func:`fit_linear_baseline` fits it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import ndtri
from torch import nn

from .bounds import DonskerVaradhan
from .linear_probe import LinearProbe
from .ridge import RIDGE_ALPHAS, ridge_loo


class GaussianBaseline(nn.Module):
    """Frozen T0(x, y) = log q(y | x) - log q(y) for a linear-Gaussian model fitted beforehand:
    q(y | x) = N(W x + b, S_r), q(y) = N(m, S_y). For jointly Gaussian (x, y) this is the optimal critic,
    so its DV bound is the truth up to estimation error. Buffers only: nothing here is trained."""

    def __init__(self, weight, bias, resid_cov, y_mean, y_cov, y_knots=None, z_knots=None):
        super().__init__()
        f = lambda a: torch.as_tensor(a, dtype=torch.float32)
        # Optional monotone map of each y column (piecewise linear through (y_knots, z_knots)) applied
        # before the Gaussian model: the density ratio is unchanged by it, and a non-Gaussian y (e.g. a
        # near-binary P(male)) is far better described as Gaussian after normal scores.
        self.mapped = y_knots is not None
        if self.mapped:
            self.register_buffer("y_knots", f(y_knots))  # (k, m), increasing along m
            self.register_buffer("z_knots", f(z_knots))
        self.register_buffer("weight", f(weight))  # (k, d)
        self.register_buffer("bias", f(bias))
        self.register_buffer("prec_r", f(torch.linalg.inv(torch.as_tensor(resid_cov, dtype=torch.float64))))
        self.register_buffer("prec_y", f(torch.linalg.inv(torch.as_tensor(y_cov, dtype=torch.float64))))
        self.register_buffer("y_mean", f(y_mean))
        logdet = lambda a: float(torch.linalg.slogdet(torch.as_tensor(a, dtype=torch.float64))[1])
        self.const = 0.5 * (logdet(y_cov) - logdet(resid_cov))
        self.width_x = self.width_y = self.weight.shape[0]

    def encode_x(self, x):
        return x @ self.weight.T + self.bias

    def encode_y(self, y):
        if not self.mapped:
            return y
        cols = []
        for j in range(y.shape[1]):
            knots, z = self.y_knots[j].contiguous(), self.z_knots[j]
            hi = torch.searchsorted(knots, y[:, j].contiguous()).clamp(1, len(knots) - 1)
            x0, x1 = knots[hi - 1], knots[hi]
            t = ((y[:, j] - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
            cols.append(z[hi - 1] + t * (z[hi] - z[hi - 1]))
        return torch.stack(cols, dim=1)

    n_features = property(lambda self: self.width_y)

    def score(self, mu, y):
        r, dy = y - mu, y - self.y_mean
        return -0.5 * ((r @ self.prec_r) * r).sum(-1) + 0.5 * ((dy @ self.prec_y) * dy).sum(-1) + self.const

    def features(self, mu, y):
        """What the residual MLP sees of the pair besides (x, y): the model's residual (mapped) y - W x - b."""
        return y - mu


class SoftmaxBaseline(nn.Module):
    """Frozen T0(x, y) = log q(y | x) - log q(y) for a linear classifier fitted beforehand:
    q(y | x) = (1 - lam) softmax(x A + c)_y + lam q(y), q(y) the smoothed training frequencies (the mix keeps
    T0 finite for classes the classifier gives no mass). x encodes to the n x K log q(. | x); y to its code."""

    def __init__(self, coef, intercept, prior, lam: float):
        super().__init__()
        f = lambda a: torch.as_tensor(a, dtype=torch.float32)
        self.register_buffer("coef", f(coef))  # (d, K)
        self.register_buffer("intercept", f(intercept))
        self.register_buffer("log_prior", f(prior).log())
        self.lam = float(lam)
        self.width_x, self.width_y = self.coef.shape[1], 1

    def encode_x(self, x):
        logp = torch.log_softmax(x @ self.coef + self.intercept, dim=1)
        return torch.logaddexp(logp + math.log1p(-self.lam), self.log_prior + math.log(self.lam))

    def encode_y(self, y):
        return y.to(torch.float32).unsqueeze(1)  # class codes are exact in float32 up to 2**24

    n_features = 1

    def score(self, logq, code):
        code = code.squeeze(1).long()
        return logq.gather(1, code.unsqueeze(1)).squeeze(1) - self.log_prior[code]

    def features(self, logq, code):
        """What the residual MLP sees of the pair besides (x, y): log q(y | x)."""
        return logq.gather(1, code.long())


def fit_linear_baseline(X: np.ndarray, y: np.ndarray, n_classes: int | None, rng: np.random.Generator,
                        diag: dict) -> nn.Module | None:
    """The frozen linear critic T0 fitted on the (preprocessed) training split: the log density ratio of a
    ridge-Gaussian model (continuous y; residual covariance from leave-one-out residuals, so it is not
    over-confident) or of LinearProbe's classifier (discrete y). None when no Gaussian T0 beats T = 0."""
    if n_classes is None:
        return best_gaussian_baseline(X, y, diag)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    prior = (counts + 0.5) / (counts.sum() + 0.5 * n_classes)
    coef, intercept = LinearProbe().linear_logits(X, y, n_classes, rng, diag)
    return SoftmaxBaseline(coef, intercept, prior, 1.0 / (len(y) + 1.0))


def best_gaussian_baseline(X: np.ndarray, y: np.ndarray, diag: dict) -> GaussianBaseline | None:
    """Of two candidate maps of y, none and normal scores (monotone, so the density ratio is the same), the
    one whose T0 has the larger DV bound on the training split; None when neither bound is positive
    (T0 = 0 scores 0)."""
    candidates = {"identity": gaussian_baseline(X, y, None, None)}
    y_knots, z_knots = normal_score_knots(y)
    candidates["normal-scores"] = gaussian_baseline(X, y, y_knots, z_knots)
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


def gaussian_baseline(X, y, y_knots, z_knots) -> GaussianBaseline:
    """Ridge-Gaussian T0 of (the optionally mapped) y on X, residual covariance from leave-one-out residuals."""
    target = y
    if y_knots is not None:
        target = np.stack([np.interp(y[:, j], y_knots[j], z_knots[j]) for j in range(y.shape[1])], axis=1)
    weight, bias, loo_resid, _ = ridge_loo(X, target, RIDGE_ALPHAS)
    y_cov = np.atleast_2d(np.cov(target, rowvar=False))
    resid_cov = np.atleast_2d(np.cov(loo_resid, rowvar=False))
    return GaussianBaseline(weight, bias, resid_cov, target.mean(axis=0), y_cov, y_knots, z_knots)


def normal_score_knots(y: np.ndarray, n_knots: int = 257) -> tuple[np.ndarray, np.ndarray]:
    """Per-column knots of a piecewise-linear normal-score map: distinct y quantiles and Phi^-1 of their
    mid-ranks (ties, as in a saturated attribute, share one knot). Columns with fewer distinct knots are
    padded past their maximum with a flat z, so all columns have the same number of knots."""
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
