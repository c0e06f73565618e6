"""Ridge regression with the penalty per target column chosen by exact leave-one-out error."""

from __future__ import annotations

import numpy as np

RIDGE_ALPHAS = np.logspace(-2, 5, 15)  # ridge penalties tried by default (probe and neural baseline alike)


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

