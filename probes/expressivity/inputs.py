"""Input checks, attribute typing, splits and train-fitted preprocessing shared by all estimators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from .results import EstimationError

ATTRIBUTE_KINDS = ("auto", "continuous", "discrete")
MAX_AUTO_DISCRETE_VALUES = 20


@dataclass
class Checked:
    """Validated inputs: X as float64 (n, d); y as float64 (n, k) or int64 class codes (n,)."""

    X: np.ndarray
    y: np.ndarray
    kind: str
    classes: np.ndarray | None  # original labels of the codes, discrete only
    groups: np.ndarray | None = None  # int codes of the unit rows depend through (a person), or None


def check_inputs(X, y, attribute_kind: str = "auto", min_samples: int = 20, groups=None) -> Checked:
    """Validate (X, y) and resolve the attribute kind; every failure names the argument.

    ``groups``: one label per row (e.g. the person) that splits must keep together."""
    checked = _check_xy(X, y, attribute_kind, min_samples)
    if groups is None:
        return checked
    groups = np.asarray(groups).reshape(-1)
    if len(groups) != len(checked.X):
        raise EstimationError(f"groups has {len(groups)} entries but X has {len(checked.X)} samples")
    codes = np.unique(groups.astype(str), return_inverse=True)[1].astype(np.int64)
    if codes.max() < 2:
        raise EstimationError("groups has fewer than 3 distinct values: no group-disjoint split is possible")
    checked.groups = codes
    return checked


def _check_xy(X, y, attribute_kind: str, min_samples: int) -> Checked:
    if attribute_kind not in ATTRIBUTE_KINDS:
        raise EstimationError(f"attribute_kind={attribute_kind!r}: expected one of {ATTRIBUTE_KINDS}")
    X = _as_features(X)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise EstimationError(f"y must be 1-D (one attribute) or 2-D (n, k); got shape {y.shape}")
    if len(y) != len(X):
        raise EstimationError(f"X has {len(X)} samples but y has {len(y)}; they must pair up row by row")
    if len(X) < min_samples:
        raise EstimationError(f"X has {len(X)} samples; this estimator needs at least {min_samples}")
    kind = _resolve_kind(y, attribute_kind)
    if kind == "discrete":
        _check_no_missing_labels(y)
        classes, codes = np.unique(y, axis=0 if y.ndim == 2 else None, return_inverse=True)
        codes = codes.reshape(-1).astype(np.int64)
        if len(classes) < 2:
            raise EstimationError(f"y is constant (a single class {classes[0]!r}): mutual information is 0 "
                                  "and no estimator can be fitted")
        return Checked(X, codes, kind, classes)
    y = _numeric(y, "y").reshape(len(y), -1)
    sd = y.std(axis=0)
    if np.any(sd <= 1e-12 * np.maximum(1.0, np.abs(y).max(axis=0))):
        cols = np.flatnonzero(sd <= 1e-12 * np.maximum(1.0, np.abs(y).max(axis=0))).tolist()
        raise EstimationError(f"y is constant (column(s) {cols}): mutual information is 0 and no "
                              "estimator can be fitted")
    return Checked(X, y, kind, None)


def _as_features(X) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise EstimationError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise EstimationError(f"X is empty (shape {X.shape})")
    return _numeric(X, "X")


def _numeric(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype == bool:
        a = a.astype(np.float64)
    if not np.issubdtype(a.dtype, np.number):
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise EstimationError(f"{name} must be numeric; got dtype {a.dtype}") from None
    a = np.asarray(a, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise EstimationError(f"{name} has {int(bad.sum())} NaN/inf value(s) in {len(rows)} sample(s) "
                              f"(first at row {int(rows[0])}); drop or impute them first")
    return a


def _is_numeric(y: np.ndarray) -> bool:
    return y.dtype == bool or np.issubdtype(y.dtype, np.number)


def _check_no_missing_labels(y: np.ndarray) -> None:
    if _is_numeric(y):
        _numeric(y, "y")
        return
    flat = y.reshape(-1)
    missing = [i for i, v in enumerate(flat) if v is None or (isinstance(v, float) and np.isnan(v))]
    if missing:
        raise EstimationError(f"y has {len(missing)} missing label(s) (None/NaN), first at position "
                              f"{missing[0]}; drop those samples first")


def _resolve_kind(y: np.ndarray, attribute_kind: str) -> str:
    if attribute_kind == "discrete":
        return "discrete"
    numeric = _is_numeric(y)
    if attribute_kind == "continuous":
        if not numeric:
            raise EstimationError(f"y has non-numeric dtype {y.dtype} but attribute_kind='continuous'")
        return "continuous"
    if not numeric or y.dtype == bool:
        return "discrete"
    yf = _numeric(y, "y")
    if y.ndim == 1 and np.all(yf == np.round(yf)) and len(np.unique(yf)) <= MAX_AUTO_DISCRETE_VALUES:
        return "discrete"
    return "continuous"


def split_indices(n: int, fractions: tuple[float, ...], rng: np.random.Generator,
                  strata: np.ndarray | None = None, groups: np.ndarray | None = None) -> list[np.ndarray]:
    """Random split of range(n) into len(fractions) parts, stratified by ``strata`` when given.

    Stratification uses randomised rounding per class, so a singleton class lands in each split
    with probability equal to its fraction (identity labels with 1-2 faces each are fine).
    With ``groups`` the split keeps every group whole (no person on both sides: an attribute that is
    constant within a person cannot then be read off through the person's identity); the groups are
    shuffled and filled into the parts by their share of the rows; ``strata`` is then not used.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    cum = np.cumsum(fractions / fractions.sum())
    if groups is not None:
        return _group_split(np.asarray(groups), cum, rng)
    if strata is None:
        order = rng.permutation(n)
        bounds = np.round(cum * n).astype(int)
        return [np.sort(order[a:b]) for a, b in zip(np.r_[0, bounds[:-1]], bounds)]
    order = rng.permutation(n)
    order = order[np.argsort(strata[order], kind="stable")]
    codes = strata[order]
    starts = np.r_[0, np.flatnonzero(np.diff(codes)) + 1]
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)
    offset = np.repeat(rng.random(len(sizes)), sizes)
    u = (rank + offset) / np.repeat(sizes, sizes)
    part = np.minimum(np.searchsorted(cum, u, side="right"), len(fractions) - 1)
    return [np.sort(order[part == k]) for k in range(len(fractions))]


def _group_split(groups: np.ndarray, cum: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Whole groups into parts: each group goes to the part where the middle of its rows falls."""
    names, codes, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(len(names))
    ends = np.cumsum(sizes[order]) / len(groups)
    middles = ends - sizes[order] / (2 * len(groups))
    part_of_group = np.empty(len(names), np.int64)
    part_of_group[order] = np.minimum(np.searchsorted(cum, middles, side="right"), len(cum) - 1)
    part = part_of_group[codes.reshape(-1)]
    return [np.flatnonzero(part == k) for k in range(len(cum))]


class RankGauss:
    """Per-column normal scores Phi^-1(F_train(v)); invertible on the train range, MI-preserving."""

    def fit(self, Y: np.ndarray) -> RankGauss:
        self.grid_, self.cdf_ = [], []
        for col in Y.T:
            values, counts = np.unique(col, return_counts=True)
            mid_rank = np.cumsum(counts) - 0.5 * counts  # mid-rank handles ties
            self.grid_.append(values)
            self.cdf_.append(mid_rank / len(col))
        return self

    def transform(self, Y: np.ndarray) -> np.ndarray:
        out = np.empty_like(Y, dtype=np.float64)
        for j, col in enumerate(Y.T):
            grid, cdf = self.grid_[j], self.cdf_[j]
            u = np.interp(col, grid, cdf) if len(grid) > 1 else np.full(len(col), 0.5)
            out[:, j] = ndtri(np.clip(u, 0.5 / (len(cdf) * 4), 1 - 0.5 / (len(cdf) * 4)))
        return out


class Preprocessor:
    """Train-fitted feature standardisation, optional whitened PCA, and attribute encoding.

    ``pca``: None (off), an int (number of components) or "auto" (128 components when d > 256,
    otherwise off). PCA keeps a lower bound a lower bound (I(PCA(X); y) <= I(X; y)).
    ``y_transform``: "standardize" or "rank" (normal scores, invariant to monotone maps of y).
    ``x_transform``: "standardize" or "rank": normal scores of each feature column (fitted on the training
    split) before the standardisation. MI is unchanged by a monotone map of each column, and normal scores
    are bounded (|z| < 4 at n = 10,000), so one heavy-tailed feature cannot dominate a critic's input.
    """

    def __init__(self, pca=None, y_transform: str = "standardize", random_state=None,
                 x_transform: str = "standardize"):
        self.pca = pca
        self.y_transform = y_transform
        self.x_transform = x_transform
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, kind: str) -> Preprocessor:
        self.kind_ = kind
        if self.x_transform not in ("standardize", "rank"):
            raise EstimationError(f"x_transform={self.x_transform!r}: expected 'standardize' or 'rank'")
        self._x_rank = RankGauss().fit(X) if self.x_transform == "rank" else None
        if self._x_rank is not None:
            X = self._x_rank.transform(X)
        self.x_mean_ = X.mean(axis=0)
        sd = X.std(axis=0)
        self.x_scale_ = np.where(sd > 1e-12, sd, 1.0)
        Z = (X - self.x_mean_) / self.x_scale_
        n_comp = resolve_pca(self.pca, X.shape[1], X.shape[0])
        self.components_ = None
        self.pca_variance_kept_ = 1.0
        if n_comp is not None:
            # Whitened principal axes from the train split only: an SVD of the centred data.
            _, s, vt = np.linalg.svd(Z, full_matrices=False)
            var = s**2 / max(len(Z) - 1, 1)
            self.components_ = vt[:n_comp].T / np.sqrt(np.maximum(var[:n_comp], 1e-12))
            self.pca_variance_kept_ = float(var[:n_comp].sum() / var.sum())
        if kind == "continuous":
            if self.y_transform == "rank":
                self._rank = RankGauss().fit(y)
            elif self.y_transform == "standardize":
                self.y_mean_ = y.mean(axis=0)
                self.y_scale_ = y.std(axis=0)
            else:
                raise EstimationError(f"y_transform={self.y_transform!r}: expected 'standardize' or 'rank'")
        return self

    @property
    def n_features_out_(self) -> int:
        return len(self.x_mean_) if self.components_ is None else self.components_.shape[1]

    def transform_X(self, X: np.ndarray) -> np.ndarray:
        if self._x_rank is not None:
            X = self._x_rank.transform(X)
        Z = (X - self.x_mean_) / self.x_scale_
        return Z if self.components_ is None else Z @ self.components_

    def transform_y(self, y: np.ndarray) -> np.ndarray:
        if self.kind_ == "discrete":
            return y
        if self.y_transform == "rank":
            return self._rank.transform(y)
        return (y - self.y_mean_) / self.y_scale_


def resolve_pca(pca, d: int, n_train: int) -> int | None:
    if pca is None or pca is False:
        return None
    if isinstance(pca, str):
        if pca != "auto":
            raise EstimationError(f"pca={pca!r}: expected None, 'auto' or a positive int")
        return 128 if d > 256 else None
    if not isinstance(pca, (int, np.integer)) or pca < 1:
        raise EstimationError(f"pca={pca!r}: expected None, 'auto' or a positive int")
    return int(min(pca, d, n_train - 1)) if pca < d else None


def check_fractions(val_fraction: float | None, eval_fraction: float) -> tuple[float, ...]:
    parts = [eval_fraction] + ([] if val_fraction is None else [val_fraction])
    names = ["eval_fraction"] + ([] if val_fraction is None else ["val_fraction"])
    for name, f in zip(names, parts):
        if not (isinstance(f, (int, float)) and 0.0 < f < 1.0):
            raise EstimationError(f"{name}={f!r}: expected a fraction in (0, 1)")
    if sum(parts) >= 0.9:
        raise EstimationError(f"{' + '.join(names)} = {sum(parts):.2f} leaves under 10% of the data to train on")
    train = 1.0 - sum(parts)
    return (train, *reversed(parts)) if val_fraction is not None else (train, eval_fraction)
