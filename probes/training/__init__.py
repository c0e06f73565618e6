"""Training on the CPU or a GPU: the generic resumable, optionally distributed :class:`Trainer`.

A :class:`TrainTask` owns models and optimisers and does one step per call; the :class:`Trainer`
does everything around it (data order, logs, samples, atomic checkpoints, exact resume, ``torchrun``).
The Deep Face Decoder, the aging GANs and :mod:`probes.training.identity` all train on it.
"""

from ..errors import TrainingError
from .checkpoints import CheckpointError, load_checkpoint, seed_everything
from .data import ArrayData, BatchSource, DataOrder
from .distributed import DistributedContext, init_distributed, shutdown_distributed
from .runs import RunFolder, read_log, save_grid
from .trainer import Trainer, TrainerSettings, TrainResult, TrainTask, warmup_cosine

__all__ = ["ArrayData", "BatchSource", "CheckpointError", "DataOrder", "DistributedContext", "RunFolder",
           "TrainResult", "TrainTask", "Trainer", "TrainerSettings", "TrainingError", "init_distributed",
           "load_checkpoint", "read_log", "save_grid", "seed_everything", "shutdown_distributed", "warmup_cosine"]
