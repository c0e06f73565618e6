"""What the decoder and aging-GAN trainings share around :class:`~probes.training.Trainer`.

A run's settings are read back from its folder when it is resumed, a resume may not change the
settings that define the run, and the common settings (steps, batch size, how often to save, log,
sample and validate, a time limit) become the Trainer's :class:`~probes.training.TrainerSettings`.
Messages name the settings as the training commands spell them (``--batch-size``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Container, Mapping
from dataclasses import dataclass
from pathlib import Path

from probes.cli import flag_name, module_command
from probes.errors import TrainingError
from probes.training.checkpoints import CheckpointError, load_checkpoint
from probes.training.runs import read_log
from probes.training.trainer import TrainerSettings


@dataclass(frozen=True)
class RunInputs:
    """Where a training run's faces come from, where its caches go, and whether it shows progress."""

    data_root: str | Path | None = None  # default $FACEPROBE_DATA
    cache_dir: str | Path | None | bool = None
    progress: bool = True


def saved_run_config(out: Path, kind: str, what: str) -> dict | None:
    """The configuration an earlier run saved in ``out``: its latest checkpoint's, else its ``config.json``.

    None when neither exists; a checkpoint of another ``kind`` is refused (``what`` names the run
    expected, e.g. "a decoder run").
    """
    latest = out / "checkpoints" / "latest.pt"
    if latest.is_file():
        checkpoint = load_checkpoint(latest)
        if checkpoint.get("kind") != kind:
            raise CheckpointError(f"{latest} is a {checkpoint.get('kind')!r} checkpoint, not {what}")
        return checkpoint["config"]
    if (out / "config.json").is_file():
        return json.loads((out / "config.json").read_text())
    return None


def changed_settings(given: Mapping, saved: Mapping, fixed: Container[str]) -> list[str]:
    """The ``fixed`` settings in ``given`` whose value differs from the ``saved`` run's, as messages."""
    return [f"{flag_name(k)} {v!r} (run: {saved[k]!r})" for k, v in given.items()
            if k in fixed and k in saved and saved[k] != v]


def refuse_changes(changes: list[str]) -> None:
    if changes:
        raise TrainingError("--resume cannot change settings that define the run: " + "; ".join(changes))


def check_positive_int(name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, int) or value < minimum:
        raise TrainingError(f"{flag_name(name)} must be a positive integer, got {value!r}")


def check_max_images(value: int | None) -> None:
    if value is not None and value <= 0:
        raise TrainingError(f"--max-images must be positive, got {value}")


def check_time_limit(value: float | None) -> None:
    if value is not None and value <= 0:
        raise TrainingError(f"--time-limit-min must be positive, got {value}")


def trainer_settings(config, progress: bool) -> TrainerSettings:
    """The Trainer's settings from a training config's steps, batch size, seed, intervals and time limit."""
    return TrainerSettings(steps=config.steps, batch_size=config.batch_size, seed=config.seed,
                           save_every=config.save_every, keep_every=config.keep_every,
                           log_every=config.log_every, sample_every=config.sample_every,
                           validate_every=config.validate_every,
                           time_limit_s=config.time_limit_min * 60 if config.time_limit_min else None,
                           progress=progress)


def last_validation(out: Path) -> dict[str, float] | None:
    """The last row of the run's ``val.csv`` (None when it has none)."""
    val_csv = out / "val.csv"
    if not val_csv.is_file():
        return None
    table = read_log(val_csv)
    return {k: float(v) for k, v in table.iloc[-1].to_dict().items()} if len(table) else None


def data_root_record(data_root: str | Path | None) -> str:
    """The data folder as a run records it (``$FACEPROBE_DATA`` when none was given)."""
    return str(data_root or os.environ.get("FACEPROBE_DATA", ""))


def command_record(module: str) -> list[str]:
    """The command line a run records: ``python -m module`` and this process's arguments."""
    return module_command(module)
