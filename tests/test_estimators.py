"""Ground truth for the expressivity MI estimators: closed-form tasks, invariances, errors.

Sizes are small (n <= 3000, a few hundred training steps) so the file stays fast on 2 cores; each
tolerance is stated next to its assertion and reflects those sizes, not the estimators' best accuracy.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from sklearn.base import clone

from probes.errors import FaceprobeError
from probes.expressivity import (
    MINE,
    NWJ,
    SMILE,
    EstimationError,
    InfoNCE,
    LinearProbe,
    MIResult,
    NeuralMIEstimator,
    ProbeBound,
    tasks,
)

# Small, fast neural settings shared by the tests (the defaults train longer).
FAST = {"max_steps": 800, "min_steps": 200, "patience": 4, "eval_every": 40, "n_bootstrap": 50, "n_permutations": 50}


def fast(cls, **kw):
    return cls(**{**FAST, **kw})


# ------------------------------------------------------------------------------ closed-form tasks


def test_task_truths_match_formulas():
    assert tasks.correlated_gaussians(3, 0.6).mi == pytest.approx(-1.5 * math.log(1 - 0.36))
    assert tasks.dense_gaussian(5, 5, 0.5).mi == pytest.approx(0.593, abs=1e-3)  # bmi's value
    assert tasks.additive_uniform(0.1).mi == pytest.approx(1.709, abs=1e-3)
    assert tasks.additive_uniform(1.0).mi == pytest.approx(0.25)
    assert tasks.discrete_continuous_mixture(2).mi == pytest.approx(math.log(2) / 2)
    assert tasks.deterministic_sectors(4).mi == pytest.approx(math.log(4))
    assert tasks.gaussian_classes(8, 1.0).mi == pytest.approx(0.337, abs=1e-3)  # notes' value
    X, y = tasks.deterministic_sectors(4).sample(4000, 0)
    assert np.bincount(y).min() > 900  # balanced classes, so H(y) = log 4
    X, y = tasks.with_nuisance(tasks.dense_gaussian(5, 1), 128).sample(10, 0)
    assert X.shape == (10, 133) and y.shape == (10,)


def test_correlated_gaussians_probe_is_exact_and_significant():
    task = tasks.correlated_gaussians(1, 0.75)  # I = 0.413
    X, y = task.sample(3000, 0)
    r = LinearProbe(random_state=0).estimate(X, y)
    assert abs(r.estimate - task.mi) < 0.05  # Gaussian bound is exact here; sampling sd ~0.02
    assert r.ci_low <= task.mi <= r.ci_high
    assert r.p_value < 0.01


def test_correlated_gaussians_mine():
    task = tasks.correlated_gaussians(2, 0.75)  # I = 0.827
    X, y = task.sample(3000, 1)
    r = fast(MINE, random_state=0).estimate(X, y)
    assert abs(r.estimate - task.mi) < 0.12  # n_eval = 600, few hundred steps
    assert r.ci_low < task.mi < r.ci_high + 0.12  # the interval reaches the truth (within the bias allowed)
    assert r.p_value < 0.05
    d = r.diagnostics
    assert d["chosen_step"] in d["curve"]["step"] or d["chosen_step"] == 0  # a validated state was kept
    assert isinstance(d["converged"], bool) and len(d["curve"]["val"]) == len(d["curve"]["step"])


@pytest.mark.parametrize("cls", [NWJ, SMILE, InfoNCE])
def test_other_bounds_on_gaussians(cls):
    task = tasks.correlated_gaussians(1, 0.75)
    X, y = task.sample(3000, 2)
    r = fast(cls, random_state=0, batch_size=256).estimate(X, y)
    assert abs(r.estimate - task.mi) < 0.1  # n_eval = 600
    assert r.p_value < 0.05


def test_split_gaussian_dense_probe():
    task = tasks.dense_gaussian(5, 5, 0.5)  # 5-d attribute: I = 0.593
    X, y = task.sample(3000, 3)
    r = LinearProbe(random_state=0).estimate(X, y)
    assert abs(r.estimate - task.mi) < 0.05  # log-det Gaussian bound, exact for Gaussians


def test_split_gaussian_dense_mine():
    task = tasks.dense_gaussian(5, 1, 0.5)  # I = 0.269
    X, y = task.sample(3000, 4)
    r = fast(MINE, random_state=0).estimate(X, y)
    assert abs(r.estimate - task.mi) < 0.08


def test_signal_among_128_nuisance_dims():
    task = tasks.with_nuisance(tasks.dense_gaussian(5, 1, 0.5), 128)  # I = 0.269 in 133 dims
    X, y = task.sample(5000, 5)
    probe = LinearProbe(random_state=0).estimate(X, y)
    assert abs(probe.estimate - task.mi) < 0.05  # ridge on 133 dims, 3500 training rows: bias ~ -0.02
    neural = fast(MINE, random_state=0).estimate(X, y)
    assert abs(neural.estimate - task.mi) < 0.05  # the residual critic starts from the ridge-Gaussian baseline
    assert neural.p_value < 0.05
    # A plain MLP critic over-fits 133 dims with 2500 rows; its held-out read-off stays a lower bound.
    plain = fast(MINE, random_state=0, baseline=None).estimate(X, y)
    assert plain.diagnostics["baseline"] is None and neural.diagnostics["baseline"] == "linear"
    assert 0.05 < plain.estimate < task.mi + 0.05


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_independence(kind):
    X, y = tasks.independent(16, kind).sample(3000, 6)
    for est in (LinearProbe(random_state=0), fast(MINE, random_state=0)):
        r = est.estimate(X, y)
        assert r.estimate < 0.03, est  # true MI 0
        assert r.p_value > 0.05, est  # a valid test rejects 5% of the time; fixed seeds


def test_additive_uniform():
    task = tasks.additive_uniform(0.1)  # I = 1.709
    X, y = task.sample(3000, 7)
    r = fast(MINE, random_state=0, max_steps=1500, learning_rate=3e-3).estimate(X, y)
    assert abs(r.estimate - task.mi) < 0.15  # sharp-edged density, short training
    probe = LinearProbe(random_state=0, y_transform="standardize").estimate(X, y)
    assert task.mi - 0.15 < probe.estimate < task.mi  # Gaussian-residual bound 1.63
    # The default maps y to normal scores (a bound that holds for any y): still below the truth, looser here.
    assert 0.5 < LinearProbe(random_state=0).estimate(X, y).estimate < task.mi


def test_discrete_continuous_mixture():
    task = tasks.discrete_continuous_mixture(5)  # I = log 5 - 0.8 log 2 = 1.055
    X, y = task.sample(3000, 8)
    r = fast(MINE, random_state=0, learning_rate=3e-3).estimate(X, y)
    assert r.attribute_kind == "discrete"
    assert abs(r.estimate - task.mi) < 0.1
    probe = LinearProbe(random_state=0).estimate(X, y)
    assert probe.estimate < task.mi + 0.03  # a linear classifier bound: below the truth


def test_deterministic_discrete_ceiling():
    task = tasks.deterministic_sectors(4)  # y = f(X): I = H(y) = log 4 = 1.386
    X, y = task.sample(3000, 9)
    for est in (LinearProbe(random_state=0), fast(MINE, random_state=0), fast(InfoNCE, random_state=0, batch_size=256)):
        r = est.estimate(X, y)
        assert r.estimate <= task.mi + 0.03, est  # nothing may pass the entropy of y
        assert r.estimate > task.mi - 0.25, est
    assert abs(LinearProbe(random_state=0).estimate(X, y).estimate - task.mi) < 0.05


def test_invariance_under_invertible_maps():
    X, y = tasks.correlated_gaussians(2, 0.7).sample(3000, 10)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2, 2)) + 2 * np.eye(2)
    X2, y2 = X @ A.T + np.array([3.0, -1.0]), y**3 if y.ndim == 1 else y[:, 0] ** 3
    y1 = y if y.ndim == 1 else y[:, 0]
    # Rank-scored probe: y^3 has the same ranks as y, and ridge on A X + b equals ridge on X up to
    # the penalty, so the two estimates agree closely.
    a = LinearProbe(y_transform="rank", random_state=0).estimate(X, y1)
    b = LinearProbe(y_transform="rank", random_state=0).estimate(X2, y2)
    assert abs(a.estimate - b.estimate) < 0.01
    # MINE sees standardised A X + b and y^3 (heavy tails): same truth, different training runs.
    m1 = fast(MINE, random_state=0).estimate(X, y1)
    m2 = fast(MINE, random_state=0).estimate(X2, y2)
    assert abs(m1.estimate - m2.estimate) < 0.1


# ------------------------------------------------------------------------------------ API contract


def test_one_result_type_and_fields():
    X, y = tasks.correlated_gaussians(1, 0.5).sample(1500, 11)
    names = []
    for est in (LinearProbe(random_state=0), fast(SMILE, random_state=0, batch_size=256)):
        assert est.fit(X, y) is est
        r = est.result_
        assert type(r) is MIResult
        assert r.estimate_bits == pytest.approx(r.estimate / math.log(2))
        assert r.n_samples == 1500 and 0 < r.n_eval < 1500 and r.wall_time_s > 0
        assert r.attribute_kind == "continuous" and r.ci_level == 0.95
        assert 0 < r.p_value <= 1 and r.ci_high - r.ci_low > 0
        assert set(r.to_dict()) >= {"estimate", "estimate_bits", "ci_low", "ci_high", "p_value", "estimator"}
        with pytest.raises(dataclasses.FrozenInstanceError):
            r.estimate = 1.0  # type: ignore[misc]
        names.append(r.estimator)
    assert names == ["LinearProbe", "SMILE(tau=5)"]
    assert ProbeBound is LinearProbe


def test_attribute_kind_auto():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 3))
    probe = LinearProbe(random_state=0, n_bootstrap=0, n_permutations=0)
    assert probe.estimate(X, rng.integers(3, size=400)).attribute_kind == "discrete"  # few integers
    assert probe.estimate(X, rng.choice(["f", "m"], size=400)).attribute_kind == "discrete"  # strings
    assert probe.estimate(X, rng.integers(18, 80, size=400)).attribute_kind == "continuous"  # age years
    assert probe.estimate(X, rng.random(400)).attribute_kind == "continuous"  # P(male)
    assert probe.set_params(attribute_kind="discrete").estimate(X, rng.integers(18, 80, size=400)) \
        .attribute_kind == "discrete"


def test_reproducible_and_sklearn_clone():
    X, y = tasks.correlated_gaussians(1, 0.6).sample(1500, 12)
    est = fast(MINE, random_state=3, batch_size=256, max_steps=200, n_permutations=0)
    a = est.estimate(X, y)
    b = clone(est).estimate(X, y)
    assert a.estimate == pytest.approx(b.estimate, abs=1e-6) and a.ci_low == pytest.approx(b.ci_low, abs=1e-6)
    assert clone(est).get_params()["batch_size"] == 256


def test_refit_permutation_test():
    X, y = tasks.correlated_gaussians(1, 0.3).sample(600, 13)
    r = LinearProbe(random_state=0, permutation="refit", n_permutations=19, n_bootstrap=0).estimate(X, y)
    assert r.p_value == pytest.approx(0.05)  # 1 / (1 + 19): no refit on shuffled y beats the signal
    assert math.isnan(r.ci_low)
    X0, y0 = tasks.independent(4).sample(600, 14)
    r0 = LinearProbe(random_state=0, permutation="refit", n_permutations=19, n_bootstrap=0).estimate(X0, y0)
    assert r0.p_value > 0.05


# ------------------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize("est", [LinearProbe(), MINE(batch_size=64)], ids=["probe", "mine"])
def test_bad_inputs_raise_named_errors(est):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((300, 4)), rng.standard_normal(300)
    X_nan = X.copy()
    X_nan[5, 1] = np.nan
    y_inf = y.copy()
    y_inf[7] = np.inf
    cases = [
        ((X_nan, y), "X has 1 NaN/inf"),
        ((X, y_inf), "y has 1 NaN/inf"),
        ((X, np.full(300, 2.5)), "y is constant"),
        ((X, np.zeros(300, dtype=int)), "y is constant"),
        ((X, y[:-1]), "X has 300 samples but y has 299"),
        ((X[:10], y[:10]), "needs at least"),
        ((rng.standard_normal((300, 2, 2)), y), "X must be 2-D"),
        ((X, np.array([None] * 300, dtype=object)), "missing label"),
    ]
    for (Xb, yb), message in cases:
        with pytest.raises(EstimationError, match=message):
            est.fit(Xb, yb)
    assert issubclass(EstimationError, FaceprobeError) and issubclass(EstimationError, ValueError)


def test_bad_settings_raise_named_errors():
    X, y = tasks.correlated_gaussians(1, 0.5).sample(600, 15)
    with pytest.raises(EstimationError, match="batch_size=512"):
        MINE(batch_size=512).fit(X, y)  # training split of 300 rows < one batch
    auto = MINE(max_steps=20, n_bootstrap=0, n_permutations=0).estimate(X, y)
    assert auto.diagnostics["batch_size"] == 300  # "auto": the whole training split when under 512
    with pytest.raises(EstimationError, match="batch_size=32"):
        MINE().fit(X[:50], y[:50])  # 25 training rows: too few for any batch
    with pytest.raises(EstimationError, match="batch_size=1"):
        MINE(batch_size=1).fit(X, y)
    with pytest.raises(EstimationError, match="tol=-0.1"):
        MINE(tol=-0.1).fit(X, y)
    with pytest.raises(EstimationError, match="attribute_kind"):
        LinearProbe(attribute_kind="ordinal").fit(X, y)
    with pytest.raises(EstimationError, match="eval_fraction"):
        LinearProbe(eval_fraction=1.5).fit(X, y)
    with pytest.raises(EstimationError, match="bound='nwj'"):
        MINE(bound="nwj", batch_size=64).fit(X, y)
    with pytest.raises(EstimationError, match="permutation"):
        LinearProbe(permutation="sometimes").fit(X, y)
    assert NeuralMIEstimator(bound="nwj", batch_size=64, max_steps=50, n_bootstrap=0,
                             n_permutations=0).estimate(X, y).estimator == "NWJ"
    with pytest.raises(EstimationError, match="learning_rate='fast'"):
        MINE(learning_rate="fast", batch_size=64).fit(X, y)
    r = MINE(batch_size=64, max_steps=50, n_bootstrap=0, n_permutations=0).estimate(X, y)
    assert r.diagnostics["learning_rate"] == pytest.approx(1e-2)  # "auto" = 1e-2 / sqrt(1 feature)


@pytest.mark.parametrize("name", ["dv", "nwj", "smile", "infonce"])
def test_batched_bootstrap_matches_one_replicate_at_a_time(name):
    import torch

    from probes.expressivity.bounds import Bound, make_bound

    g = torch.Generator().manual_seed(0)
    joint, neg = 2 * torch.randn(200, generator=g), 2 * torch.randn(200, 8, generator=g)
    idx = torch.randint(200, (30, 200), generator=g)
    bound = make_bound(name, 0.01, 1.0)  # tau=1 so SMILE's clipping is exercised
    batched = bound.resampled_values(joint, neg, idx)
    looped = Bound.resampled_values(bound, joint, neg, idx)  # the generic per-replicate loop
    assert torch.allclose(batched, looped, atol=1e-5) and batched.shape == (30,)


def test_many_classes_use_closed_form_lda_and_stay_below_entropy():
    rng = np.random.default_rng(0)
    k, per = 80, 25
    centres = rng.normal(scale=6.0, size=(k, 16))
    y = np.repeat(np.arange(k), per)
    X = centres[y] + rng.normal(size=(k * per, 16))
    result = LinearProbe(attribute_kind="discrete", random_state=0, n_bootstrap=50, n_permutations=50).estimate(X, y)
    assert result.diagnostics["classifier"] == "lda" and result.diagnostics["temperature"] > 0
    assert np.log(k) - 0.35 < result.estimate <= np.log(k) + 0.05  # separable clusters: close to H(Y)
    assert result.p_value < 0.05
    independent = LinearProbe(attribute_kind="discrete", random_state=0, n_bootstrap=50,
                              n_permutations=50).estimate(X, rng.permutation(y))
    assert independent.estimate < 0.1 and independent.p_value > 0.05
    with pytest.raises(EstimationError, match="classifier"):
        LinearProbe(attribute_kind="discrete", classifier="svm").estimate(X, y)


# ------------------------------------------------------------------------------ residual critic


def test_ridge_loo_matches_ridgecv_both_shapes():
    from sklearn.linear_model import RidgeCV

    from probes.expressivity.ridge import ridge_loo

    rng = np.random.default_rng(0)
    alphas = np.logspace(-2, 5, 15)
    for n, d in ((300, 20), (40, 120)):  # X'X and XX' eigendecompositions
        X = rng.standard_normal((n, d))
        Y = X[:, :2] @ rng.standard_normal((2, 2)) + rng.standard_normal((n, 2))
        weight, bias, loo, chosen = ridge_loo(X, Y, alphas)
        for j in range(2):
            ref = RidgeCV(alphas=alphas).fit(X, Y[:, j])
            assert chosen[j] == ref.alpha_
            np.testing.assert_allclose(weight[j], ref.coef_, atol=1e-8)
            assert abs(bias[j] - ref.intercept_) < 1e-8
        # leave-one-out residuals are larger than in-sample ones (no over-confident residual covariance)
        assert np.mean(loo**2) > np.mean((Y - X @ weight.T - bias) ** 2)


def test_residual_critic_starts_at_the_gaussian_optimum():
    task = tasks.correlated_gaussians(8, 0.5)  # I = 1.151; the baseline is the optimal critic here
    X, y = task.sample(4000, 11)
    r = MINE(max_steps=1, min_steps=1, n_bootstrap=50, n_permutations=0, random_state=0).estimate(X, y)
    curve = r.diagnostics["curve"]
    assert curve["step"][0] == 0  # the baseline alone is scored before any training
    assert abs(curve["val"][0] - task.mi) < 0.1  # and is already near the truth (n_val = 800)
    assert abs(r.estimate - task.mi) < 0.1  # n_eval = 1,200: sd about 0.04
    assert r.ci_low < task.mi < r.ci_high


def test_residual_critic_discrete_baseline_respects_the_ceiling():
    task = tasks.deterministic_sectors(4)  # y = f(X): I = log 4; a linear classifier nearly reaches it
    X, y = task.sample(3000, 12)
    r = fast(MINE, random_state=0).estimate(X, y)
    assert r.diagnostics["baseline"] == "linear" and r.diagnostics["baseline_fit"]["classifier"] == "logistic"
    assert task.mi - 0.1 < r.estimate < task.mi + 0.05


def test_baseline_setting_errors():
    X, y = tasks.correlated_gaussians(1, 0.5).sample(400, 0)
    with pytest.raises(EstimationError, match="baseline='linear' needs critic='concat'"):
        InfoNCE(baseline="linear", batch_size=64).fit(X, y)
    with pytest.raises(EstimationError, match="baseline='quadratic'"):
        MINE(baseline="quadratic", batch_size=64).fit(X, y)
    r = InfoNCE(batch_size=64, max_steps=20, n_bootstrap=0, n_permutations=0).estimate(X, y)
    assert r.diagnostics["baseline"] is None  # "auto": the separable critic has none


def test_residual_critic_maps_a_skewed_attribute_to_normal_scores():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((2000, 16))
    score = X[:, 0] + 0.5 * rng.standard_normal(2000)
    y = np.exp(2.0 * score)  # log-normal: a monotone map of a Gaussian attribute, I = 0.5 log 5 = 0.805
    # Standardised y: the baseline itself finds that normal scores of y fit far better.
    r = fast(MINE, random_state=0, n_permutations=0, y_transform="standardize").estimate(X, y)
    fit = r.diagnostics["baseline_fit"]
    assert fit["y_map"] == "normal-scores" and fit["train_dv"]["normal-scores"] > fit["train_dv"]["identity"] + 0.3
    assert abs(r.estimate - 0.5 * math.log(5.0)) < 0.1  # n_eval = 600
    plain = fast(MINE, random_state=0, n_permutations=0, baseline=None, y_transform="standardize").estimate(X, y)
    assert plain.estimate < r.estimate  # a plain critic on the skewed y learns less in the same steps
    # The default maps y to normal scores before anything else: nothing left for the baseline's map to do.
    default = fast(MINE, random_state=0, n_permutations=0).estimate(X, y)
    fit = default.diagnostics["baseline_fit"]
    assert fit["train_dv"]["normal-scores"] == pytest.approx(fit["train_dv"]["identity"], abs=0.01)
    assert abs(default.estimate - 0.5 * math.log(5.0)) < 0.1
