"""One-to-one matching of two layers' filters (Hungarian algorithm on |cosine|).

Each filter is flattened, its mean removed (a filter's DC offset says how it
reacts to brightness, not which pattern it detects) and scaled to unit norm;
two filters are as similar as the absolute cosine of that, so a filter and
its negative match (the next layer or a sign-flipped activation can undo a
sign). :func:`match_filters` pairs each filter of the smaller layer with a
distinct filter of the other so the summed |cosine| is largest
(:func:`scipy.optimize.linear_sum_assignment`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


def normalise_filters(filters) -> np.ndarray:
    """Rows mean-removed and unit-norm (rows that are constant stay zero)."""
    f = np.asarray(filters, dtype=np.float64)
    f = f.reshape(f.shape[0], -1)
    f = f - f.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return np.divide(f, norm, out=np.zeros_like(f), where=norm > 0)


def live_filters(filters, rtol: float = 1e-6) -> np.ndarray:
    """Boolean mask of filters that are not constant (dead, pruned or DC-only ones are all zero after
    mean removal, so they can match nothing); a constant filter's mean-removed norm is under
    ``rtol`` x the layer's largest."""
    f = np.asarray(filters, dtype=np.float64)
    f = f.reshape(f.shape[0], -1)
    norm = np.linalg.norm(f - f.mean(axis=1, keepdims=True), axis=1)
    return norm > rtol * norm.max() if norm.size and norm.max() > 0 else np.zeros(len(f), bool)


def filter_similarity(filters_a, filters_b) -> np.ndarray:
    """|cosine| between every filter of a (rows) and of b (columns), after :func:`normalise_filters`."""
    a, b = normalise_filters(filters_a), normalise_filters(filters_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"filters of different sizes cannot be compared: {a.shape[1]} vs {b.shape[1]} values")
    return np.abs(a @ b.T)


@dataclass
class FilterMatch:
    """The best one-to-one matching of two layers' filters.

    ``rows[k]`` of a is matched to ``cols[k]`` of b with |cosine| ``matched[k]``;
    ``similarity`` is the full |cosine| matrix (a x b).
    """

    similarity: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    matched: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.matched.mean()) if self.matched.size else float("nan")

    def fraction_above(self, threshold: float) -> float:
        return float((self.matched > threshold).mean()) if self.matched.size else float("nan")

    def ordered(self) -> np.ndarray:
        """The similarity matrix with a's filters sorted by matched |cosine| (best first) and b's
        columns put in the matched order, so matches lie on the diagonal (unmatched ones come last)."""
        order = np.argsort(-self.matched, kind="stable")
        rows, cols = self.rows[order], self.cols[order]
        rest_r = np.setdiff1d(np.arange(self.similarity.shape[0]), rows)
        rest_c = np.setdiff1d(np.arange(self.similarity.shape[1]), cols)
        return self.similarity[np.concatenate([rows, rest_r])][:, np.concatenate([cols, rest_c])]


def match_filters(filters_a, filters_b) -> FilterMatch:
    """Hungarian matching of two layers' filters on |cosine| (see the module docstring)."""
    sim = filter_similarity(filters_a, filters_b)
    rows, cols = linear_sum_assignment(sim, maximize=True)
    return FilterMatch(sim.astype(np.float32), rows, cols, sim[rows, cols])
