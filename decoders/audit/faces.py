"""Which faces an audit reads: the faces a GAN was not trained on, or those a folder of aged images lists.

``FaceSelection(...).load(model, checkpoint)`` reads UTKFace at the model's groups and image size and
keeps the audited faces, with a record of how they were chosen (it goes into ``results.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probes.errors import DatasetError

from ..aging.data import AgingFaces, load_aging_faces
from ..aging.groups import AgingModel
from ..aging.shipped import GENERATORS, heldout_faces
from .sources import AuditError, FolderAging

DEFAULT_HOLDOUT = 0.1


@dataclass(frozen=True)
class FaceSelection:
    """Which UTKFace faces to audit.

    - ``data_root``: the folder holding ``utkface/`` (default ``$FACEPROBE_DATA``);
    - ``holdout``: audit the held-out part of ``AgingFaces.split((1 - h, h), split_seed)``; 0 = all
      faces; None = the checkpoint's own validation faces (from its run's ``config.json``), else 0.1;
    - ``max_images``: at most this many of them, drawn with ``seed``; ``progress``: progress bars.
    """

    data_root: str | Path | None = None
    max_images: int | None = None
    seed: int = 0
    holdout: float | None = None
    split_seed: int = 0
    progress: bool = True

    def load(self, model: AgingModel, checkpoint: str | Path | None = None) -> tuple[AgingFaces, dict]:
        """The faces to audit ``model`` on, and a record of how they were chosen.

        A :class:`FolderAging` model is audited on the sources its CSV lists; a model read from
        ``checkpoint`` (with ``holdout`` None) on the faces its run held out of training.
        """
        sources, how, holdout, split_seed, pool = _plan(self, model, checkpoint)
        direct = holdout == 0 and sources is None and not pool and self.max_images
        if direct:
            # The same seeded draw select_faces would make, but only the drawn files are read.
            pool = {"max_images": self.max_images, "seed": self.seed}
        faces = load_aging_faces(model.groups, int(model.image_size), root=self.data_root, progress=self.progress,
                                 **pool)
        faces, record = select_faces(faces, holdout, split_seed, self.max_images, self.seed, sources=sources, how=how)
        if direct:
            record["subsample"] = f"{len(faces)} drawn with seed {self.seed} (load_aging_faces)"
        return faces, record


def select_faces(faces: AgingFaces, holdout: float = 0.1, split_seed: int = 0, max_images: int | None = None,
                 seed: int = 0, sources: set[str] | None = None, how: str | None = None) -> tuple[AgingFaces, dict]:
    """The audited faces and a record of how they were chosen.

    ``sources`` (file names) keeps only those faces (a folder of pre-aged
    images, a run's listed validation faces); otherwise the ``holdout`` part of ``faces.split((1 - holdout,
    holdout), split_seed)`` (0 = all faces). Then ``max_images`` of them,
    drawn with ``seed``.
    """
    if len(faces) == 0:
        raise DatasetError("no faces to audit (the dataset is empty)")
    record = {"n_available": len(faces)}
    if sources is not None:
        keep = [i for i, p in enumerate(faces.paths) if Path(p).name in sources]
        if not keep:
            raise AuditError(f"no face of {how or 'the given sources'} matches a UTKFace face in the "
                             f"{faces.groups.name} groups (e.g. {sorted(sources)[:2]})")
        faces = faces.subset(np.asarray(keep))
        record["selection"] = how or "the given sources"
        record["n_sources_not_found"] = len(sources) - len(keep)
    elif holdout > 0:
        if not 0 < holdout < 1:
            raise AuditError(f"--holdout must lie in [0, 1), got {holdout}")
        faces = faces.split((1 - holdout, holdout), seed=split_seed)[1]
        record["selection"] = how or f"held-out {holdout:g} of a seed-{split_seed} split (AgingFaces.split)"
    else:
        record["selection"] = "all faces in the groups"
    if max_images is not None:
        if max_images < 1:
            raise AuditError(f"--max-images must be positive, got {max_images}")
        if max_images < len(faces):
            faces = faces.subset(np.sort(np.random.default_rng(seed).choice(len(faces), max_images, replace=False)))
            record["subsample"] = f"{max_images} drawn with seed {seed}"
    if len(faces) == 0:
        raise DatasetError("no faces left to audit after the held-out split; lower --holdout or add faces")
    record["n"] = len(faces)
    return faces, record


def run_heldout(checkpoint: str | Path) -> dict | None:
    """How a GAN run held faces out of training, read from its ``config.json`` (None when not recorded).

    Returns ``{"sources": file names, "how": ...}`` when the run lists its
    validation faces, or ``{"val_fraction", "seed", "max_images",
    "max_images_seed", "how"}`` when it records the split that chose them.
    """
    path = Path(checkpoint).expanduser().absolute()
    folders = ([path] if path.is_dir() else []) + list(path.parents)[:3]
    for folder in folders:
        config = folder / "config.json"
        if not config.is_file():
            continue
        try:
            record = json.loads(config.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict):
            continue
        data = record.get("data") or {}
        if isinstance(data.get("val_paths"), list) and data["val_paths"]:
            return {"sources": {Path(p).name for p in data["val_paths"]},
                    "how": f"the run's validation faces listed in {config}"}
        settings = record.get("cli") or record.get("settings") or {}
        if isinstance(settings, dict) and settings.get("val_fraction"):
            seed = int(settings.get("split_seed", settings.get("seed", 0)) or 0)
            return {"val_fraction": float(settings["val_fraction"]), "seed": seed,
                    "max_images": settings.get("max_images"),
                    "max_images_seed": int(settings.get("split_seed", settings.get("seed", 0)) or 0),
                    "how": f"the run's validation split recorded in {config} (val_fraction "
                           f"{settings['val_fraction']}, seed {seed})"}
    return None


def _plan(selection: FaceSelection, model: AgingModel, checkpoint: str | Path | None) -> tuple:
    """``(sources, how, holdout, split_seed, pool)``: the faces ``model`` was not trained on, as far as known.

    ``sources`` (file names) or the held-out fraction of a seeded split, drawn from a ``pool`` of
    faces (:func:`~decoders.aging.data.load_aging_faces` arguments) as the run drew its own.
    """
    holdout, split_seed = selection.holdout, selection.split_seed
    sources, how, pool = None, None, {}
    if isinstance(model, FolderAging):
        sources, how = model.sources(), f"sources listed in {model.csv_as_given}"
    elif holdout is None and isinstance(checkpoint, str) and checkpoint in GENERATORS:
        sources = heldout_faces(checkpoint)
        how = f"the faces shipped generator {checkpoint!r} was not trained on ({GENERATORS.what} registry)"
    elif holdout is None and checkpoint is not None and Path(str(checkpoint)).expanduser().exists():
        info = run_heldout(checkpoint)
        if info is not None and "sources" in info:
            sources, how = info["sources"], info["how"]
        elif info is not None:
            holdout, split_seed, how = info["val_fraction"], info["seed"], info["how"]
            if info["max_images"]:
                pool = {"max_images": int(info["max_images"]), "seed": info["max_images_seed"]}
    return sources, how, DEFAULT_HOLDOUT if holdout is None else holdout, split_seed, pool
