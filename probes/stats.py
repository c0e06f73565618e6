"""Intervals for rates and means (Wilson score intervals, percentile bootstraps) and the Fréchet distance."""

from __future__ import annotations

import math

import numpy as np


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (nan, nan) when ``n == 0``."""
    from scipy.stats import norm

    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n == 0:
        return float("nan"), float("nan")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 and n the bounds are exactly 0 and 1 (avoid 0.9999999999999999).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def bootstrap_mean(values, n_boot: int = 1000, confidence: float = 0.95,
                   rng: np.random.Generator | int | None = 0) -> tuple[float, float, float, int]:
    """(mean, ci_low, ci_high, n) of the finite ``values``; percentile bootstrap over them.

    One value gives its mean and a NaN interval; none gives NaNs.
    """
    v = np.asarray(values, np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(v.mean())
    if n == 1 or n_boot <= 0:
        return mean, float("nan"), float("nan"), n
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    from scipy.stats import bootstrap

    # scipy's percentile bootstrap, resampling in batches of at most 2e6 values (bounded memory for large n).
    interval = bootstrap((v,), np.mean, n_resamples=n_boot, batch=max(1, 2_000_000 // n),
                                     confidence_level=confidence, method="percentile", vectorized=True,
                                     rng=rng).confidence_interval
    return mean, float(interval.low), float(interval.high), n


def rate(successes, confidence: float = 0.95) -> tuple[float, float, float, int, int]:
    """(rate, ci_low, ci_high, n, k) of a boolean array (NaN entries left out), Wilson interval."""
    s = np.asarray(successes, np.float64).reshape(-1)
    s = s[np.isfinite(s)]
    n, k = len(s), int(s.sum())
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0, 0
    low, high = wilson_interval(k, n, confidence)
    return k / n, low, high, n, k


def repeated_split_interval(estimates, n_train: int, n_eval: int,
                            confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of estimates from K random train/evaluation splits of one data set.

    The splits share their data, so their estimates are positively correlated and the naive t interval of
    the mean is too narrow. Nadeau & Bengio's corrected resampled t (Machine Learning 52, 2003) inflates the
    variance of the mean from s^2 / K to (1 / K + n_eval / n_train) s^2 and uses t with K - 1 degrees of
    freedom. With K = 3 the interval is wide (t = 4.30); that is the price of three splits.
    """
    from scipy.stats import t as student_t

    e = np.asarray(estimates, np.float64)
    e = e[np.isfinite(e)]
    if len(e) < 2:
        raise ValueError(f"a repeated-split interval needs at least 2 estimates, got {len(e)}")
    if n_train < 1 or n_eval < 1:
        raise ValueError(f"n_train and n_eval must be positive, got {n_train} and {n_eval}")
    mean, k = float(e.mean()), len(e)
    half = student_t.ppf(0.5 + confidence / 2, k - 1) * math.sqrt((1 / k + n_eval / n_train) * e.var(ddof=1))
    return mean, mean - half, mean + half


def cluster_bootstrap_mean(values, clusters, n_boot: int = 2000, confidence: float = 0.95,
                           rng: np.random.Generator | int | None = 0) -> tuple[float, float, float, int, int]:
    """(mean, ci_low, ci_high, n, n_clusters): a percentile bootstrap that resamples whole clusters.

    Use it when values come in dependent groups (several comparisons of one person, several
    reconstructions of one face): resampling people, not pairs, keeps the interval honest when a
    few people supply many of the values. The estimate is the plain mean of all values (each
    replicate re-weights clusters by how often they were drawn). Works for rates too: pass 0/1
    values. Non-finite values are left out; one cluster gives a NaN interval.

    Written here rather than with ``scipy.stats.bootstrap``, which resamples single observations: a
    replicate here draws clusters and weighs each cluster's sum and count by its draws (a ratio of sums).
    """
    v = np.asarray(values, np.float64).reshape(-1)
    c = np.asarray(clusters).reshape(-1)
    if len(c) != len(v):
        raise ValueError(f"values ({len(v)}) and clusters ({len(c)}) differ in length")
    keep = np.isfinite(v)
    v, c = v[keep], c[keep]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan"), 0, 0
    _, codes = np.unique(c, return_inverse=True)
    sums = np.bincount(codes, weights=v)
    counts = np.bincount(codes).astype(np.float64)
    k = len(sums)
    mean = float(v.mean())
    if k == 1 or n_boot <= 0:
        return mean, float("nan"), float("nan"), len(v), k
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    draws = np.empty(n_boot)
    chunk = max(1, 2_000_000 // k)  # bounded memory for many clusters
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        weights = np.stack([np.bincount(row, minlength=k) for row in rng.integers(0, k, (stop - start, k))])
        draws[start:stop] = (weights @ sums) / (weights @ counts)
    alpha = (1 - confidence) / 2
    return mean, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha)), len(v), k


def gaussian_frechet_distance(mean_a, cov_a, mean_b, cov_b) -> float:
    """Fréchet (2-Wasserstein squared) distance of two Gaussians:
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``.

    The square root goes through symmetric eigendecompositions (no complex round-off, unlike
    ``sqrtm(S_a S_b)``); tiny negative eigenvalues of nearly singular covariances count as 0.
    """
    mean_a, mean_b = np.asarray(mean_a, np.float64).reshape(-1), np.asarray(mean_b, np.float64).reshape(-1)
    cov_a, cov_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    d = len(mean_a)
    for name, value, shape in (("mean_b", mean_b, (d,)), ("cov_a", cov_a, (d, d)), ("cov_b", cov_b, (d, d))):
        if value.shape != shape:
            raise ValueError(f"{name} has shape {value.shape}, expected {shape} (mean_a has {d} dimensions)")
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    value = float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
    return max(0.0, value)  # round-off can leave -1e-15 for equal Gaussians


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a, b) -> float:
    """Fréchet distance between Gaussians fitted to two samples (N_a x D and N_b x D; rows are samples).

    The FID formula in any feature space; covariances with ``ddof=1``. The estimate is biased
    upwards for small samples, so compare distances only between samples of equal sizes, and
    keep D well under the sample sizes (reduce it first, e.g. by PCA).
    """
    samples = []
    for name, x in (("a", a), ("b", b)):
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"{name} must be N x D with N >= 2 samples, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} has non-finite values")
        samples.append(x)
    a, b = samples
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    return gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
