"""Intervals of probes.stats against what they must do: cover, and widen under dependence."""

import numpy as np
import pytest

from probes.stats import (
    bootstrap_mean,
    cluster_bootstrap_mean,
    frechet_distance,
    gaussian_frechet_distance,
    wilson_interval,
)


def test_cluster_bootstrap_equals_plain_bootstrap_scale_for_singletons():
    rng = np.random.default_rng(1)
    v = rng.normal(size=400)
    mean, lo, hi, n, k = cluster_bootstrap_mean(v, np.arange(400), rng=0)
    _, blo, bhi, _ = bootstrap_mean(v, n_boot=2000, rng=0)
    assert (n, k) == (400, 400) and mean == pytest.approx(v.mean())
    assert hi - lo == pytest.approx(bhi - blo, rel=0.15)


def test_cluster_bootstrap_widens_when_people_repeat():
    # 20 people, 50 comparisons each, all of one person's comparisons share its outcome:
    # the effective sample is 20 people, so the interval must be far wider than Wilson's on 1,000 pairs.
    rng = np.random.default_rng(2)
    person_outcome = rng.random(20) < 0.5
    people = np.repeat(np.arange(20), 50)
    success = person_outcome[people].astype(float)
    rate, lo, hi, n, k = cluster_bootstrap_mean(success, people, rng=0)
    wlo, whi = wilson_interval(int(success.sum()), len(success))
    assert (n, k) == (1000, 20)
    assert (hi - lo) > 2.5 * (whi - wlo)
    assert lo <= rate <= hi


def test_cluster_bootstrap_coverage_on_clustered_data():
    # Over repeated draws the 95% interval covers the true rate of a clustered process ~95% of the time.
    rng = np.random.default_rng(3)
    covered = 0
    for trial in range(200):
        p_person = rng.beta(2, 2, size=40)  # true mean 0.5
        people = np.repeat(np.arange(40), 10)
        outcomes = (rng.random(400) < p_person[people]).astype(float)
        _, lo, hi, _, _ = cluster_bootstrap_mean(outcomes, people, n_boot=500, rng=trial)
        covered += lo <= 0.5 <= hi
    assert 0.88 <= covered / 200 <= 0.99


def test_cluster_bootstrap_edge_cases():
    assert np.isnan(cluster_bootstrap_mean([], [])[0])
    mean, lo, hi, n, k = cluster_bootstrap_mean([1.0, 0.0, np.nan], ["a", "a", "b"])
    assert (mean, n, k) == (0.5, 2, 1) and np.isnan(lo) and np.isnan(hi)
    with pytest.raises(ValueError, match="differ in length"):
        cluster_bootstrap_mean([1.0, 2.0], [0])


def test_threshold_at_fmr_on_a_synthetic_impostor_set():
    from probes.verification import min_impostors, realised_fmr, threshold_at_fmr

    rng = np.random.default_rng(4)
    impostors = rng.normal(size=100_000)
    for fmr in (1e-2, 1e-3, 1e-4):
        t = threshold_at_fmr(impostors, fmr)
        assert realised_fmr(impostors, t) <= fmr  # never looser than stated
        assert realised_fmr(impostors, np.nextafter(t, -np.inf)) > fmr  # and the tightest such threshold
    assert min_impostors(1e-3) == 10_000 and min_impostors(1e-4) == 100_000


def test_drift_summary_intervals_are_over_people_when_the_table_names_them():
    import pandas as pd

    from probes.template_drift.summary import summarise

    rng = np.random.default_rng(5)
    people = np.repeat([f"p{i}" for i in range(8)], 25)
    verified = np.repeat(rng.random(8) < 0.5, 25)  # a person's images all verify or all fail
    table = pd.DataFrame({"family": "noise", "variant": "", "strength": 0.1, "unit": "sd", "cosine": rng.random(200),
                          "l2": rng.random(200), "verified": verified, "linf": 0.1, "image": np.arange(200)})
    by_image = summarise(table).iloc[0]
    by_person = summarise(table.assign(person=people)).iloc[0]
    assert by_person["n_people"] == 8 and by_person["verified_rate"] == by_image["verified_rate"]
    width = lambda row: row["verified_ci_high"] - row["verified_ci_low"]  # noqa: E731
    assert width(by_person) > 2 * width(by_image)


def test_gaussian_frechet_distance_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2.
    assert gaussian_frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    # Commuting (diagonal) covariances: |dm|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expected = 3.0 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert gaussian_frechet_distance(np.zeros(3), np.diag(a), np.ones(3), np.diag(b)) == pytest.approx(expected)
    # Non-commuting covariances against scipy's matrix square root of S_a S_b.
    from scipy.linalg import sqrtm

    sa = np.array([[2.0, 0.8], [0.8, 1.0]])
    sb = np.array([[1.0, -0.5], [-0.5, 3.0]])
    cross = np.real(sqrtm(sa @ sb))
    expected = 0.5 ** 2 + np.trace(sa + sb - 2 * cross)
    assert gaussian_frechet_distance([0.0, 0.0], sa, [0.5, 0.0], sb) == pytest.approx(expected, rel=1e-9)
    assert gaussian_frechet_distance([0.0, 0.0], sa, [0.0, 0.0], sa) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="cov_b has shape"):
        gaussian_frechet_distance([0.0, 0.0], sa, [0.0, 0.0], np.eye(3))


def test_frechet_distance_of_samples_approaches_the_gaussians():
    rng = np.random.default_rng(5)
    sa = np.array([[2.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 0.5]])
    sb = np.diag([1.0, 3.0, 0.2])
    mb = np.array([1.0, -1.0, 0.5])
    truth = gaussian_frechet_distance(np.zeros(3), sa, mb, sb)
    a = rng.multivariate_normal(np.zeros(3), sa, 200_000)
    b = rng.multivariate_normal(mb, sb, 200_000)
    assert frechet_distance(a, b) == pytest.approx(truth, rel=0.02)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(a[:500], a[:500]) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="a must be N x D with N >= 2"):
        frechet_distance(a[:1], b)
    with pytest.raises(ValueError, match="differ in dimension"):
        frechet_distance(a, b[:, :2])
    with pytest.raises(ValueError, match="b has non-finite"):
        frechet_distance(a[:10], np.full((10, 3), np.nan))
