"""Batches for the trainer: a source of indexed batches and a seeded, checkpointable data order."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from ..errors import TrainingError
from .checkpoints import CheckpointError


class BatchSource(Protocol):
    """What the trainer iterates: ``len(source)`` items, ``source.get_batch(indices)`` -> a batch."""

    def __len__(self) -> int: ...

    def get_batch(self, indices: np.ndarray) -> Any: ...


class ArrayData:
    """A :class:`BatchSource` over equally long arrays/tensors: ``get_batch`` -> {name: tensor}.

    numpy arrays (memory maps included) are indexed first, so only the batch is
    copied; ``uint8`` images stay uint8 (the task converts them on its device).
    """

    def __init__(self, **arrays):
        if not arrays:
            raise TrainingError("ArrayData needs at least one array")
        lengths = {name: len(a) for name, a in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise TrainingError(f"arrays differ in length: {lengths}")
        self.arrays = arrays
        self.n = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self.n

    def get_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        out = {}
        for name, array in self.arrays.items():
            if isinstance(array, torch.Tensor):
                out[name] = array[torch.as_tensor(indices, dtype=torch.long)]
            else:
                out[name] = torch.from_numpy(np.ascontiguousarray(array[np.asarray(indices)]))
        return out


class DataOrder:
    """Seeded epoch permutations, sharded over processes; its state goes into checkpoints."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if batch_size <= 0:
            raise TrainingError(f"batch_size must be positive, got {batch_size}")
        if n < batch_size * world_size:
            raise TrainingError(f"the training data has {n} items, fewer than one batch "
                                f"({batch_size} x {world_size} process(es)); use a smaller batch size")
        self.n, self.batch_size, self.rank, self.world_size = n, batch_size, rank, world_size
        self.generator = torch.Generator().manual_seed(int(seed))
        self.epoch = 0
        self.position = 0
        self.permutation = torch.randperm(n, generator=self.generator)

    def next_indices(self) -> np.ndarray:
        """This rank's indices for the next step."""
        global_batch = self.batch_size * self.world_size
        if self.position + global_batch > self.n:
            self.epoch += 1
            self.position = 0
            self.permutation = torch.randperm(self.n, generator=self.generator)
        chunk = self.permutation[self.position:self.position + global_batch]
        self.position += global_batch
        return chunk[self.rank::self.world_size].numpy().copy()

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "epoch": self.epoch, "position": self.position,
                "permutation": self.permutation.clone(), "n": self.n,
                "global_batch": self.batch_size * self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if int(state["n"]) != self.n:
            raise CheckpointError(f"checkpoint was trained on {int(state['n'])} items, this data has {self.n}")
        self.generator.set_state(state["generator"].to(torch.uint8))
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.permutation = state["permutation"].to(torch.long).clone()
