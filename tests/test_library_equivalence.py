"""Where a well-kept library replaced a hand-written copy, the numbers are those of the copy it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from probes.geometry import ARCFACE_TEMPLATE_112, similarity_transform
from probes.stats import bootstrap_mean
from probes.verification import realised_fmr, threshold_at_fmr


def umeyama_by_hand(src, dst):
    """faceprobe's own least-squares similarity (Umeyama 1991) before scikit-image replaced it."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s ** 2).sum() / len(s)
    u, sigma, vt = np.linalg.svd(d.T @ s / len(s))
    flip = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        flip[1, 1] = -1
    rotation = u @ flip @ vt
    scale = np.trace(np.diag(sigma) @ flip) / var_s
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def bootstrap_by_hand(values, n_boot, confidence, seed):
    """faceprobe's own percentile bootstrap before scipy.stats.bootstrap replaced it."""
    v = np.asarray(values, np.float64)
    n, rng = len(v), np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = v[rng.integers(0, n, (stop - start, n))].mean(1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def test_similarity_transform_is_umeyamas_fit():
    rng = np.random.default_rng(0)
    for k in range(50):
        src = rng.normal(size=(5, 2)) * 30 + 60
        dst = rng.normal(size=(5, 2)) * 20 + 50 if k % 2 else src * [-1, 1] + rng.normal(size=(5, 2))
        np.testing.assert_allclose(similarity_transform(src, dst), umeyama_by_hand(src, dst), atol=1e-10)
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), rng.normal(size=(5, 2)))


@pytest.mark.parametrize("n", [7, 300, 2500, 9000])  # 9000: several resampling batches
def test_bootstrap_mean_is_the_hand_written_percentile_bootstrap(n):
    values = np.random.default_rng(n).exponential(size=n)
    mean, low, high, count = bootstrap_mean(values, n_boot=500, confidence=0.9, rng=3)
    assert count == n and mean == pytest.approx(values.mean())
    np.testing.assert_allclose((low, high), bootstrap_by_hand(values, 500, 0.9, 3), rtol=0, atol=1e-12)


def test_threshold_at_fmr_accepts_the_impostors_roc_curve_allows():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(1)
    impostors = np.round(rng.normal(size=20_000), 3)  # ties, as real scores have
    genuine = rng.normal(2.0, 1.0, size=500)
    labels = np.r_[np.zeros(len(impostors)), np.ones(len(genuine))]
    fpr, _, thresholds = roc_curve(labels, np.r_[impostors, genuine], drop_intermediate=False)
    for fmr in (1e-1, 1e-2, 1e-3):
        threshold = threshold_at_fmr(impostors, fmr)
        best = np.nonzero(fpr <= fmr)[0][-1]
        assert realised_fmr(impostors, threshold) == pytest.approx(fpr[best])
        # Same impostors accepted; the exact-count threshold is the smallest such, roc_curve's a score.
        assert threshold <= thresholds[best] and (impostors >= threshold).sum() == (impostors >= thresholds[best]).sum()


def test_arcface_alignment_matches_insightface():
    """The five-point template and fit agree with insightface's own (``face_align.estimate_norm``)."""
    face_align = pytest.importorskip("insightface.utils.face_align")
    np.testing.assert_allclose(np.asarray(ARCFACE_TEMPLATE_112), face_align.arcface_dst, atol=1e-4)
    rng = np.random.default_rng(2)
    for _ in range(10):
        landmarks = face_align.arcface_dst * rng.uniform(0.8, 2.5) + rng.normal(0, 3, (5, 2)) + rng.uniform(0, 80, 2)
        np.testing.assert_allclose(similarity_transform(landmarks, ARCFACE_TEMPLATE_112),
                                   face_align.estimate_norm(landmarks.astype(np.float32), 112), atol=1e-3)
