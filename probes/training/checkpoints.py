"""Self-describing, atomically written training checkpoints.

A checkpoint is a plain dict that ``torch.load(path, weights_only=True)``
reads: only tensors, dicts, lists, strings and numbers. It carries
``format``, ``kind`` (what trained it, e.g. ``"face-decoder"``), ``config``
(everything needed to rebuild the models), ``models`` / ``optimizers`` state
dicts, ``step``, ``epoch``, the RNG states of torch (CPU and CUDA), numpy and
Python, the data-order state and the accumulated training time.

Writes go to a temporary file in the same folder, are fsynced, then
``os.replace``-d onto the target: a reader (or a ``kill -9``) sees the old
file or the new one, never half of one.
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import FaceprobeError
from ..outputs import atomic_write_bytes

FORMAT = "faceprobe-checkpoint-1"
TMP_PREFIX = ".tmp-"


class CheckpointError(FaceprobeError):
    """A checkpoint is missing, corrupt, not ours, or does not fit what loads it."""


def atomic_save(obj: dict, path: str | Path) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (temp file beside it, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, lambda handle: torch.save(obj, handle))
    return path


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary files an interrupted save left in ``folder``; return them."""
    folder = Path(folder)
    stale = sorted(folder.glob(TMP_PREFIX + "*")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a faceprobe checkpoint with ``weights_only=True``; a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        path = latest_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, Exception) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated?): "
                              f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a faceprobe training checkpoint (format {found!r}, "
                              f"expected {FORMAT!r})")
    state["path"] = str(path)
    return state


def latest_checkpoint(run_dir: str | Path) -> Path:
    """``RUN/checkpoints/latest.pt`` (or ``RUN/latest.pt`` when given the checkpoint folder)."""
    run_dir = Path(run_dir)
    for candidate in (run_dir / "checkpoints" / "latest.pt", run_dir / "latest.pt"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"no checkpoint in {run_dir} (looked for checkpoints/latest.pt and latest.pt)")


# --------------------------------------------------------------------------- RNG states


def rng_state() -> dict:
    """The RNG states of torch (CPU, CUDA), numpy's global RNG and Python's ``random``,
    as tensors, lists and numbers only (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": list(internal), "gauss_next": gauss_next},
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    if state.get("cuda") and torch.cuda.is_available():
        cuda = [s.cpu().to(torch.uint8) for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np.asarray(np_state["keys"].numpy(), np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"]), py["gauss_next"]))


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy's global RNG and Python's ``random``."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- decoders


