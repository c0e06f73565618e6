"""The critics T(x, y) the neural estimators train, and how they score paired and re-paired rows.

A critic encodes x and y separately (``encode_x``, ``encode_y``) and scores encoded pairs
(``score_pairs``), so re-pairing rows for negatives, permutations and the bootstrap never re-runs
the encoders.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn


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
