"""A training run's folder: which files make it a run, its CSV logs and its sample grids."""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import TrainingError
from ..outputs import atomic_write_bytes


@dataclass(frozen=True)
class RunFolder:
    """A training command's ``--out``: which files and folders make it hold a run."""

    path: Path
    files: tuple[str, ...]
    dirs: tuple[str, ...] = ("checkpoints", "samples")

    def has_results(self) -> bool:
        out = self.path
        return out.is_dir() and (any((out / f).exists() for f in self.files)
                                 or any((out / d).is_dir() and any((out / d).iterdir()) for d in self.dirs))

    def check(self, resume: bool, overwrite: bool) -> None:
        """Refuse a run folder that holds results (unless resuming or overwriting) or cannot be written."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise TrainingError(f"--out {out} exists and is not a folder")
        if self.has_results() and not (resume or overwrite):
            raise TrainingError(f"--out {out} already holds a run; pass --resume to continue it or --overwrite "
                                "to replace it")
        probe = out if out.exists() else next((p for p in out.absolute().parents if p.exists()), None)
        if probe is not None and not probe.is_dir():
            raise TrainingError(f"--out {out} is not writable: {probe} is a file, not a folder")
        if probe is None or not os.access(probe, os.W_OK | os.X_OK):
            raise TrainingError(f"--out {out} is not writable ({probe} does not allow creating files)")

    def clear(self) -> None:
        """Delete the run's files and folders (``--overwrite``); anything else in the folder stays."""
        for name in self.files:
            (self.path / name).unlink(missing_ok=True)
        for name in self.dirs:
            if (self.path / name).is_dir():
                shutil.rmtree(self.path / name)


def append_csv(path: Path, row: dict) -> None:
    """Append one row; the header is fixed by the file's first row (later new keys are dropped)."""
    exists = path.is_file() and path.stat().st_size > 0
    if exists:
        with open(path, newline="") as handle:
            header = next(csv.reader(handle), None) or list(row)
    else:
        header = list(row)
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore", restval="")
        if not exists:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        handle.flush()
        os.fsync(handle.fileno())


def truncate_csv(path: Path, step: int) -> None:
    """Keep the header and the rows with ``step`` <= the checkpoint's (atomic rewrite)."""
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    col = header.index("step") if "step" in header else 0
    keep = []
    for row in body:
        try:
            if row and int(float(row[col])) <= step:
                keep.append(row)
        except (ValueError, IndexError):
            pass  # a line cut short by a kill
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header] + keep)
    atomic_write_bytes(path, lambda h: h.write(buffer.getvalue().encode()))


def read_log(path: str | Path):
    """A run's ``log.csv`` (or ``val.csv``) as a pandas DataFrame."""
    import pandas as pd

    return pd.read_csv(path)


def save_grid(images: torch.Tensor, path: str | Path, columns: int = 8, pad: int = 2) -> Path:
    """Save N x 3 x H x W images in [0, 1] as one PNG grid (atomically); returns the path."""
    from PIL import Image

    x = images.detach().float().clamp(0, 1).cpu()
    if x.ndim != 4 or x.shape[1] != 3:
        raise TrainingError(f"sample images must be N x 3 x H x W, got {tuple(x.shape)}")
    n, _, h, w = x.shape
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    grid = torch.ones(3, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = x[i]
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, lambda h: Image.fromarray(array).save(h, format="PNG"))
    return path
