"""Weights trained by the project and shipped inside the package, resolved by name.

A :class:`ShippedRegistry` is a folder holding ``registry.json`` (one entry per
name: file, sha256, what made it) beside the weight files. Files are fp16
safetensors (:func:`save_fp16_safetensors`): tensors only, no pickled code,
with the model's config as JSON in the file's metadata. Every load checks the
sha256 pinned in the registry, so a changed or truncated file is refused
before it is read.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from .errors import FaceprobeError, WeightFileError, lookup
from .outputs import atomic_write_bytes
from .weights import sha256_of as file_sha256

MAX_SHIPPED_BYTES = 8 * 1024 * 1024  # the repository's limit per weight file
METADATA_KEY = "faceprobe"
DEFAULT_MACHINE = "cpu (2 cores, shared with other work)"


def save_fp16_safetensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping,
                          max_bytes: int | None = MAX_SHIPPED_BYTES) -> str:
    """Write ``tensors`` (floating ones as fp16) and JSON ``metadata`` atomically; return the file's sha256.

    Raises :class:`WeightFileError` (before anything is written) when the file would exceed ``max_bytes``.
    """
    half = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
            for k, v in tensors.items()}
    blob = save(half, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    if max_bytes is not None and len(blob) > max_bytes:
        raise WeightFileError(f"{path}: {len(blob) / 2**20:.1f} MiB of fp16 weights exceed the "
                              f"{max_bytes / 2**20:.0f} MiB limit for a shipped file")
    atomic_write_bytes(Path(path), lambda handle: handle.write(blob))
    return file_sha256(path)


def load_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(float32 tensors, the JSON metadata) of a file written by :func:`save_fp16_safetensors`."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"weight file {path} does not exist")
    try:
        data = path.read_bytes()
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        metadata = json.loads((header.get("__metadata__") or {}).get(METADATA_KEY, "{}"))
    except (SafetensorError, ValueError, OSError) as exc:
        raise WeightFileError(f"{path} is not a readable safetensors file: {exc}") from exc
    return {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}, metadata


@dataclass(frozen=True)
class ShippedWeights:
    """One named weight file of a :class:`ShippedRegistry` and the record of what made it."""

    name: str
    kind: str  # what loads it (e.g. "ipcgan")
    file: str  # relative to the registry's folder
    sha256: str
    description: str
    trained_on: str  # data, with the split that was held out
    command: str  # the command that trained it (and the one that exported it)
    training: dict = field(default_factory=dict)  # steps, minutes, date, machine
    licence: str = ""
    extra: dict = field(default_factory=dict)  # e.g. the held-out faces' list file

    def to_dict(self) -> dict:
        return asdict(self)


class ShippedRegistry:
    """The named weights in ``folder`` (its ``registry.json``), of one ``what`` ("aging generator")."""

    def __init__(self, folder: str | Path, what: str):
        self.folder, self.what = Path(folder), what

    @property
    def index(self) -> Path:
        return self.folder / "registry.json"

    def entries(self) -> dict[str, ShippedWeights]:
        if not self.index.is_file():
            return {}
        try:
            raw = json.loads(self.index.read_text())
            return {name: ShippedWeights(**entry) for name, entry in raw.items()}
        except (ValueError, TypeError) as exc:
            raise WeightFileError(f"{self.index} is not a valid registry of shipped weights: {exc}") from exc

    def names(self) -> list[str]:
        return sorted(self.entries())

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self.entries()

    def get(self, name: str) -> ShippedWeights:
        return lookup(self.entries(), name, self.what, known="shipped")

    def path(self, name: str) -> Path:
        """The file of ``name``, after checking its sha256 against the registry."""
        entry = self.get(name)
        path = self.folder / entry.file
        if not path.is_file():
            raise WeightFileError(f"shipped {self.what} {name!r}: its file {path} is missing")
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise WeightFileError(f"shipped {self.what} {name!r}: {path} has sha256 {actual}, "
                                  f"the registry pins {entry.sha256}")
        return path

    def add(self, entry: ShippedWeights) -> None:
        """Record ``entry`` (replacing one of the same name) in ``registry.json``."""
        entries = {name: e.to_dict() for name, e in self.entries().items()}
        entries[entry.name] = entry.to_dict()
        text = json.dumps(entries, indent=2, sort_keys=True) + "\n"
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.index, lambda handle: handle.write(text.encode()))


# --------------------------------------------------------------------------- what a ship command records


def finished_run(run: str | Path, trainer: str) -> tuple[dict, dict]:
    """(``config.json``, ``summary.json``) of a finished training run of ``trainer`` (e.g.
    ``python -m decoders.train``) in ``run``; a :class:`FaceprobeError` naming what is missing."""
    run = Path(run)
    records = []
    for needed in ("config.json", "summary.json"):
        if not (run / needed).is_file():
            raise FaceprobeError(f"{run} is not a finished run of {trainer} (no {needed})")
        try:
            records.append(json.loads((run / needed).read_text()))
        except (OSError, ValueError) as exc:
            raise FaceprobeError(f"{run / needed} is not readable JSON: {exc}") from exc
    return records[0], records[1]


LOCAL_FLAGS = ("--data-root", "--cache-dir")  # where this machine keeps the data and caches: not part of a recipe


def training_record(config: Mapping, summary: Mapping, nbytes: int,
                    machine: str = DEFAULT_MACHINE) -> tuple[str, dict]:
    """(the command that trained a run, as ``python -m ...`` without :data:`LOCAL_FLAGS` and their values;
    the registry's ``training`` record: steps, minutes, export date, machine, file size) from the run's
    ``config.json`` and ``summary.json``."""
    argv, kept = list(config.get("command") or ["?"])[1:], []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in LOCAL_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in LOCAL_FLAGS)):
            kept.append(arg)
    command = shlex.join(["python", *kept])
    return command, {"steps": summary["step"], "minutes": round(summary["train_time_s"] / 60, 1),
                     "exported": dt.date.today().isoformat(), "device": machine, "bytes": nbytes}
