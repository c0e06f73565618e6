"""Training a neural critic with early stopping, and reading its bound off the evaluation split.

:class:`CriticTraining` is the one training loop of every neural estimator (MINE, NWJ, SMILE, InfoNCE);
:func:`evaluation_core` turns the kept critic into the estimate, its bootstrap and its held-out
permutation null. The procedure is documented on :class:`~probes.expressivity.neural.NeuralMIEstimator`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from .base import FitCore
from .bounds import NWJ, Bound, DonskerVaradhan
from .ceilings import class_scores, exact_joint, exact_negatives, label_entropy
from .critics import ResidualCritic, batch_scores

MATRIX_MAX = 4096  # separable critic: score all pairs up to this many rows
CHUNK_ROWS = 65536  # rows per batched bootstrap / permutation pass


def random_shifts(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct re-pairing offsets in 1..n-1 (row i is paired with row (i + s) mod n)."""
    return rng.choice(np.arange(1, n), size=min(k, n - 1), replace=False)


def encoded_scores(critic, ex, ey, shifts):
    """(joint, neg) of encoded rows: every pair for a separable critic of up to MATRIX_MAX rows, else ``shifts``."""
    if critic.separable and len(ex) <= MATRIX_MAX:
        return batch_scores(critic, ex, ey, None)
    return batch_scores(critic, ex, ey, shifts)


def critic_scores(critic, x, y, shifts):
    """(joint, neg) of raw rows (x, y)."""
    return encoded_scores(critic, critic.encode_x(x), critic.encode_y(y), shifts)


@dataclass(frozen=True)
class TrainingSchedule:
    """Optimisation and early-stopping settings of :class:`CriticTraining`."""

    max_steps: int
    min_steps: int
    eval_every: int
    patience: int
    smoothing: float
    tol: float
    n_lr_drops: int
    lr_drop_factor: float
    weight_decay: float


@dataclass
class TrainingOutcome:
    """The training curve, the kept state (``best``: step, val, smoothed, train, weights), why it stopped."""

    curve: dict
    best: dict
    stop: str
    steps: int


class CriticTraining:
    """Adam on batches of training pairs. Every ``eval_every`` steps the bound on the validation split is
    smoothed; the weights at its best value are kept, and on a plateau training resumes from them with a
    smaller learning rate, at most ``n_lr_drops`` times, then stops."""

    def __init__(self, critic: torch.nn.Module, bound: Bound, schedule: TrainingSchedule, n_negatives: int,
                 batch_size: int):
        self.critic, self.bound, self.schedule = critic, bound, schedule
        self.n_negatives, self.batch_size = n_negatives, batch_size

    def run(self, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
            shifts_val: np.ndarray, lr: float, rng: np.random.Generator) -> TrainingOutcome:
        """Train on ``train`` (x, y) rows, judging on ``val`` scored with ``shifts_val``."""
        schedule = self.schedule
        xtr, ytr = train
        self._start(val, shifts_val, lr)
        n, B = len(xtr), self.batch_size
        order, pos = rng.permutation(n), 0
        stop, step = "max_steps", 0
        for step in range(1, schedule.max_steps + 1):
            if pos + B > n:
                order, pos = rng.permutation(n), 0
            idx = torch.as_tensor(order[pos: pos + B], device=xtr.device)
            pos += B
            scores = self._train_step(xtr[idx], ytr[idx], rng)
            if scores is None:
                stop = "diverged"
                break
            if step % schedule.eval_every and step != schedule.max_steps:
                continue
            reason = self._check(step, *scores)
            if reason is not None:
                stop = reason
                break
        return TrainingOutcome(self.curve, self.best, stop, step)

    def _adam(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.critic.parameters(), lr=self.lr, weight_decay=self.schedule.weight_decay,
                                foreach=True)

    def _start(self, val, shifts_val, lr) -> None:
        self.val, self.shifts_val, self.lr = val, shifts_val, lr
        self.optimizer = self._adam()
        self.bound.reset()
        self.curve = {"step": [], "train": [], "val": [], "val_smoothed": [], "lr_drops": []}
        self.best = {"smoothed": -math.inf, "step": 0, "val": float("nan"), "train": float("nan"),
                     "weights": copy.deepcopy(self.critic.state_dict())}
        self.smoothed, self.train_avg, self.stale = None, None, 0
        self.reference = -math.inf  # smoothed value at the last improvement of more than tol
        if isinstance(self.critic, ResidualCritic):  # the baseline alone is a candidate: training may only add
            v0 = self._validation_bound()
            if math.isfinite(v0):
                self.smoothed = self.reference = v0
                self.best.update(smoothed=v0, val=v0)
                self._record(0, float("nan"), v0, v0)

    def _train_step(self, x, y, rng) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One Adam step on a batch; its (joint, neg) scores, or None when the loss is not finite."""
        critic, B = self.critic, self.batch_size
        critic.train()
        shifts = None if critic.separable else rng.choice(np.arange(1, B), size=min(self.n_negatives, B - 1),
                                                          replace=False)
        joint, neg = batch_scores(critic, critic.encode_x(x), critic.encode_y(y), shifts)
        loss = self.bound.loss(joint, neg)
        if not torch.isfinite(loss):
            return None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return joint, neg

    def _validation_bound(self) -> float:
        self.critic.eval()
        with torch.no_grad():
            return float(self.bound.value(*critic_scores(self.critic, *self.val, self.shifts_val)))

    def _record(self, step, train, val, smoothed) -> None:
        for key, value in (("step", step), ("train", train), ("val", val), ("val_smoothed", smoothed)):
            self.curve[key].append(value)

    def _check(self, step: int, joint, neg) -> str | None:
        """Score the validation split; "diverged" or "plateau" when training must stop, else None."""
        schedule = self.schedule
        with torch.no_grad():  # training-batch bound, averaged over checks (a noisy over-fitting gauge)
            tv = float(self.bound.value(joint, neg))
        self.train_avg = tv if self.train_avg is None else 0.7 * self.train_avg + 0.3 * tv
        v = self._validation_bound()
        if not math.isfinite(v):
            return "diverged"
        w = schedule.smoothing
        self.smoothed = v if self.smoothed is None else (1 - w) * self.smoothed + w * v
        self._record(step, self.train_avg, v, self.smoothed)
        if self.smoothed > self.best["smoothed"]:
            self.best = {"smoothed": self.smoothed, "step": step, "val": v, "train": self.train_avg,
                         "weights": copy.deepcopy(self.critic.state_dict())}
        if self.smoothed > self.reference + schedule.tol:
            self.reference, self.stale = self.smoothed, 0
            return None
        self.stale += 1
        if self.stale < schedule.patience or step < schedule.min_steps:
            return None
        if len(self.curve["lr_drops"]) >= schedule.n_lr_drops:
            return "plateau"
        # Plateau: go back to the best weights and continue with a smaller step size.
        self.lr *= schedule.lr_drop_factor
        self.critic.load_state_dict(self.best["weights"])
        self.optimizer = self._adam()
        self.curve["lr_drops"].append(step)
        self.stale = 0
        return None


def evaluation_scores(critic, bound: Bound, ex: torch.Tensor, ey: torch.Tensor, yte: torch.Tensor,
                      shifts: np.ndarray, n_classes: int | None, diagnostics: dict):
    """(joint, neg) of the evaluation rows. For a discrete label and a DV or NWJ bound the marginal term is
    exact (every row against every class, weighted by the class's share; see :mod:`.ceilings`), which keeps
    the estimate under H(y); otherwise the rows' re-pairings by ``shifts``."""
    if n_classes is not None:
        diagnostics["label_entropy_nats"] = label_entropy(yte.cpu().numpy())
    if n_classes is not None and isinstance(bound, (DonskerVaradhan, NWJ)):
        diagnostics["marginal_term"] = "exact: every evaluation row against every class"
        scores = class_scores(critic, ex, n_classes)
        return exact_joint(scores, yte), exact_negatives(scores, yte)
    diagnostics["marginal_term"] = f"{len(shifts)} re-pairings per row"
    return encoded_scores(critic, ex, ey, shifts)


def evaluation_core(critic, bound: Bound, xte: torch.Tensor, yte: torch.Tensor, shifts: np.ndarray,
                    diagnostics: dict, n_classes: int | None = None) -> FitCore:
    """The bound of ``critic`` on the evaluation rows, with its bootstrap and held-out permutation null
    (``n_classes``: the label's class count when it is discrete)."""
    with torch.no_grad():
        ex, ey = critic.encode_x(xte), critic.encode_y(yte)
        joint, neg = evaluation_scores(critic, bound, ex, ey, yte, shifts, n_classes, diagnostics)
        raw = float(bound.value(joint, neg))
    n, dev = len(xte), xte.device
    joint_np = joint.cpu().numpy().astype(np.float64)
    chunk = max(1, CHUNK_ROWS // n)  # replicates per pass, bounding memory

    def bootstrap(B, g):
        # Resample evaluation rows, each with its scored re-pairings (same count of negative pairs as
        # the point estimate, so the spread of the replicates matches its sampling noise).
        idx = g.integers(n, size=(B, n))
        with torch.no_grad():
            return np.concatenate([
                bound.resampled_values(joint, neg, torch.as_tensor(idx[i: i + chunk], device=dev)).cpu().numpy()
                for i in range(0, B, chunk)]).astype(np.float64)

    def heldout_null(B, g):
        # Statistic: mean T(x_i, y_i) on the evaluation pairs; reported in estimate units
        # (raw + null mean - observed mean), the rest of the bound being pairing-free.
        # Several permutations share one critic pass (rows stacked), same draws as one at a time.
        perms = np.stack([g.permutation(n) for _ in range(B)]) if B else np.empty((0, n), dtype=np.int64)
        observed = joint_np.mean()
        out = []
        with torch.no_grad():
            for i in range(0, B, chunk):
                p = torch.as_tensor(perms[i: i + chunk], device=dev)
                scores = critic.score_pairs(ex.repeat(len(p), 1), ey[p.reshape(-1)]).reshape(len(p), n)
                out.append(scores.double().mean(dim=1).cpu().numpy())
        return raw + np.concatenate(out) - observed if out else np.empty(0)

    return FitCore(raw, n, bootstrap, heldout_null, diagnostics)


def zero_core(n_eval: int, diagnostics: dict) -> FitCore:
    """The core of the constant critic T = 0: its bound is 0 on any data, with no spread."""
    return FitCore(0.0, n_eval, lambda B, g: np.zeros(B), lambda B, g: np.zeros(B), diagnostics)


def thin_curve(curve: dict, max_points: int) -> dict:
    """The training curve at most ``max_points`` evenly spaced checks (learning-rate drops kept whole)."""
    curve = dict(curve)
    drops = [int(v) for v in curve.pop("lr_drops", [])]
    n = len(curve["step"])
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(int)) if n > max_points else np.arange(n)
    out = {k: [float(vals[i]) for i in keep] for k, vals in curve.items()}
    out["lr_drops"] = drops
    return out
