"""Linear centred kernel alignment (Kornblith et al., ICML 2019).

``CKA(X, Y) = ||Yc' Xc||_F^2 / (||Xc' Xc||_F ||Yc' Yc||_F)`` for two
representations of the same n examples (rows), with column-centred ``Xc``,
``Yc``. It is 1 for identical representations, invariant to orthogonal
transforms and isotropic scaling, and not to arbitrary linear maps. It is not
0 for unrelated ones: two independent n x p Gaussian matrices give about
``p / (n + p)`` (0.34 at n = 500, p = 256), and randomly initialised
networks fed the same images agree far more, so every CKA here is reported
beside the CKA of randomly initialised networks.

The Gram form used for many layers: ``CKA = <Kc, Lc>_F / (||Kc|| ||Lc||)``
with ``K = X X'`` centred on both sides; :func:`normalised_gram` gives
``Kc / ||Kc||_F`` once per layer, so a layer x layer CKA matrix is one
matrix product of flattened Grams.
"""

from __future__ import annotations

import numpy as np


def _as_2d(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has non-finite values")
    return x


def linear_cka(X, Y) -> float:
    """Linear CKA of two representations of the same examples (rows); NaN if either is constant."""
    X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must describe the same examples: {X.shape[0]} vs {Y.shape[0]} rows")
    if X.shape[0] < 2:
        raise ValueError("CKA needs at least 2 examples")
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    n, p, q = X.shape[0], X.shape[1], Y.shape[1]
    if p * q <= n * n:  # feature-space form: cheaper when the representations are narrow
        cross = np.linalg.norm(Y.T @ X) ** 2
        norm_x, norm_y = np.linalg.norm(X.T @ X), np.linalg.norm(Y.T @ Y)
    else:
        K, L = X @ X.T, Y @ Y.T
        cross, norm_x, norm_y = float((K * L).sum()), np.linalg.norm(K), np.linalg.norm(L)
    if norm_x == 0 or norm_y == 0:
        return float("nan")
    return float(cross / (norm_x * norm_y))


def normalised_gram(X) -> np.ndarray:
    """``Kc / ||Kc||_F`` for ``K = X X'`` with centred columns (n x n); zeros if X is constant."""
    X = _as_2d(X, "X")
    X = X - X.mean(axis=0)
    K = X @ X.T
    norm = np.linalg.norm(K)
    return K / norm if norm > 0 else K


def cka_matrix(grams_a, grams_b) -> np.ndarray:
    """CKA between every pair of layers, from lists of :func:`normalised_gram` results (same n)."""
    A = np.stack([g.reshape(-1) for g in grams_a])
    B = np.stack([g.reshape(-1) for g in grams_b])
    out = A @ B.T
    # a constant layer has an all-zero Gram: CKA is undefined there
    zero_a = ~A.any(axis=1)
    zero_b = ~B.any(axis=1)
    out[zero_a, :] = np.nan
    out[:, zero_b] = np.nan
    return out
