"""What an MI estimate of a discrete label cannot exceed, and the exact marginal term that keeps it there.

For a discrete label y with K classes, I(X; y) <= H(y). A Donsker-Varadhan (or NWJ) bound read on an
evaluation split is below the plug-in MI of that split's empirical joint, hence below the plug-in
entropy of its labels, only when its marginal term is taken over the exact product of the empirical
marginals. Estimating that term from a few re-pairings of rows under-samples same-class pairs when
there are many classes, and the estimate can then overshoot H(y). With a discrete label the product
of marginals can be enumerated: for every evaluation row x_i and every class k, T(x_i, k) weighted by
the class's share p_k of the evaluation labels. :func:`exact_negatives` lays those scores out as the
``neg`` matrix the bounds read, with log(K p_k) added so that the bounds' plain mean over ``neg``
becomes the p-weighted mean.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_PAIRS_PER_PASS = 262_144  # critic evaluations per forward pass (bounds memory for many classes)


def label_entropy(codes) -> float:
    """Plug-in entropy, in nats, of integer class codes: the ceiling of I(X; y) on those samples."""
    counts = np.bincount(np.asarray(codes, np.int64).reshape(-1))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum()) if len(p) else 0.0


def class_scores(critic, ex: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n, n_classes) critic scores T(x_i, k) of encoded rows ``ex`` paired with every class code k."""
    codes = torch.arange(n_classes, device=ex.device)
    ey = critic.encode_y(codes)
    n = ex.shape[0]
    rows_per_pass = max(1, _PAIRS_PER_PASS // max(1, n_classes))
    out = []
    for start in range(0, n, rows_per_pass):
        block = ex[start:start + rows_per_pass]
        m = block.shape[0]
        scores = critic.score_pairs(block.repeat_interleave(n_classes, dim=0), ey.repeat(m, 1))
        out.append(scores.reshape(m, n_classes))
    return torch.cat(out) if out else ex.new_zeros((0, n_classes))


def exact_negatives(scores: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``neg`` for the bounds: T(x_i, k) + log(K' p_k) over the K' classes present in ``codes``.

    A bound's marginal term log mean_{i,k} exp(neg) then equals log sum_i (1/n) sum_k p_k exp T(x_i, k),
    the exact expectation under the product of the evaluation split's empirical marginals.
    """
    counts = torch.bincount(codes.reshape(-1), minlength=scores.shape[1]).to(scores.dtype)
    present = counts > 0
    share = counts[present] / counts.sum()
    return scores[:, present] + torch.log(share * int(present.sum()))


def exact_joint(scores: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """T(x_i, y_i) read from the class-score matrix (the paired scores of the evaluation rows)."""
    return scores.gather(1, codes.reshape(-1, 1)).squeeze(1)


def cap_at_ceiling(estimate: float, ci_low: float, ci_high: float, ceiling: float) -> tuple[float, float, float, bool]:
    """Clip an estimate and its interval to ``ceiling`` (H(y)); the flag says whether the cap bound."""
    if not math.isfinite(ceiling):
        return estimate, ci_low, ci_high, False
    capped = estimate > ceiling
    return min(estimate, ceiling), min(ci_low, ceiling), min(ci_high, ceiling), bool(capped)
