"""Face verification: pair scores, LFW's 10-fold protocol, thresholds at a fixed FMR.

Scores are similarities (higher = more likely the same person): cosine
similarity, or the negated Euclidean distance for networks such as dlib's
whose rule is a distance threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import FaceprobeError


class VerificationError(FaceprobeError, ValueError):
    """Scores or labels unusable for a verification figure."""


def pair_scores(emb_a: np.ndarray, emb_b: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Similarity of row-aligned embeddings (cosine, or -euclidean)."""
    a, b = np.asarray(emb_a, np.float64), np.asarray(emb_b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise VerificationError(f"embeddings must be two N x D arrays of one shape, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise VerificationError("embeddings contain NaN or infinite values")
    if metric == "cosine":
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        return (a * b).sum(1) / np.maximum(na * nb, 1e-12)
    if metric == "euclidean":
        return -np.linalg.norm(a - b, axis=1)
    raise VerificationError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")


def _best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Threshold maximising accuracy of `score >= t` (midpoints between sorted scores)."""
    order = np.argsort(scores)
    s, y = scores[order], same[order].astype(bool)
    # accept everything at index >= i: correct = negatives below i + positives from i.
    neg_below = np.concatenate([[0], np.cumsum(~y)])
    pos_from = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    i = int(np.argmax(neg_below + pos_from))
    if i == 0:
        return float(s[0] - 1e-9)
    if i == len(s):
        return float(s[-1] + 1e-9)
    return float((s[i - 1] + s[i]) / 2)


@dataclass(frozen=True)
class TenFoldResult:
    accuracy: float
    std: float
    fold_accuracies: tuple[float, ...]
    thresholds: tuple[float, ...]
    auc: float
    n_pairs: int
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{100 * self.accuracy:.2f} +- {100 * self.std:.2f}% (AUC {self.auc:.4f}, {self.n_pairs} pairs)"


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(same, bool), scores))


def ten_fold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> TenFoldResult:
    """LFW's protocol: for each fold, pick the threshold on the other folds, score on it."""
    scores, same, folds = np.asarray(scores, np.float64), np.asarray(same, bool), np.asarray(folds)
    if not (len(scores) == len(same) == len(folds)):
        raise VerificationError(f"scores ({len(scores)}), same ({len(same)}) and folds ({len(folds)}) differ in length")
    if not np.isfinite(scores).all():
        raise VerificationError("scores contain NaN or infinite values")
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise VerificationError("ten_fold_accuracy needs at least two folds")
    accs, thresholds = [], []
    for f in fold_ids:
        test = folds == f
        t = _best_threshold(scores[~test], same[~test])
        accs.append(float(((scores[test] >= t) == same[test]).mean()))
        thresholds.append(t)
    return TenFoldResult(float(np.mean(accs)), float(np.std(accs)), tuple(accs), tuple(thresholds),
                         roc_auc(scores, same), len(scores))


def threshold_at_fmr(impostor_scores: np.ndarray, fmr: float) -> float:
    """Smallest threshold with at most ``fmr`` of impostor scores at or above it.

    With n impostor scores the smallest reachable FMR is 1/n; asking for less
    raises, since the threshold would then be an extrapolation.
    """
    imp = np.sort(np.asarray(impostor_scores, np.float64))
    if not 0 < fmr < 1:
        raise VerificationError(f"fmr must lie in (0, 1), got {fmr}")
    if len(imp) * fmr < 1:
        raise VerificationError(
            f"FMR {fmr:g} needs at least {int(np.ceil(1 / fmr))} impostor scores, got {len(imp)}")
    allowed = int(np.floor(fmr * len(imp)))  # impostors allowed at or above the threshold
    # Threshold just above the (allowed+1)-th largest impostor score.
    return float(np.nextafter(imp[len(imp) - allowed - 1], np.inf))


def verification_rate(genuine_scores: np.ndarray, threshold: float) -> float:
    """Fraction of genuine (or attack) scores accepted at ``threshold``."""
    g = np.asarray(genuine_scores, np.float64)
    return float((g >= threshold).mean()) if len(g) else float("nan")
