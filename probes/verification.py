"""Face verification: pair scores, LFW's 10-fold protocol, thresholds at a fixed FMR.

Scores are similarities (higher = more likely the same person): cosine
similarity, or the negated Euclidean distance for networks such as dlib's
whose rule is a distance threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import FaceprobeError
from .stats import cluster_bootstrap_mean, wilson_interval


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

    The exact-count rule is kept rather than ``sklearn.metrics.roc_curve``: roc_curve needs genuine scores
    too, and its thresholds are observed scores, so picking its largest FPR <= ``fmr`` accepts the same
    impostors (tests/test_library_equivalence.py checks this) but gives a threshold equal to an accepted
    score, not the smallest threshold with at most ``floor(fmr * n)`` impostors at or above it, which the
    pinned thresholds (probes/verification_thresholds.json) are.
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


MIN_IMPOSTORS_PER_FMR = 10  # a threshold at FMR f rests on at least 10 / f impostor scores (>= 10 accepted)


def min_impostors(fmr: float, factor: int = MIN_IMPOSTORS_PER_FMR) -> int:
    """The fewest impostor scores a threshold at ``fmr`` may rest on: ``factor / fmr``.

    With n impostors the threshold at FMR f is set by about n*f accepted impostors; at n = 1/f that
    is one score, and the realised FMR of a fresh impostor set scatters widely around f.
    """
    if not 0 < fmr < 1:
        raise VerificationError(f"fmr must lie in (0, 1), got {fmr}")
    return int(math.ceil(factor / fmr - 1e-9))


def realised_fmr(impostor_scores: np.ndarray, threshold: float) -> float:
    """The share of ``impostor_scores`` at or above ``threshold`` (the FMR a threshold actually gives)."""
    imp = np.asarray(impostor_scores, np.float64)
    return float((imp >= threshold).mean()) if len(imp) else float("nan")


def verification_rate(genuine_scores: np.ndarray, threshold: float) -> float:
    """Fraction of genuine (or attack) scores accepted at ``threshold``."""
    g = np.asarray(genuine_scores, np.float64)
    return float((g >= threshold).mean()) if len(g) else float("nan")


# --------------------------------------------------------------------------- thresholds and attack rates


IMPOSTOR_SETS = ("auto", "pairs", "cross")


@dataclass(frozen=True)
class AttackRate:
    """Success attack rate: ``accepted`` of ``n`` attack scores reach ``threshold``."""

    rate: float
    accepted: int
    n: int
    ci_low: float
    ci_high: float
    threshold: float
    n_people: int | None = None  # clusters the interval resampled (None: comparisons taken as independent)
    interval: str = "Wilson"

    def __str__(self) -> str:
        if not self.n:
            return "n/a (no comparisons)"
        return f"{100 * self.rate:.1f}% [{100 * self.ci_low:.1f}, {100 * self.ci_high:.1f}] ({self.accepted}/{self.n})"


def success_attack_rate(scores, threshold: float, confidence: float = 0.95, people=None,
                        n_boot: int = 2000, seed: int = 0) -> AttackRate:
    """SAR of attack ``scores`` (higher = more alike) at ``threshold``.

    With ``people`` (one identity per score) the interval is a bootstrap over people: several comparisons
    of one person are not independent trials, and a few people with many images would otherwise narrow
    a Wilson interval far below what the data support. Without it, a Wilson interval.
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    if not np.isfinite(s).all():
        raise VerificationError("attack scores contain NaN or infinite values")
    if not math.isfinite(threshold):
        raise VerificationError(f"threshold must be finite, got {threshold}")
    k = int((s >= threshold).sum())
    rate = verification_rate(s, threshold)
    if people is None:
        low, high = wilson_interval(k, len(s), confidence)
        return AttackRate(rate, k, len(s), low, high, float(threshold))
    _, low, high, _, n_people = cluster_bootstrap_mean((s >= threshold).astype(np.float64), people, n_boot,
                                                       confidence, seed)
    return AttackRate(rate, k, len(s), low, high, float(threshold), n_people, "bootstrap over people")


@dataclass
class LFWScores:
    """Verification scores of LFW pairs for one backbone (similarities: higher = same person)."""

    metric: str
    genuine: np.ndarray  # matched pairs
    impostor_pairs: np.ndarray  # mismatched pairs of the protocol file
    impostor_cross: np.ndarray  # all cross-identity pairs among the pairs' images
    n_images: int
    n_identities: int
    subset: str = "10_folds"
    n_pairs: int = 0
    n_people_left_out: int = 0  # people excluded from every score (an attack's test people)


def blocked_scores(a: np.ndarray, b: np.ndarray, keep, metric: str, block: int = 512) -> np.ndarray:
    """Scores of the (row of ``a``, row of ``b``) pairs that ``keep(start, stop)`` selects, row-major (float64).

    Computed a block of ``a``'s rows at a time from one matrix product, so memory stays
    O(block x len(b)) instead of O(pairs x dims).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise VerificationError("embeddings contain NaN or infinite values")
    if metric == "cosine":
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    elif metric != "euclidean":
        raise VerificationError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    sq_a, sq_b = (a * a).sum(1), (b * b).sum(1)
    out = []
    for start in range(0, len(a), block):
        stop = min(len(a), start + block)
        gram = a[start:stop] @ b.T
        if metric == "cosine":
            s = gram
        else:
            s = -np.sqrt(np.maximum(sq_a[start:stop, None] + sq_b[None, :] - 2 * gram, 0.0))
        out.append(s[keep(start, stop)])
    return np.concatenate(out) if out else np.zeros(0)


def _identity_pair_scores(templates: np.ndarray, identities: Sequence[str], metric: str, block: int,
                          same: bool) -> np.ndarray:
    """Scores of every unordered pair of distinct images whose identities agree (``same``) or differ."""
    ids = np.unique(np.asarray(identities, dtype=str), return_inverse=True)[1]
    n = len(ids)

    def keep(start, stop):
        rows = np.arange(start, stop)[:, None]
        agree = ids[start:stop, None] == ids[None, :]
        return (np.arange(n)[None, :] > rows) & (agree if same else ~agree)

    return blocked_scores(templates, templates, keep, metric, block)


def cross_identity_scores(templates: np.ndarray, identities: Sequence[str], metric: str,
                          block: int = 512) -> np.ndarray:
    """Scores of every unordered pair of images with different identities (float64)."""
    return _identity_pair_scores(templates, identities, metric, block, same=False)


def same_identity_scores(templates: np.ndarray, identities: Sequence[str], metric: str,
                         block: int = 512) -> np.ndarray:
    """Scores of every unordered pair of distinct images with the same identity (genuine pairs, float64)."""
    return _identity_pair_scores(templates, identities, metric, block, same=True)


@dataclass
class FMRThreshold:
    """The threshold at one FMR, the impostor set it rests on, and how genuine LFW pairs fare at it."""

    fmr: float
    threshold: float
    impostor_set: str
    n_impostors: int
    impostors_allowed: int  # impostor scores at or above the threshold allowed by the FMR
    impostors_accepted: int
    genuine_accept_rate: float  # of the matched LFW pairs (TMR at this FMR)
    n_genuine: int
    metric: str
    alternatives: dict = field(default_factory=dict)  # the other impostor set: threshold or why not
    realised_fmr: float = float("nan")  # share of the impostors at or above the threshold (<= fmr)
    min_impostors: int = 0  # the impostors a threshold at this FMR should rest on (10 / fmr)
    enough_impostors: bool = True

    def describe(self) -> str:
        if self.metric == "euclidean":
            return f"L2 <= {-self.threshold:.4f}"
        return f"cos >= {self.threshold:.4f}"


def thresholds_at_fmrs(scores: LFWScores, fmrs: Sequence[float], impostors: str = "auto") -> list[FMRThreshold]:
    """One :class:`FMRThreshold` per FMR from ``scores`` (``impostors``: auto, pairs or cross).

    Every FMR's threshold comes from the same impostor population. ``auto`` takes the cross-identity
    set (every pair of images of different people: the largest population, so the strictest reachable
    thresholds) when it reaches every FMR, else the protocol's mismatched pairs. A threshold resting on
    fewer than :func:`min_impostors` scores is kept but flagged (``enough_impostors``).
    """
    if impostors not in IMPOSTOR_SETS:
        raise VerificationError(f"--impostors must be one of {', '.join(IMPOSTOR_SETS)}, got {impostors!r}")
    sets = {"pairs": scores.impostor_pairs, "cross": scores.impostor_cross}
    if impostors == "auto":
        impostors = "cross" if len(sets["cross"]) >= len(sets["pairs"]) else "pairs"
    out = []
    for fmr in fmrs:
        computed = {}
        for name, imp in sets.items():
            try:
                computed[name] = threshold_at_fmr(imp, fmr)
            except VerificationError as exc:
                computed[name] = exc
        chosen = impostors
        if isinstance(computed[chosen], Exception):
            raise VerificationError(f"threshold at FMR {fmr:g} from the {chosen} impostor set "
                                    f"({len(sets[chosen])} scores): {computed[chosen]}")
        t = computed[chosen]
        imp = sets[chosen]
        other = "cross" if chosen == "pairs" else "pairs"
        alt = computed[other]
        alternatives = {other: {"n_impostors": len(sets[other]),
                                **({"error": str(alt)} if isinstance(alt, Exception) else
                                   {"threshold": alt, "genuine_accept_rate": verification_rate(scores.genuine, alt)})}}
        needed = min_impostors(fmr)
        out.append(FMRThreshold(float(fmr), t, chosen, len(imp), math.floor(fmr * len(imp)),
                                int((imp >= t).sum()), verification_rate(scores.genuine, t), len(scores.genuine),
                                scores.metric, alternatives, realised_fmr(imp, t), needed, len(imp) >= needed))
    return out
