"""Variational MI lower bounds and the critics they train.

Every bound reads the same two score arrays a critic T(x, y) produces:
``joint`` (n,) = T(x_i, y_i) on paired samples, and ``neg`` (n, K) = T(x_i, y_j) on K
re-pairings j != i per row, i.e. samples of the product of marginals. A bound provides
``value`` (the estimate, used on validation / evaluation data) and ``loss`` (what training
minimises; differs from -value for MINE's bias-corrected gradient and SMILE's JS training).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


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


# ----------------------------------------------------------------------------------------- critics


class ConcatCritic(nn.Module):
    """T(x, y) = MLP([x, y]). The first layer is split as W_x x + W_y y + b so that re-pairing x's and y's
    (negatives, permutations, bootstrap) only re-runs the layers after the first; for a discrete y the
    W_y y of a one-hot y is a column lookup (an embedding), identical to a linear layer on the one-hot code."""

    separable = False

    def __init__(self, d_x: int, d_y: int, n_classes: int | None, hidden=(128, 128)):
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if not hidden:
            raise ValueError("hidden must name at least one layer width")
        self.x_in = nn.Linear(d_x, hidden[0], bias=False)
        if n_classes is None:
            self.y_in = nn.Linear(d_y, hidden[0])
        else:
            self.y_in = nn.Embedding(n_classes, hidden[0])
            nn.init.uniform_(self.y_in.weight, -1.0, 1.0)  # same scale as a unit-variance input's projection
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(hidden):
            layers += [nn.ReLU(), nn.Linear(a, b)]
        layers += [nn.ReLU(), nn.Linear(hidden[-1], 1)]
        self.head = nn.Sequential(*layers)

    def encode_x(self, x):
        return self.x_in(x)

    def encode_y(self, y):
        return self.y_in(y)

    def score_pairs(self, ex, ey):
        return self.head(ex + ey).squeeze(-1)


class SeparableCritic(nn.Module):
    """T(x, y) = f(x) . g(y): all n x n pairings cost one matrix product, so every other sample of a batch
    is a negative (the usual InfoNCE critic)."""

    separable = True

    def __init__(self, d_x: int, d_y: int, n_classes: int | None, hidden=(128, 128), embed_dim: int = 32):
        super().__init__()
        self.f = _mlp(d_x, hidden, embed_dim)
        if n_classes is None:
            self.g = _mlp(d_y, hidden, embed_dim)
        else:
            self.g = nn.Embedding(n_classes, embed_dim)
            nn.init.normal_(self.g.weight, 0.0, 1.0 / math.sqrt(embed_dim))

    def encode_x(self, x):
        return self.f(x)

    def encode_y(self, y):
        return self.g(y)

    def score_pairs(self, ex, ey):
        return (ex * ey).sum(-1)

    def score_matrix(self, ex, ey):
        return ex @ ey.T


def _mlp(d_in: int, hidden, d_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, int(h)), nn.ReLU()]
        d_in = int(h)
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


def batch_scores(critic: nn.Module, ex: torch.Tensor, ey: torch.Tensor, shifts) -> tuple[torch.Tensor, torch.Tensor]:
    """(joint, neg) for encoded rows. Separable critics with ``shifts=None`` use every other row as a
    negative; otherwise row i is re-paired with row (i + s) mod n for each shift s in ``shifts``."""
    n = ex.shape[0]
    if critic.separable and shifts is None:
        m = critic.score_matrix(ex, ey)
        # Off-diagonal entries row by row via a strided view (a boolean mask gather is far slower).
        off = m.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)
        return m.diagonal(), off
    # One pass over all (K + 1) pairings: cheaper than K + 1 small passes.
    ey_all = torch.cat([ey] + [torch.roll(ey, -int(s), dims=0) for s in shifts])
    scores = critic.score_pairs(ex.repeat(len(shifts) + 1, 1), ey_all).reshape(len(shifts) + 1, n)
    return scores[0], scores[1:].T


# ------------------------------------------------------------------------------- baseline critics


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


class ResidualCritic(nn.Module):
    """T(x, y) = T0(x, y) + MLP([x, y]): a frozen baseline critic plus a concat critic that learns what it
    misses. The MLP's last layer starts at zero, so training starts from the baseline's bound.
    Encodings are the two parts side by side, so re-pairing rows works as for :class:`ConcatCritic`."""

    separable = False

    def __init__(self, net: ConcatCritic, baseline: nn.Module):
        super().__init__()
        self.net, self.baseline = net, baseline
        self._h = net.x_in.out_features
        # The MLP also reads the baseline's view of the pair (its residual, or log q(y | x)): what a linear
        # model gets wrong is usually a simple function of that (a sharp band in y - x), hard to find from
        # [x, y] alone.
        self.pair_in = nn.Linear(baseline.n_features, self._h, bias=False)
        last = net.head[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def encode_x(self, x):
        return torch.cat([self.net.encode_x(x), self.baseline.encode_x(x)], dim=1)

    def encode_y(self, y):
        return torch.cat([self.net.encode_y(y), self.baseline.encode_y(y)], dim=1)

    def score_pairs(self, ex, ey):
        h = self._h
        bx, by = ex[:, h:], ey[:, h:]
        hidden = ex[:, :h] + ey[:, :h] + self.pair_in(self.baseline.features(bx, by))
        return self.net.head(hidden).squeeze(-1) + self.baseline.score(bx, by)
