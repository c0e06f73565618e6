"""What the :class:`~probes.training.trainer.Trainer` trains: a :class:`TrainTask` owns the models and
optimisers and does one optimisation step per call of ``step(batch, step)``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .checkpoints import CheckpointError
from .distributed import DistributedContext


class TrainTask:
    """Base class of what the :class:`Trainer` trains.

    Subclasses fill ``self.models`` and ``self.optimizers`` (dicts by name;
    ``self.schedulers`` optional) and implement :meth:`step`. Inside ``step``
    use ``self.net(name)``: the DDP-wrapped model in a distributed run, the
    model itself otherwise.
    """

    kind = "task"

    def __init__(self):
        self.models: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self._wrapped: dict[str, nn.Module] = {}

    # -- required
    def step(self, batch, step: int) -> dict[str, float]:
        """One optimisation step on ``batch`` (``step`` = number of steps done before it).
        Returns scalar losses/metrics to log."""
        raise NotImplementedError

    def config(self) -> dict:
        """Everything needed to rebuild the task (JSON-able); saved in checkpoints."""
        return {}

    # -- optional
    def sample(self, step: int) -> torch.Tensor | None:
        """Images for a sample grid (N x 3 x H x W in [0, 1]) or None."""
        return None

    sample_columns: int = 8

    def validate(self, step: int) -> dict[str, float] | None:
        return None

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def check_resume(self, checkpoint: dict) -> None:
        """Raise :class:`CheckpointError` when ``checkpoint`` cannot continue this task."""
        if checkpoint.get("kind") != self.kind:
            raise CheckpointError(f"{checkpoint.get('path')} is a {checkpoint.get('kind')!r} checkpoint, "
                                  f"this is a {self.kind!r} task")

    # -- provided
    def net(self, name: str) -> nn.Module:
        return self._wrapped.get(name, self.models[name])

    def distribute(self, ctx: DistributedContext) -> None:
        """Wrap every model with trainable parameters in DistributedDataParallel."""
        if not ctx.enabled:
            return
        from torch.nn.parallel import DistributedDataParallel

        for name, model in self.models.items():
            if any(p.requires_grad for p in model.parameters()):
                ids = [ctx.local_rank] if str(ctx.device).startswith("cuda") else None
                self._wrapped[name] = DistributedDataParallel(model, device_ids=ids)

    def train(self, mode: bool = True) -> None:
        for model in self.models.values():
            model.train(mode)

    def state_dict(self) -> dict:
        return {"models": {k: m.state_dict() for k, m in self.models.items()},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "extra": self.extra_state()}

    def load_state_dict(self, state: dict) -> None:
        for group in ("models", "optimizers", "schedulers"):
            mine, theirs = getattr(self, group), state.get(group, {})
            if set(mine) != set(theirs):
                raise CheckpointError(f"checkpoint {group} {sorted(theirs)} do not match the task's {sorted(mine)}")
            for name, obj in mine.items():
                try:
                    obj.load_state_dict(theirs[name])
                except (RuntimeError, ValueError, KeyError) as exc:
                    raise CheckpointError(f"checkpoint {group[:-1]} {name!r} does not fit: {exc}") from exc
        self.load_extra_state(state.get("extra", {}))
