"""Closed-form MI tasks: samplers of (X, y) with known I(X; y) in nats, for tests and benchmarks.

``X`` plays the layer features (n, d); ``y`` the attribute: (n,) or (n, k) continuous, or (n,) integer
classes. Every task samples with ``task.sample(n, random_state)``; ``task.mi`` is the truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ClosedFormTask:
    name: str
    mi: float  # nats
    attribute_kind: str  # "continuous" | "discrete"
    sampler: Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]] = field(repr=False)
    description: str = ""

    def sample(self, n: int, random_state=None) -> tuple[np.ndarray, np.ndarray]:
        return self.sampler(int(n), np.random.default_rng(random_state))


def gaussian_mi(cov: np.ndarray, dim_x: int) -> float:
    """I = 0.5 log(det S_xx det S_yy / det S) for a joint Gaussian with covariance ``cov``."""
    cov = np.asarray(cov, dtype=np.float64)
    ld = lambda m: np.linalg.slogdet(m)[1]
    return 0.5 * (ld(cov[:dim_x, :dim_x]) + ld(cov[dim_x:, dim_x:]) - ld(cov))


def split_gaussian(cov, dim_x: int, name: str | None = None) -> ClosedFormTask:
    """X = first ``dim_x`` coordinates of N(0, cov), y = the rest (1-D when one coordinate is left)."""
    cov = np.asarray(cov, dtype=np.float64)
    chol = np.linalg.cholesky(cov)
    dim_y = len(cov) - dim_x

    def sample(n, rng):
        z = rng.standard_normal((n, len(cov))) @ chol.T
        y = z[:, dim_x:]
        return z[:, :dim_x], (y[:, 0] if dim_y == 1 else y)

    return ClosedFormTask(name or f"split-gaussian-{dim_x}x{dim_y}", gaussian_mi(cov, dim_x), "continuous",
                          sample, "jointly Gaussian X, y with covariance S")


def correlated_gaussians(dim: int = 1, rho: float = 0.75) -> ClosedFormTask:
    """``dim`` independent pairs (X_i, Y_i) with correlation rho: I = -(dim/2) log(1 - rho^2)."""
    cov = np.block([[np.eye(dim), rho * np.eye(dim)], [rho * np.eye(dim), np.eye(dim)]])
    task = split_gaussian(cov, dim, f"gaussian-{dim}x{dim}-rho{rho:g}")
    assert abs(task.mi + 0.5 * dim * math.log(1 - rho**2)) < 1e-9
    return task


def dense_gaussian(dim_x: int = 5, dim_y: int = 5, correlation: float = 0.5) -> ClosedFormTask:
    """All off-diagonal entries of the (dim_x + dim_y) covariance equal ``correlation`` (bmi's dense task)."""
    d = dim_x + dim_y
    cov = np.full((d, d), correlation) + (1 - correlation) * np.eye(d)
    return split_gaussian(cov, dim_x, f"dense-gaussian-{dim_x}x{dim_y}-{correlation:g}")


def with_nuisance(task: ClosedFormTask, n_nuisance: int = 128, seed: int = 0) -> ClosedFormTask:
    """``task`` with ``n_nuisance`` independent N(0, 1) columns mixed among X's columns (MI unchanged)."""

    def sample(n, rng):
        X, y = task.sampler(n, rng)
        Z = np.concatenate([X, rng.standard_normal((n, n_nuisance))], axis=1)
        return Z[:, np.random.default_rng(seed).permutation(Z.shape[1])], y

    return ClosedFormTask(f"{task.name}+{n_nuisance}nuisance", task.mi, task.attribute_kind, sample,
                          f"{task.description}; plus {n_nuisance} independent nuisance features")


def independent(dim_x: int = 16, kind: str = "continuous", n_classes: int = 2) -> ClosedFormTask:
    """X ~ N(0, I) independent of y (N(0, 1) or uniform classes): I = 0."""

    def sample(n, rng):
        X = rng.standard_normal((n, dim_x))
        y = rng.standard_normal(n) if kind == "continuous" else rng.integers(n_classes, size=n)
        return X, y

    return ClosedFormTask(f"independent-{dim_x}-{kind}", 0.0, kind, sample, "X independent of y")


def additive_uniform(eps: float = 0.1) -> ClosedFormTask:
    """X ~ U(0, 1), y = X + U(-eps, eps): I = eps - log(2 eps) for eps <= 1/2, else 1/(4 eps)."""
    mi = eps - math.log(2 * eps) if eps <= 0.5 else 1.0 / (4 * eps)

    def sample(n, rng):
        x = rng.random(n)
        return x[:, None], x + rng.uniform(-eps, eps, size=n)

    return ClosedFormTask(f"additive-uniform-eps{eps:g}", mi, "continuous", sample, "y = X + uniform noise")


def discrete_continuous_mixture(m: int = 5) -> ClosedFormTask:
    """Class C uniform on {0..m-1}, feature X | C ~ U(C, C + 2): I = log m - ((m - 1)/m) log 2."""

    def sample(n, rng):
        c = rng.integers(m, size=n)
        return (c + 2 * rng.random(n))[:, None], c

    return ClosedFormTask(f"mixture-m{m}", math.log(m) - (m - 1) / m * math.log(2), "discrete", sample,
                          "discrete attribute, feature uniform on [class, class + 2)")


def deterministic_sectors(n_classes: int = 4, dim_x: int = 2) -> ClosedFormTask:
    """X ~ N(0, I), y = angular sector (of n_classes equal ones) of (X_0, X_1): y = f(X), I = H(y) = log K.

    Rotational symmetry makes the K classes equally likely, and the sectors are an argmax of linear
    functions, so a linear classifier can approach the ceiling."""

    def sample(n, rng):
        X = rng.standard_normal((n, dim_x))
        angle = np.mod(np.arctan2(X[:, 1], X[:, 0]), 2 * np.pi)
        return X, np.minimum((angle / (2 * np.pi) * n_classes).astype(np.int64), n_classes - 1)

    return ClosedFormTask(f"sectors-K{n_classes}", math.log(n_classes), "discrete", sample,
                          "y a deterministic function of X with K balanced values")


def standard_tasks() -> list[ClosedFormTask]:
    """The suite measured in the expressivity notes (truth in nats)."""
    return [
        correlated_gaussians(1, 0.75),
        correlated_gaussians(3, 0.75),
        dense_gaussian(5, 5, 0.5),
        dense_gaussian(5, 1, 0.5),
        with_nuisance(dense_gaussian(5, 1, 0.5), 128),
        independent(16, "continuous"),
        independent(16, "discrete"),
        additive_uniform(0.1),
        discrete_continuous_mixture(5),
        deterministic_sectors(4),
    ]


def linear_attribute(dim_x: int = 512, rho: float = 0.8) -> ClosedFormTask:
    """Face-sized: X ~ N(0, I_d), y = rho w'X + sqrt(1 - rho^2) noise with |w| = 1: I = -0.5 log(1 - rho^2)."""

    def sample(n, rng):
        X = rng.standard_normal((n, dim_x))
        w = np.random.default_rng(12345).standard_normal(dim_x)
        w /= np.linalg.norm(w)
        return X, rho * (X @ w) + math.sqrt(1 - rho**2) * rng.standard_normal(n)

    return ClosedFormTask(f"linear-attribute-{dim_x}-rho{rho:g}", -0.5 * math.log(1 - rho**2), "continuous",
                          sample, "one linear direction of isotropic features carries a continuous attribute")


def gaussian_classes(dim_x: int = 512, mu: float = 0.5) -> ClosedFormTask:
    """Balanced binary y, X | y ~ N(+-mu w, I_d), |w| = 1. I = log 2 - E[H(y | w'X)], the 1-D integral done
    by Gauss-Hermite quadrature (accurate to ~1e-10)."""
    # H(y | X) = E_{s ~ N(mu, 1)} log(1 + exp(-2 mu s)); probabilists' Hermite nodes integrate against N(0, 1).
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    mi = math.log(2) - float(np.sum(weights * np.logaddexp(0.0, -2 * mu * (nodes + mu))) / math.sqrt(2 * math.pi))

    def sample(n, rng):
        y = rng.integers(2, size=n)
        w = np.random.default_rng(12345).standard_normal(dim_x)
        w /= np.linalg.norm(w)
        return rng.standard_normal((n, dim_x)) + np.outer(mu * (2 * y - 1), w), y

    return ClosedFormTask(f"gaussian-classes-{dim_x}-mu{mu:g}", mi, "discrete", sample,
                          "binary attribute shifting isotropic features along one direction")


def student_t(dim: int = 1, rho: float = 0.0, nu: float = 1.0) -> ClosedFormTask:
    """``dim`` pairs with correlation rho under one multivariate Student-t with ``nu`` degrees of freedom.

    Heavy tails (nu = 1 is Cauchy-like). I = the Gaussian MI of the scale matrix plus a term of nu and
    the dimensions alone (Arellano-Valle, Contreras-Reyes and Genton 2013), positive even at rho = 0:
    the shared scale makes X and y dependent.
    """
    from scipy.special import digamma, gammaln

    cov = np.block([[np.eye(dim), rho * np.eye(dim)], [rho * np.eye(dim), np.eye(dim)]])
    chol = np.linalg.cholesky(cov)
    p = q = dim

    def half(a):
        return a / 2.0

    extra = (gammaln(half(nu)) + gammaln(half(nu + p + q)) - gammaln(half(nu + p)) - gammaln(half(nu + q))
             + half(nu + p) * digamma(half(nu + p)) + half(nu + q) * digamma(half(nu + q))
             - half(nu) * digamma(half(nu)) - half(nu + p + q) * digamma(half(nu + p + q)))

    def sample(n, rng):
        z = rng.standard_normal((n, 2 * dim)) @ chol.T
        t = z / np.sqrt(rng.chisquare(nu, size=(n, 1)) / nu)
        y = t[:, dim:]
        return t[:, :dim], (y[:, 0] if dim == 1 else y)

    return ClosedFormTask(f"student-t-{dim}x{dim}-rho{rho:g}-nu{nu:g}", gaussian_mi(cov, dim) + float(extra),
                          "continuous", sample, "one multivariate Student-t (heavy tails)")


def many_classes(n_classes: int = 80, dim_x: int = 16, spread: float = 6.0) -> ClosedFormTask:
    """y uniform on ``n_classes`` classes, X | y = a well-separated class centre plus unit noise.

    With far-apart centres I(X; y) is all but H(y) = log K: the case where an estimator's marginal term
    decides whether it stays under the ceiling. The truth given is log K (an upper bound, tight to
    within the classes' small overlap)."""
    centres = np.random.default_rng(12345).standard_normal((n_classes, dim_x)) * spread

    def sample(n, rng):
        y = rng.integers(0, n_classes, size=n)
        return centres[y] + rng.standard_normal((n, dim_x)), y

    return ClosedFormTask(f"classes-K{n_classes}", math.log(n_classes), "discrete", sample,
                          "K well-separated Gaussian classes: I just under log K")
