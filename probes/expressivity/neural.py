"""Neural MI estimators: a critic T(x, y) trained to maximise a variational lower bound.

:class:`NeuralMIEstimator` holds the hyper-parameters and the procedure; :class:`MINE`, :class:`NWJ`,
:class:`SMILE` and :class:`InfoNCE` fix its bound. The critics are in :mod:`~probes.expressivity.critics`,
the bounds in :mod:`~probes.expressivity.bounds`, the training loop in
:mod:`~probes.expressivity.critic_training`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import FitCore, MIEstimator
from .baselines import fit_linear_baseline
from .bounds import make_bound
from .critic_training import (
    CriticTraining,
    TrainingSchedule,
    critic_scores,
    evaluation_core,
    random_shifts,
    thin_curve,
    zero_core,
)
from .critics import ConcatCritic, ResidualCritic, SeparableCritic
from .inputs import Checked, Preprocessor, check_fractions, split_indices
from .results import EstimationError

AUTO_BATCH = 512  # batch_size="auto": this many pairs, or the whole training split when it is smaller
MIN_BATCH = 32  # fewer training rows than this make a noisy critic; refuse rather than mislead


class NeuralMIEstimator(MIEstimator):
    """Variational MI lower bounds with a neural critic T(x, y), one training loop for all bounds.

    ``bound``: "dv" (MINE), "nwj", "smile" or "infonce"; the subclasses :class:`MINE`, :class:`NWJ`,
    :class:`SMILE` and :class:`InfoNCE` fix it (leave ``bound=None`` there).

    Critic. The concat critic is, by default (``baseline="auto"``), a residual one: T = T0 + MLP([x, y]),
    where T0 = log q(y | x) - log q(y) is the log density ratio of a linear model fitted on the training
    split (ridge regression with Gaussian residuals whose covariance comes from leave-one-out residuals for
    a continuous y; :class:`LinearProbe`'s classifier for a discrete y) and the MLP's last layer starts at
    zero. For a continuous y the Gaussian model is fitted to y itself or to its normal scores (a monotone
    map, which leaves the density ratio unchanged; it suits a skewed or near-binary y such as P(male)),
    whichever gives the larger DV bound on the training split, and no baseline when neither is positive.
    Besides [x, y], the MLP reads the baseline's view of each pair (the residual y - W x - b, or
    log q(y | x)), so a sharp function of the residual is easy to learn. T0 is the optimal critic when
    (x, y) are jointly Gaussian, and its bound is about LinearProbe's estimate otherwise, so training
    starts there and only has to learn what a linear model misses; the kept critic is chosen on
    validation data from step 0 on (the baseline alone is a candidate). A plain
    MLP critic has to find a direction in many features from a few thousand samples and memorises them
    first: on the closed-form benchmark (n = 5,000) it fell 0.065-0.11 nats short on 128-D and 8 x 8 Gaussian
    tasks where the residual critic is within 0.04 (benchmarks/README.md). ``baseline=None`` gives the
    plain critic of Belghazi et al.; the separable critic has no baseline.

    Procedure. Feature columns and a continuous y are mapped to normal scores (``x_transform``,
    ``y_transform``) and standardised (and, with ``pca``, projected on whitened principal axes), all fitted
    on the training split; a discrete y
    enters the critic one-hot. Data are split train / validation / evaluation
    (``1 - val_fraction - eval_fraction`` / ``val_fraction`` / ``eval_fraction``, stratified for a
    discrete y). The critic is trained with Adam on batches of ``batch_size`` pairs; negatives (samples
    of the product of marginals) are the batch's other y's: ``n_negatives`` re-pairings per row for the
    concat critic, all other rows for the separable one. Every ``eval_every`` steps the bound is computed
    on (up to ``max_val_samples`` of) the validation split with fixed negatives and smoothed with an
    exponential average (weight ``smoothing`` on the newest value); the weights at the best smoothed value
    are kept. When it has not improved for ``patience`` checks (after ``min_steps``) training resumes from
    the kept weights with the learning rate times ``lr_drop_factor``, at most ``n_lr_drops`` times, then
    stops; ``diagnostics["converged"]`` records whether it stopped that way before ``max_steps``.

    Read-off rule: the bound of the kept (early-stopping) critic, computed once on the evaluation split,
    which played no part in training or in choosing the step. Not the maximum over training: the
    training-set bound of a flexible critic keeps rising as it memorises pairs (4x the truth at N = 10k,
    d = 512 in measurements here), and the maximum of a noisy held-out curve is biased upwards by the
    selection itself; the last held-out value is no better, as overfitting drives it below zero. A
    separate validation split removes the selection bias, and the evaluation-split value is an honest
    (noisy, slightly conservative) lower-bound estimate whose noise the bootstrap CI measures.

    Parameters
    ----------
    critic: "concat" (MLP on [x, y]), "separable" (f(x) . g(y)) or "auto" (separable for InfoNCE,
        which needs many negatives, concat otherwise).
    hidden: hidden widths of the critic MLP(s); (32, 32) by default: on top of the linear baseline, (64, 64)
        was no more accurate on the closed-form tasks and took 1.6x longer per step. embed_dim: output size
        of f and g (separable).
    batch_size: pairs per step; "auto" is 512, or the whole training split when it is smaller (at least
        32 training rows are required either way).
    max_steps, min_steps, learning_rate, weight_decay: optimisation (Adam). ``learning_rate="auto"``
        (default) is 1e-2 / sqrt(d), d the number of features entering the critic (after ``pca``): 1e-2 for
        1-D features, 8.8e-4 for 128-D. Low-dimensional high-MI tasks then converge in about half the
        steps of 1e-3, while many-feature critics, which memorise a few thousand samples within a few
        hundred steps at 1e-2, keep about the old 1e-3. ``diagnostics["learning_rate"]`` has the value used.
    n_lr_drops, lr_drop_factor: learning-rate drops on a validation plateau, see above.
    n_negatives: re-pairings per row per batch for the concat critic (None: 1 for MINE's DV as in
        Belghazi et al.; 4 otherwise); ignored by the separable critic (uses all).
    eval_negatives: re-pairings per row when scoring validation / evaluation data with the concat critic
        (the separable critic uses all pairs of up to 4096 rows).
    baseline: "auto" (linear for the concat critic, none for the separable one), "linear" or None; see Critic.
    tol: the smallest rise of the smoothed validation bound (nats) that counts as progress; slower creeping
        does not hold off the plateau rule (weights are still kept at the best value).
    eval_every, patience, smoothing, max_val_samples: early stopping, see above. Each check scores the
        validation split with ``eval_negatives + 1`` pairings per row. Checks every 80 steps with
        patience 3 (a 240-step window): with the residual critic and ``tol`` this stopped the slowest
        closed-form tasks (additive uniform, mixture, sectors) 20-40% sooner than every 100 with
        patience 4, at the same accuracy over three seeds.
    val_fraction, eval_fraction: split sizes (default 0.5 / 0.2 / 0.3: the evaluation split sets the noise of the
        estimate, about 0.03 nats sd at n = 5,000 for 1 nat, and the baseline needs little training data).
    pca: None (default), an int, or "auto" (128 whitened components when d > 256). A projection fitted
        on the training split cannot raise MI, so the estimate stays a lower bound, and fewer inputs mean
        a smaller first layer; but directions with little variance and much information are lost (on
        isotropic synthetic features PCA to 128 of 512 dims discards ~3/4 of a random signal direction),
        so it is off by default; ``diagnostics["pca_variance_kept"]`` reports what a projection kept.
    x_transform, y_transform: "rank" (the default: normal scores of each feature column / of y, fitted on
        the training split) or "standardize". MI is unchanged by a monotone map of each column, and normal
        scores are bounded: with standardised inputs, heavy tails (benchmark-mi's Student-t tasks, nu = 1)
        let a few extreme rows dominate the critic and its validation bound, and the kept critic fell to
        the T = 0 fallback (estimate 0 against truths of 0.22-0.64).
    ema_rate: MINE's moving-average rate for the gradient denominator (None: plain DV gradient).
    tau: SMILE's clipping threshold.
    n_bootstrap, n_permutations, permutation, ci_level: see the module docstring. The bootstrap
        resamples evaluation rows i together with their scored re-pairings T(x_i, y_j), so each replicate
        has as many marginal pairs as the point estimate (for DV the marginal term is the log-mean-exp over
        the resampled rows' re-pairings; re-scoring fresh pairs within each resample would cost
        n_bootstrap x n_eval x eval_negatives critic passes). The held-out permutation statistic is the
        mean critic score of the evaluation pairs, T(x_i, y_sigma(i)); the null values are reported in
        estimate units by subtracting the (pairing-free) rest of the bound.
    device: torch device for the critic.
    n_threads: torch intra-op threads while fitting (restored afterwards). 1 by default: a critic this
        small gains little from more, and several threads on a shared 2-core machine slow it several-fold;
        run estimates in parallel processes instead. None keeps torch's setting.
    random_state: seeds the split, critic initialisation, batches, bootstrap and permutations.
    """

    _bound = "dv"

    def __init__(self, bound=None, critic="auto", hidden=(32, 32), embed_dim=32, batch_size="auto", max_steps=5000,
                 min_steps=300, learning_rate="auto", n_lr_drops=1, lr_drop_factor=0.25, weight_decay=0.0,
                 n_negatives=None, eval_negatives=16,
                 eval_every=80, patience=3, smoothing=0.5, max_val_samples=2048, val_fraction=0.2,
                 eval_fraction=0.3, pca=None, y_transform="rank", x_transform="rank", ema_rate=0.01, tau=5.0,
                 attribute_kind="auto", n_bootstrap=200, n_permutations=200, permutation="heldout",
                 ci_level=0.95, device="cpu", n_threads=1, baseline="auto", tol=0.005, random_state=None):
        self.baseline = baseline
        self.tol = tol
        self.bound = bound
        self.critic = critic
        self.hidden = hidden
        self.embed_dim = embed_dim
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.min_steps = min_steps
        self.learning_rate = learning_rate
        self.n_lr_drops = n_lr_drops
        self.lr_drop_factor = lr_drop_factor
        self.weight_decay = weight_decay
        self.n_negatives = n_negatives
        self.eval_negatives = eval_negatives
        self.eval_every = eval_every
        self.patience = patience
        self.smoothing = smoothing
        self.max_val_samples = max_val_samples
        self.val_fraction = val_fraction
        self.eval_fraction = eval_fraction
        self.pca = pca
        self.y_transform = y_transform
        self.x_transform = x_transform
        self.ema_rate = ema_rate
        self.tau = tau
        self.attribute_kind = attribute_kind
        self.n_bootstrap = n_bootstrap
        self.n_permutations = n_permutations
        self.permutation = permutation
        self.ci_level = ci_level
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, X, y, groups=None):
        previous = torch.get_num_threads()
        if self.n_threads is not None:
            torch.set_num_threads(int(self.n_threads))
        try:
            return super().fit(X, y, groups)
        finally:
            torch.set_num_threads(previous)

    # -- resolved settings
    def _bound_name(self) -> str:
        name = self._bound if self.bound is None else self.bound
        if type(self) is not NeuralMIEstimator and self.bound not in (None, self._bound):
            raise EstimationError(f"bound={self.bound!r}: {type(self).__name__} always uses {self._bound!r}; "
                                  f"use NeuralMIEstimator(bound={self.bound!r})")
        if name not in ("dv", "nwj", "smile", "infonce"):
            raise EstimationError(f"bound={name!r}: expected 'dv', 'nwj', 'smile' or 'infonce'")
        return name

    def _critic_kind(self) -> str:
        if self.critic == "auto":
            return "separable" if self._bound_name() == "infonce" else "concat"
        if self.critic not in ("concat", "separable"):
            raise EstimationError(f"critic={self.critic!r}: expected 'auto', 'concat' or 'separable'")
        return self.critic

    def _baseline_kind(self, critic_kind: str) -> str | None:
        if self.baseline == "auto":
            return "linear" if critic_kind == "concat" else None
        if self.baseline is None or self.baseline == "none":
            return None
        if self.baseline != "linear":
            raise EstimationError(f"baseline={self.baseline!r}: expected 'auto', 'linear' or None")
        if critic_kind != "concat":
            raise EstimationError("baseline='linear' needs critic='concat' (a separable critic scores all pairs "
                                  "as one matrix product); pass baseline=None")
        return "linear"

    def _name(self) -> str:
        bound = self._bound_name()
        base = {"dv": "MINE", "nwj": "NWJ", "smile": f"SMILE(tau={self.tau:g})", "infonce": "InfoNCE"}[bound]
        default_critic = "separable" if bound == "infonce" else "concat"
        return base if self._critic_kind() == default_critic else f"{base}[{self._critic_kind()}]"

    def _min_samples(self) -> int:
        return 20

    def _check_params(self) -> None:
        if self.batch_size != "auto" and (not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 2):
            raise EstimationError(f"batch_size={self.batch_size!r}: expected 'auto' or an int >= 2")
        for name in ("max_steps", "eval_every", "patience", "max_val_samples", "eval_negatives"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise EstimationError(f"{name}={v!r}: expected a positive int")
        if self.n_negatives is not None and (not isinstance(self.n_negatives, (int, np.integer))
                                             or self.n_negatives < 1):
            raise EstimationError(f"n_negatives={self.n_negatives!r}: expected None or a positive int")
        if isinstance(self.learning_rate, str) and self.learning_rate != "auto":
            raise EstimationError(f"learning_rate={self.learning_rate!r}: expected 'auto' or a float > 0")
        if not isinstance(self.learning_rate, str) and not self.learning_rate > 0:
            raise EstimationError(f"learning_rate={self.learning_rate!r}: expected 'auto' or a float > 0")
        if not (isinstance(self.tol, (int, float)) and self.tol >= 0):
            raise EstimationError(f"tol={self.tol!r}: expected a number of nats >= 0")
        if not 0.0 < self.smoothing <= 1.0:
            raise EstimationError(f"smoothing={self.smoothing!r}: expected a weight in (0, 1]")

    # -- the fit
    # -- the fit
    def _fit_core(self, data: Checked, rng: np.random.Generator) -> FitCore:
        self._check_params()
        bound = make_bound(self._bound_name(), self.ema_rate, self.tau)
        kind = self._critic_kind()
        train, val, test, batch_size = self._split(data, rng)
        prep = Preprocessor(self.pca, self.y_transform, x_transform=self.x_transform)
        prep.fit(data.X[train], data.y[train], data.kind)
        (xtr, ytr), (xva, yva), (xte, yte) = (self._tensors(prep, data, idx) for idx in (train, val, test))
        critic, baseline_kind, baseline_diag = self._build_critic(kind, prep, data, train, rng)
        n_neg = self.n_negatives if self.n_negatives is not None else (1 if bound.name == "dv" else 4)
        shifts_val = random_shifts(len(val), self.eval_negatives, rng)
        shifts_test = random_shifts(len(test), self.eval_negatives, rng)
        lr = self._resolved_lr(prep.n_features_out_)
        training = CriticTraining(critic, bound, self._schedule(), n_neg, batch_size)
        outcome = training.run((xtr, ytr), (xva, yva), shifts_val, lr, rng)

        best = outcome.best
        diag = {"n_train": len(train), "n_val": len(val), "n_features": data.X.shape[1],
                "n_features_used": prep.n_features_out_, "pca_variance_kept": prep.pca_variance_kept_,
                "critic": kind, "baseline": baseline_kind, "baseline_fit": baseline_diag,
                "bound": bound.name, "learning_rate": lr, "batch_size": batch_size, "stop_reason": outcome.stop,
                "converged": outcome.stop == "plateau", "steps": outcome.steps,
                "chosen_step": best["step"], "val_at_chosen": best["val"],
                "val_smoothed_at_chosen": best["smoothed"], "train_at_chosen": best["train"]}
        with torch.no_grad():
            diag["eval_bound_final_weights"] = float(bound.value(*critic_scores(critic, xte, yte, shifts_test)))
        # Read-off: the kept (early-stopping) critic on the evaluation split.
        critic.load_state_dict(best["weights"])
        critic.eval()
        diag["curve"] = thin_curve(outcome.curve, 120)
        self.critic_ = critic
        self.preprocessor_ = prep
        n_classes = len(data.classes) if data.kind == "discrete" else None
        if not (math.isfinite(best["val"]) and best["val"] > 0):
            # No kept critic beat T = 0 on validation (heavy tails can make every check negative): the data
            # give no evidence of dependence the critic can carry over, and T = 0 bounds I by exactly 0.
            diag["fallback"] = "validation bound of the kept critic <= 0: estimate from T = 0"
            return zero_core(len(test), diag)
        return evaluation_core(critic, bound, xte, yte, shifts_test, diag, n_classes)

    def _split(self, data: Checked, rng: np.random.Generator):
        """(train, val, test) row indices and the batch size; val and test in random order."""
        fractions = check_fractions(self.val_fraction, self.eval_fraction)
        strata = data.y if data.kind == "discrete" else None
        train, val, test = split_indices(len(data.X), fractions, rng, strata, data.groups)
        batch_size = min(AUTO_BATCH, len(train)) if self.batch_size == "auto" else int(self.batch_size)
        if len(train) < max(batch_size, MIN_BATCH):
            raise EstimationError(
                f"X has {len(data.X)} samples: the training split ({len(train)}) is smaller than "
                f"batch_size={max(batch_size, MIN_BATCH)}; pass more samples or a smaller batch_size")
        if min(len(val), len(test)) < 10:
            raise EstimationError(f"X has {len(data.X)} samples: validation/evaluation splits "
                                  f"({len(val)}/{len(test)}) need at least 10 each")
        # Row order must be random: negatives pair row i with row i + s.
        val, test = rng.permutation(val)[: self.max_val_samples], rng.permutation(test)
        return train, val, test, batch_size

    def _tensors(self, prep: Preprocessor, data: Checked, idx: np.ndarray):
        dev = torch.device(self.device)
        x = torch.as_tensor(prep.transform_X(data.X[idx]), dtype=torch.float32, device=dev)
        y = prep.transform_y(data.y[idx])
        y = torch.as_tensor(y, dtype=torch.long if data.kind == "discrete" else torch.float32, device=dev)
        return x, y

    def _build_critic(self, kind: str, prep: Preprocessor, data: Checked, train: np.ndarray,
                      rng: np.random.Generator):
        """(critic, baseline kind used, baseline diagnostics): the critic initialised from its own seed."""
        n_classes = len(data.classes) if data.kind == "discrete" else None
        d_y = 1 if data.kind == "discrete" else data.y.shape[1]
        critic_seed = int(rng.integers(2**31 - 1))
        baseline_kind = self._baseline_kind(kind)
        baseline_diag: dict = {}
        fitted = None
        if baseline_kind == "linear":
            Xb, yb = prep.transform_X(data.X[train]), prep.transform_y(data.y[train])
            fitted = fit_linear_baseline(Xb, yb, n_classes, rng, baseline_diag)
            if fitted is None:
                baseline_kind = None  # no linear critic beats T = 0 on the training split
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(critic_seed)
            if kind == "separable":
                critic = SeparableCritic(prep.n_features_out_, d_y, n_classes, self.hidden, self.embed_dim)
            else:
                critic = ConcatCritic(prep.n_features_out_, d_y, n_classes, self.hidden)
            if fitted is not None:
                critic = ResidualCritic(critic, fitted)
        critic.to(torch.device(self.device))
        return critic, baseline_kind, baseline_diag

    def _schedule(self) -> TrainingSchedule:
        return TrainingSchedule(self.max_steps, self.min_steps, self.eval_every, self.patience, self.smoothing,
                                self.tol, self.n_lr_drops, self.lr_drop_factor, self.weight_decay)

    def _resolved_lr(self, n_features: int) -> float:
        if self.learning_rate != "auto":
            return float(self.learning_rate)
        # Few inputs: the critic must become a sharp function (high MI) and overfits little, so large
        # steps pay; many inputs: a 5,000-sample training set is memorised within a few hundred steps
        # of a large step size. 1e-2 / sqrt(d) bridges the two (measured: benchmarks/README.md, MINE speed).
        return 1e-2 / math.sqrt(max(1, n_features))


class MINE(NeuralMIEstimator):
    """MINE (Belghazi et al. 2018): Donsker-Varadhan bound, moving-average-corrected gradient, concat critic.

    See :class:`NeuralMIEstimator` for the parameters, the procedure and the read-off rule.
    """

    _bound = "dv"


class NWJ(NeuralMIEstimator):
    """NWJ / f-divergence bound (Nguyen et al. 2010). See :class:`NeuralMIEstimator`."""

    _bound = "nwj"


class SMILE(NeuralMIEstimator):
    """SMILE (Song & Ermon 2020): JS-trained critic, clipped DV read-off (``tau``, default 5).
    See :class:`NeuralMIEstimator`."""

    _bound = "smile"


class InfoNCE(NeuralMIEstimator):
    """InfoNCE (van den Oord et al. 2018) with a separable critic and all in-batch negatives; capped at
    log(batch_size) in training and log(n_eval) at read-off. See :class:`NeuralMIEstimator`."""

    _bound = "infonce"
