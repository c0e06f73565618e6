"""A generic, resumable, optionally distributed training loop.

The loop knows nothing about decoders or GANs. A :class:`TrainTask` owns the
models and optimisers and does one optimisation step per call of
``step(batch, step)``; the :class:`Trainer` provides everything around it:

- a seeded data order: each epoch is a permutation drawn from a
  ``torch.Generator`` whose state (and the current permutation and position)
  is checkpointed; with ``world_size`` processes every step takes
  ``batch_size * world_size`` consecutive indices of the permutation and rank
  ``r`` keeps every ``world_size``-th of them (what ``DistributedSampler``
  does, without its padding); an incomplete last batch of an epoch is dropped;
- tqdm progress (the total loss first), ``log.csv`` (one row per ``log_every`` steps, averaged over the
  window and over processes) and ``val.csv`` when the task validates; on resume
  rows written after the checkpoint are dropped, so the log matches a run that
  never stopped;
- sample grids (``samples/step_XXXXXXX.png``) drawn under a forked RNG, so
  drawing them changes nothing in the training;
- checkpoints (``checkpoints/latest.pt`` every ``save_every`` steps and
  ``checkpoints/step_XXXXXXX.pt`` every ``keep_every``) written atomically by
  rank 0, loadable with ``torch.load(weights_only=True)``;
- resume: models, optimisers, RNG states (torch, CUDA, numpy, Python), data
  order, log window and elapsed time are restored, so an interrupted run --
  even one killed with ``kill -9`` between saves -- ends with the same weights
  as an uninterrupted one (bit-exact on CPU for single-process runs);
- ``torchrun``: :func:`init_distributed` reads ``WORLD_SIZE``/``RANK``/
  ``LOCAL_RANK`` and starts gloo (CPU) or nccl (CUDA);
  :meth:`TrainTask.distribute` wraps the trainable models in
  ``DistributedDataParallel``. Only rank 0's RNG state is checkpointed; other
  ranks are reseeded from (seed, rank, step) on resume.

A GAN task holds two models and two optimisers and does its discriminator and
generator updates inside one ``step``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..config import DictConfig
from ..errors import TrainingError
from .checkpoints import (
    FORMAT,
    CheckpointError,
    atomic_save,
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    set_rng_state,
)
from .data import BatchSource, DataOrder
from .distributed import DistributedContext
from .progress import LossWindow, bar_postfix, reduce_means, side_rng, stop_signals
from .runs import append_csv, save_grid, truncate_csv
from .task import TrainTask

__all__ = ["TrainResult", "TrainTask", "Trainer", "TrainerSettings", "warmup_cosine"]

# --------------------------------------------------------------------------- trainer


@dataclass
class TrainerSettings(DictConfig):
    ignore_unknown = True  # from_dict leaves out keys it does not know

    steps: int = 1000
    batch_size: int = 32  # per process
    seed: int = 0
    save_every: int = 100  # latest.pt
    keep_every: int = 1000  # step_XXXXXXX.pt (0 = never)
    log_every: int = 10
    sample_every: int = 200  # 0 = never (a last grid is always drawn at the end)
    validate_every: int = 0  # 0 = only at the end
    time_limit_s: float | None = None  # stop (and save) once training time passes this
    progress: bool = True

    def __post_init__(self):
        for name in ("steps", "batch_size", "save_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise TrainingError(f"{name} must be a positive integer, got {value!r}")
        for name in ("keep_every", "sample_every", "validate_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise TrainingError(f"{name} must be an integer >= 0, got {value!r}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise TrainingError(f"time_limit_s must be positive, got {self.time_limit_s}")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> float:
    """The learning-rate factor shared by the training tasks: linear warmup over ``warmup_steps`` (at most
    a tenth of a short run), then cosine decay from 1 to ``min_ratio`` at ``total_steps``."""
    warmup = max(1, min(warmup_steps, total_steps // 10))
    warm = min(1.0, (step + 1) / warmup)
    progress = min(1.0, step / max(1, total_steps))
    return warm * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _every(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


@dataclass
class TrainResult:
    step: int
    epoch: int
    elapsed_s: float
    stopped_early: bool
    last_losses: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None


class Trainer:
    """Runs a :class:`TrainTask` over a :class:`BatchSource` into ``out_dir``.

    ``out_dir`` receives ``checkpoints/``, ``samples/``, ``log.csv`` and
    ``val.csv``. ``resume=True`` continues from ``checkpoints/latest.pt`` when it
    exists (else starts fresh). The caller seeds and builds the task's models
    before constructing the trainer (weight init is the caller's randomness).
    """

    def __init__(self, task: TrainTask, data: BatchSource, out_dir: str | Path, settings: TrainerSettings,
                 ctx: DistributedContext | None = None, resume: bool = False):
        self.task, self.data, self.settings = task, data, settings
        self.ctx = ctx or DistributedContext()
        self.out = Path(out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.sample_dir = self.out / "samples"
        self.order = DataOrder(len(data), settings.batch_size, settings.seed, self.ctx.rank, self.ctx.world_size)
        self.step = 0
        self.elapsed = 0.0
        self.window = LossWindow()
        self._stop_signal: int | None = None
        self.resumed_from: str | None = None
        if self.ctx.is_main:
            try:
                for folder in (self.out, self.ckpt_dir, self.sample_dir):
                    folder.mkdir(parents=True, exist_ok=True)
                probe = self.out / ".write-test"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                raise TrainingError(f"cannot write to the output folder {self.out}: {exc}") from exc
            remove_stale_temporaries(self.ckpt_dir)
            remove_stale_temporaries(self.out)
        self.ctx.barrier()
        if resume and (self.ckpt_dir / "latest.pt").is_file():
            self._restore(load_checkpoint(self.ckpt_dir / "latest.pt"))
        elif self.ctx.is_main:
            # A fresh start owns the logs: earlier rows would describe another run.
            for name in ("log.csv", "val.csv"):
                (self.out / name).unlink(missing_ok=True)
        task.distribute(self.ctx)

    # -- checkpoints
    def checkpoint_state(self) -> dict:
        state = {"format": FORMAT, "kind": self.task.kind, "config": self.task.config(),
                 "trainer": self.settings.to_dict(), "step": self.step, "epoch": self.order.epoch,
                 "elapsed_s": self.elapsed, "world_size": self.ctx.world_size, "rng": rng_state(),
                 "data_order": self.order.state_dict(),
                 "log_window": self.window.state_dict()}
        state.update(self.task.state_dict())
        return state

    def save(self) -> Path | None:
        path = None
        if self.ctx.is_main:
            state = self.checkpoint_state()
            if _every(self.step, self.settings.keep_every):
                atomic_save(state, self.ckpt_dir / f"step_{self.step:07d}.pt")
            path = atomic_save(state, self.ckpt_dir / "latest.pt")
        self.ctx.barrier()
        return path

    def _restore(self, state: dict) -> None:
        self.task.check_resume(state)
        self.task.load_state_dict(state)
        self.order.load_state_dict(state["data_order"])
        if int(state["data_order"]["global_batch"]) != self.settings.batch_size * self.ctx.world_size:
            raise CheckpointError(
                f"{state['path']}: trained with a global batch of {int(state['data_order']['global_batch'])}, "
                f"resuming with {self.settings.batch_size} x {self.ctx.world_size}; keep the batch size")
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
        self.window.load_state_dict(state.get("log_window", {}))
        if self.ctx.is_main:
            set_rng_state(state["rng"])
        else:
            torch.manual_seed(self.settings.seed + 1_000_003 * self.ctx.rank + self.step)
            np.random.seed((self.settings.seed + 7919 * self.ctx.rank + self.step) % 2 ** 32)
        if self.ctx.is_main:
            for name in ("log.csv", "val.csv"):
                truncate_csv(self.out / name, self.step)
        self.resumed_from = state["path"]

    # -- logging
    def _log_row(self) -> dict[str, float]:
        means = reduce_means(self.window.take_means(), self.ctx)
        if self.ctx.is_main:
            row = {"step": self.step, "epoch": self.order.epoch, "time_s": round(self.elapsed, 3), **means}
            append_csv(self.out / "log.csv", row)
        return means

    def _sample(self) -> None:
        if not self.ctx.is_main:
            return
        with side_rng(self.ctx.device):
            images = self.task.sample(self.step)
        if images is not None:
            save_grid(images, self.sample_dir / f"step_{self.step:07d}.png", self.task.sample_columns)

    def _validate(self) -> None:
        if not self.ctx.is_main:
            return
        with side_rng(self.ctx.device):
            metrics = self.task.validate(self.step)
        if metrics:
            append_csv(self.out / "val.csv", {"step": self.step, "time_s": round(self.elapsed, 3), **metrics})

    # -- loop
    def _on_signal(self, signum: int) -> None:
        """SIGINT/SIGTERM finish the current step, save, and stop."""
        self._stop_signal = signum

    def fit(self) -> TrainResult:
        s = self.settings
        last: dict[str, float] = {}
        stopped = False
        self.task.train(True)
        bar = tqdm(total=s.steps, initial=min(self.step, s.steps), desc=f"train {self.task.kind}", unit="step",
                   disable=not (s.progress and self.ctx.is_main), dynamic_ncols=True)
        with stop_signals(self._on_signal), bar:
            while self.step < s.steps:
                indices = self.order.next_indices()
                batch = self.data.get_batch(indices)
                t0 = time.perf_counter()
                losses = self.task.step(batch, self.step)
                self.step += 1
                self.elapsed += time.perf_counter() - t0
                for name, value in losses.items():
                    value = float(value)
                    if not math.isfinite(value):
                        raise TrainingError(f"loss {name} is {value} at step {self.step}; training diverged "
                                            f"(last checkpoint: {self.ckpt_dir / 'latest.pt'})")
                    self.window.add(name, value)
                bar.update(1)
                final = self.step == s.steps
                stop = (s.time_limit_s is not None and self.elapsed >= s.time_limit_s) \
                    or self._stop_signal is not None
                if self.ctx.enabled:
                    # Every process must stop at the same step, whoever saw the signal or the clock.
                    device = self.ctx.device if self.ctx.backend == "nccl" else "cpu"
                    flag = torch.tensor([float(stop)], device=device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    stop = bool(flag.item())
                if _every(self.step, s.log_every) or final or stop:
                    last = self._log_row()
                    bar.set_postfix(bar_postfix(last), refresh=False)
                if _every(self.step, s.sample_every) or final or stop:
                    self._sample()
                if _every(self.step, s.validate_every) or final or stop:
                    self._validate()
                if _every(self.step, s.save_every) or _every(self.step, s.keep_every) or final or stop:
                    self.save()
                if stop and not final:
                    stopped = True
                    break
        ckpt = self.ckpt_dir / "latest.pt"
        return TrainResult(self.step, self.order.epoch, self.elapsed, stopped, last,
                           ckpt if ckpt.is_file() else None)


