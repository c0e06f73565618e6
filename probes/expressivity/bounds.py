"""Variational MI lower bounds, read from the scores of a critic (:mod:`probes.expressivity.critics`).

Every bound reads the same two score arrays a critic T(x, y) produces:
``joint`` (n,) = T(x_i, y_i) on paired samples, and ``neg`` (n, K) = T(x_i, y_j) on K
re-pairings j != i per row, i.e. samples of the product of marginals. A bound provides
``value`` (the estimate, used on validation / evaluation data) and ``loss`` (what training
minimises; differs from -value for MINE's bias-corrected gradient and SMILE's JS training).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def log_mean_exp(t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1)
    return torch.logsumexp(t, 0) - math.log(t.numel())


class Bound:
    """Interface: ``value(joint, neg)`` -> scalar estimate; ``loss(joint, neg)`` -> training loss."""

    name = "bound"
    row_decomposable = False  # True when value is a mean over rows (InfoNCE)

    def reset(self) -> None:
        """Clear training state (moving averages) before a fit."""

    def value(self, joint: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, joint: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return -self.value(joint, neg)

    def marginal_term(self, neg: torch.Tensor) -> torch.Tensor:
        """The part of ``value`` that does not depend on the joint scores (value = mean(joint) - this)."""
        raise NotImplementedError

    def resampled_values(self, joint: torch.Tensor, neg: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``value(joint[r], neg[r])`` for every row r of the (B, m) index tensor ``idx`` (bootstrap)."""
        return torch.stack([self.value(joint[r], neg[r]) for r in idx])


class _LogMeanExpBound(Bound):
    """A bound whose marginal term is a function of log-mean-exp over (transformed) negative scores, so
    a bootstrap replicate needs only per-row log-sum-exps: one gather for all replicates, no loop."""

    def _neg(self, neg):
        return neg

    def _from_lme(self, lme):
        raise NotImplementedError

    def marginal_term(self, neg):
        return self._from_lme(log_mean_exp(self._neg(neg)))

    def value(self, joint, neg):
        return joint.mean() - self.marginal_term(neg)

    def resampled_values(self, joint, neg, idx):
        row_lse = torch.logsumexp(self._neg(neg), dim=1)
        lme = torch.logsumexp(row_lse[idx], dim=1) - math.log(idx.shape[1] * neg.shape[1])
        return joint[idx].mean(dim=1) - self._from_lme(lme)


class DonskerVaradhan(_LogMeanExpBound):
    """MINE: I >= E_p[T] - log E_q[e^T] (Belghazi et al. 2018).

    The minibatch gradient of log E_q[e^T] is biased (a ratio of minibatch means); MINE replaces
    the denominator E_q[e^T] by an exponential moving average over batches (``ema_rate``).
    The surrogate ``mean(joint) - exp(lme(neg) - log_ema)`` has exactly that gradient; the
    average is kept in the log domain so large critic values cannot overflow.
    ``ema_rate=None`` gives the plain (biased-gradient) DV objective.
    """

    name = "dv"

    def __init__(self, ema_rate: float | None = 0.01):
        self.ema_rate = ema_rate
        self.reset()

    def reset(self) -> None:
        self._log_ema = None

    def _from_lme(self, lme):
        return lme

    def loss(self, joint, neg):
        lme = log_mean_exp(neg)
        if self.ema_rate is None:
            return -(joint.mean() - lme)
        current = lme.detach()
        if self._log_ema is None:
            self._log_ema = current
        else:
            a = self.ema_rate
            self._log_ema = torch.logaddexp(self._log_ema + math.log1p(-a), current + math.log(a))
        return -(joint.mean() - torch.exp(lme - self._log_ema))


class NWJ(_LogMeanExpBound):
    """Nguyen-Wainwright-Jordan (f-divergence) bound: I >= E_p[T] - E_q[e^(T - 1)]; unbiased minibatch gradient."""

    name = "nwj"

    def _from_lme(self, lme):
        return torch.exp(lme - 1.0)


class SMILE(_LogMeanExpBound):
    """SMILE (Song & Ermon 2020): critic trained with the Jensen-Shannon (f-GAN) objective, whose optimum is
    the log density ratio; the estimate is DV with e^T clipped to [e^-tau, e^tau] in the marginal term,
    which bounds its variance. tau=inf gives plain DV on a JS-trained critic."""

    name = "smile"

    def __init__(self, tau: float = 5.0):
        self.tau = tau

    def _neg(self, neg):
        return neg.clamp(-self.tau, self.tau)

    def _from_lme(self, lme):
        return lme

    def loss(self, joint, neg):
        js = -F.softplus(-joint).mean() - F.softplus(neg).mean()
        return -js


class InfoNCE(Bound):
    """InfoNCE / CPC (van den Oord et al. 2018): each row classifies its positive among K+1 candidates,
    I >= mean_i [T_ii - log((1/(K+1)) sum_candidates e^T)]. Capped at log(K + 1): use many negatives."""

    name = "infonce"
    row_decomposable = True

    def rows(self, joint, neg):
        log_sum = torch.logaddexp(joint, torch.logsumexp(neg, dim=1))
        return joint - log_sum + math.log(neg.shape[1] + 1)

    def value(self, joint, neg):
        return self.rows(joint, neg).mean()

    def resampled_values(self, joint, neg, idx):
        return self.rows(joint, neg)[idx].mean(dim=1)


def make_bound(name: str, ema_rate: float | None, tau: float) -> Bound:
    if name == "dv":
        return DonskerVaradhan(ema_rate)
    if name == "nwj":
        return NWJ()
    if name == "smile":
        return SMILE(tau)
    if name == "infonce":
        return InfoNCE()
    raise ValueError(f"unknown bound {name!r}")
