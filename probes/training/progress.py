"""The training loop's bookkeeping between checkpoints: the window of losses averaged into each ``log.csv``
row (averaged over processes too), the progress bar's summary of them, the side random stream for samples
and validation, and the signals that stop a run cleanly."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from .distributed import DistributedContext

BAR_TERMS = 4  # losses shown beside the progress bar


class LossWindow:
    """Running sums of each logged value since the last ``log.csv`` row (checkpointed, so a resumed run
    writes the same rows as one that never stopped)."""

    def __init__(self):
        self.sums: dict[str, list[float]] = {}

    def add(self, name: str, value: float) -> None:
        acc = self.sums.setdefault(name, [0.0, 0.0])
        acc[0] += value
        acc[1] += 1

    def take_means(self) -> dict[str, float]:
        """Each value's mean over the window (by name), and a fresh window."""
        means = {k: s / max(c, 1) for k, (s, c) in sorted(self.sums.items())}
        self.sums = {}
        return means

    def state_dict(self) -> dict[str, list[float]]:
        return {k: [float(v[0]), float(v[1])] for k, v in self.sums.items()}

    def load_state_dict(self, state: dict) -> None:
        self.sums = {k: [float(v[0]), float(v[1])] for k, v in state.items()}


def reduce_means(values: dict[str, float], ctx: DistributedContext) -> dict[str, float]:
    """``values`` averaged over the processes of a distributed run (unchanged in a single process)."""
    if not ctx.enabled or not values:
        return values
    keys = sorted(values)
    device = ctx.device if ctx.backend == "nccl" else "cpu"
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.cpu().tolist())}


def bar_postfix(means: dict[str, float], terms: int = BAR_TERMS) -> dict[str, str]:
    """What the progress bar shows of a log row: the total ``loss`` first, then the other losses (a GAN's
    ``d_loss``, ``g_loss``), then the rest, ``terms`` values in all."""
    def rank(name: str) -> int:
        return 0 if name == "loss" else 1 if name.endswith("loss") else 2

    names = sorted(means, key=lambda n: (rank(n), list(means).index(n)))[:terms]
    return {name: f"{means[name]:.4g}" for name in names}


def side_rng(device):
    """A fork of the random state (this process's CUDA device's too) for samples and validation, so
    neither moves the training's random stream."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and "cuda" in str(device) else []
    return torch.random.fork_rng(devices=devices)


@contextmanager
def stop_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Within, SIGINT/SIGTERM call ``handler(signum)`` instead of stopping the process (main thread only;
    elsewhere nothing changes)."""
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: handler(signum))
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
