"""What the decoder's use starts from: a trained decoder, its backbone, and the run's images or templates.

A decoder run (``python -m decoders.train``) records its backbone (name, weights hash) and the split of
its images (``split.json``); :func:`load_trained_decoder`, :func:`rebuild_backbone` and
:func:`split_dataset` bring them back, checked to be what the run used.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from probes.backbones import create_backbone
from probes.cli import setting_error
from probes.datasets import FaceDataset, load_lfw_people, load_utkface
from probes.errors import DatasetError, FaceprobeError, preview
from probes.training.checkpoints import CheckpointError, seed_everything

from .checkpoint import load_decoder
from .model import DecoderConfig, FaceDecoder, TemplateError
from .settings import ReconstructionError
from .shipped import decoder_state, run_of
from .templates import weights_key

RUN_PARTS = ("lfw", "utkface")

# --------------------------------------------------------------------------- checkpoint and backbone


def run_folder(config: dict) -> Path:
    """The run folder of a checkpoint loaded by :func:`load_decoder` (``RUN/checkpoints/x.pt`` -> ``RUN``; a
    shipped decoder's: the registry folder, which holds its split file)."""
    return run_of(config["checkpoint"])


def load_trained_decoder(checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[FaceDecoder, dict]:
    """:func:`decoders.dfd.checkpoint.load_decoder`, also reading checkpoints saved before the decoder had
    its ``center``/``spread`` normalisation buffers (they are then the identity: zeros and ones)."""
    try:
        return load_decoder(checkpoint, device)
    except CheckpointError as exc:
        if "center" not in str(exc) and "spread" not in str(exc):
            raise
        first = exc
    state = decoder_state(checkpoint)
    config = state["config"]
    weights = dict(state["models"]["decoder"])
    try:
        decoder = FaceDecoder(DecoderConfig.from_dict(config["decoder"]))
    except (KeyError, FaceprobeError):
        raise first from None
    if decoder.config.standardise or not {"center", "spread"}.isdisjoint(weights):
        raise first
    weights["center"], weights["spread"] = decoder.center.clone(), decoder.spread.clone()
    try:
        decoder.load_state_dict(weights)
    except RuntimeError:
        raise first from None
    config = dict(config, step=state["step"], checkpoint=state["path"])
    return decoder.to(device).eval(), config


def check_backbone_name(config: dict, name: str | None = None) -> str:
    """The checkpoint's backbone name; a :class:`CheckpointError` when it is not ``name`` (if given)."""
    trained = (config.get("backbone") or {}).get("name")
    where = config.get("checkpoint", "the checkpoint")
    if not trained:
        raise CheckpointError(f"{where} does not record its backbone (config['backbone']['name'])")
    if name is not None and name != trained:
        raise setting_error(CheckpointError, "{where} decodes templates of backbone {trained!r}, not {name!r} "
                            "(asked with {backbone}); use a checkpoint trained against {name!r}",
                            where=where, trained=trained, name=name)
    return trained


def rebuild_backbone(config: dict, name: str | None = None, weights: str | Path | None = None,
                     device: str | torch.device = "cpu"):
    """The backbone a decoder checkpoint was trained against, checked to be the same network.

    ``name`` (optional) is what the caller expects; a checkpoint of another
    backbone raises :class:`CheckpointError`. Random-init backbones (tests)
    are rebuilt from the run's seed; either way the weights must hash to the
    checkpoint's ``weights_key``.
    """
    info = config.get("backbone") or {}
    trained = check_backbone_name(config, name)
    where = config.get("checkpoint", "the checkpoint")
    cli = config.get("cli") or {}
    if cli.get("random_backbone"):
        # The training command seeded everything right before building the random net.
        seed_everything(int(cli.get("seed", 0)))
        backbone = create_backbone(trained, device="cpu", pretrained=False)
    else:
        backbone = create_backbone(trained, weights if weights is not None else info.get("weights_file"),
                                   device="cpu")
    key = weights_key(backbone)
    expected = info.get("weights_key")
    if expected and key != expected:
        raise setting_error(CheckpointError, "{where} was trained against {trained!r} weights {expected}..., but "
                            "the weights loaded now are {key}...; pass the training weights with {weights}",
                            where=where, trained=trained, expected=expected[:16], key=key[:16])
    return backbone.to(device).requires_grad_(False).eval()


# --------------------------------------------------------------------------- templates


def check_templates(templates, embedding_size: int, source: str) -> np.ndarray:
    """``templates`` as an N x d float32 array, or a :class:`TemplateError` naming ``source``."""
    array = np.asarray(templates)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TemplateError(f"{source}: templates must be a numeric N x {embedding_size} array, got "
                            f"{array.dtype} of shape {array.shape}")
    if array.shape[1] != embedding_size:
        raise TemplateError(f"{source}: templates have dimension {array.shape[1]}, but the checkpoint decodes "
                            f"{embedding_size}-D templates")
    if len(array) == 0:
        raise TemplateError(f"{source}: no templates (0 rows)")
    array = array.astype(np.float32)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise TemplateError(f"{source}: {len(rows)} template(s) contain NaN or infinite values (rows "
                            f"{preview(rows, 10)})")
    return array


def load_templates_file(path: str | Path, embedding_size: int) -> np.ndarray:
    """Read an ``.npy`` file of N x d templates (no pickles) and check it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TemplateError(f"templates file {path} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise TemplateError(f"{path} is not a readable .npy array of templates: {exc}") from exc
    if not isinstance(array, np.ndarray):
        raise TemplateError(f"{path} holds several arrays (.npz?); save one N x d array with numpy.save")
    return check_templates(array, embedding_size, str(path))


# --------------------------------------------------------------------------- the run's images


def rebase_paths(paths: Sequence[str], recorded_root: str | None, data_root: str | Path | None) -> list[Path]:
    """Each recorded path as it is when it exists; else moved from the run's data root under ``data_root``,
    or, if relative and not under the recorded root (a shipped decoder's split), taken under ``data_root``."""
    out = []
    for p in map(Path, paths):
        if p.exists() or data_root is None:  # where the run found it (a run given a relative --data-root too)
            pass
        elif recorded_root and _is_under(p, recorded_root):
            with contextlib.suppress(ValueError):
                p = Path(data_root) / p.relative_to(recorded_root)
        elif not p.is_absolute():  # a shipped decoder's split: relative to the data
            p = Path(data_root) / p
        out.append(p)
    return out


def _is_under(path: Path, root: str) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def read_split_file(config: dict) -> tuple[Path, dict]:
    """The run's split file and its ``parts`` (data set -> its train/val/test images)."""
    split_file = run_folder(config) / (config.get("data") or {}).get("split_file", "split.json")
    if not split_file.is_file():
        raise DatasetError(f"{split_file} does not exist: the held-out images of a run come from the split file "
                           "its training wrote into the run folder (pass the run folder, or a checkpoint inside it)")
    try:
        return split_file, json.loads(split_file.read_text())["parts"]
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"{split_file} is not a readable split file: {exc}") from exc


def split_dataset(config: dict, part: str, split: str = "test", data_root: str | Path | None = None) -> FaceDataset:
    """The ``split`` (``test``/``val``) images of data set ``part`` (``lfw``/``utkface``) of a run.

    Read from the run's ``split.json``; LFW images carry identity = folder
    name. Paths are moved under ``data_root`` when the recorded ones are gone.
    """
    split_file, parts = read_split_file(config)
    if part not in parts:
        raise DatasetError(f"the run in {run_folder(config)} did not use {part!r} (its data: "
                           f"{', '.join(parts) or 'none'})")
    entry = parts[part]
    if split not in ("test", "val"):
        raise setting_error(ReconstructionError, "{split} must be 'test' or 'val' for a run's held-out images, "
                            "got {got!r}", got=split)
    paths = entry.get(split, {}).get("paths") or []
    if not paths:
        raise DatasetError(f"{split_file}: the {split} split of {part!r} has no images")
    root = data_root if data_root is not None else os.environ.get("FACEPROBE_DATA")
    rebased = rebase_paths(paths, (config.get("data") or {}).get("data_root"), root)
    missing = [str(p) for p in rebased if not p.is_file()]
    if missing:
        raise setting_error(DatasetError, "{count} {which} image(s) of {split_file} are missing, e.g. {first}; "
                            "pass {data_root} <folder holding lfw_home/ and utkface/> if the data moved",
                            count=len(missing), which=split, split_file=split_file, first=missing[0])
    labels = {"identity": [p.parent.name for p in rebased]} if part == "lfw" else None
    return FaceDataset(f"{part}-{split}", rebased, labels, layout=entry.get("layout", part),
                       label_source={"identity": "LFW folder name"} if labels else None)


def heldout_sets(config: dict, split: str = "test", data_root: str | Path | None = None,
                 first_only: bool = False) -> list[FaceDataset]:
    """The run's ``split`` images of each data set it used (LFW first), leaving out empty ones;
    with ``first_only`` the first such set alone (later sets are then not read at all)."""
    sets = []
    for part in (p for p in RUN_PARTS if p in (config.get("data") or {}).get("layouts", {"lfw": "lfw"})):
        try:
            sets.append(split_dataset(config, part, split, data_root))
        except DatasetError as exc:
            if "has no images" not in str(exc):
                raise
        if first_only and sets:
            break
    if not sets:
        raise DatasetError(f"the run in {run_folder(config)} has no {split} images in its split file")
    return sets


def dataset_input(config: dict, name: str, split: str, data_root: str | Path | None) -> FaceDataset:
    """Data set ``name`` of a run: its held-out ``split`` (test/val), or (``split='all'``) every image."""
    if split != "all":
        return split_dataset(config, name, split, data_root)
    root = data_root if data_root is not None else (os.environ.get("FACEPROBE_DATA")
                                                   or (config.get("data") or {}).get("data_root") or None)
    if name == "lfw":
        return load_lfw_people(root)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="UTKFace: skipped")
        return load_utkface(root)


def source_names(paths: Sequence[str | Path], root: str | Path | None = None) -> list[str]:
    """File-name-safe, unique names after the sources (relative path without suffix, '/' -> '__')."""
    names, seen = [], {}
    for p in map(Path, paths):
        try:
            rel = p.relative_to(root) if root is not None else Path(p.name)
        except ValueError:
            rel = Path(p.name)
        stem = str(rel.with_suffix("")) if rel.suffix else str(rel)
        stem = stem.replace(os.sep, "__").replace("/", "__") or "image"
        stem = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in stem)
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(stem if count == 0 else f"{stem}-{count}")
    return names
