"""Expressivity over training (issue 3 §3): train a face network on LFW people, sweep every checkpoint.

:class:`OverTrainingStudy` runs what ``experiments/expressivity_over_training.py`` runs:

1. trains ``config.backbone`` from random weights on LFW people with at least
   ``min_images_per_person`` images with an identity loss (:mod:`probes.training.identity`),
   keeping a checkpoint every ``keep_every`` steps (step 0 = the random initialisation);
2. sweeps every checkpoint's tap layers with the same estimators on the same faces
   (:func:`~probes.expressivity.over_training.expressivity_over_training`):

   - ``lfw-heldout``: other images of the *training people* (a per-person split), so identity is a
     closed set the network was trained on, as in Dhar et al.'s identity expressivity. Age, P(male)
     and yaw there are labeller estimates -- LFW has none;
   - ``utkface`` (``utkface_images`` > 0): UTKFace faces with their own age and sex labels (yaw
     estimated), shown in grey like LFW (whose copy here is grey only). No identities there.

Its :class:`OverTrainingResult` saves ``results.csv``, the figures and ``results.json``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..backbones import BackboneSpec, get_spec
from ..config import DictConfig
from ..datasets import FaceDataset, load_lfw_people, load_utkface
from ..errors import FaceprobeError
from ..outputs import provenance, save_figure
from ..training.identity import face_chips, load_identity_checkpoints, split_per_identity, train_identity_network
from ..training.runs import read_log
from .figures import plot_expressivity_over_training
from .labels import AttributeLabels, collect_labels
from .over_training import expressivity_over_training
from .pipeline import write_summary, write_table

FIGURES = ("expressivity_over_training.png", "expressivity_over_training_normalised.png")
OUTPUT_FILES = ("results.csv", "results.json", *FIGURES)
HELDOUT = "lfw-heldout"


@dataclass(frozen=True)
class OverTrainingConfig(DictConfig):
    """The training run (backbone, data split, optimiser, checkpoints) and the sweep of its checkpoints.

    ``max_train_per_person`` caps the training images of one person (George W Bush has 530);
    ``sweep_steps``: the checkpoints to sweep (None: all); ``reuse_run``: sweep the checkpoints
    already in the run folder instead of training.
    """

    config_name = "expressivity over training"
    config_error = FaceprobeError

    backbone: str = "small-facenet"
    data_root: str | None = None
    min_images_per_person: int = 20
    eval_fraction: float = 0.3
    max_eval_per_person: int | None = 12
    max_train_per_person: int | None = 100
    utkface_images: int = 0
    steps: int = 600
    keep_every: int = 50
    batch_size: int = 64
    lr: float = 0.1
    head: str = "cosine"
    margin: float = 0.2
    scale: float = 16.0
    attributes: tuple[str, ...] = ("age", "sex", "yaw", "identity")
    estimators: tuple[str, ...] = ("probe",)
    layers: tuple[str, ...] | None = None
    sweep_steps: tuple[int, ...] | None = None
    seed: int = 0
    jobs: int = 1
    reuse_run: bool = False
    progress: bool = True


@dataclass
class EvalSet:
    """Face chips the checkpoints are swept on, and their labels."""

    chips: np.ndarray
    labels: dict[str, AttributeLabels]


@dataclass
class OverTrainingResult:
    """The stacked sweep table (one row per eval set, step, layer, attribute, estimator, seed) and its context."""

    config: OverTrainingConfig
    table: pd.DataFrame
    data: dict
    steps_swept: list[int]
    validation_accuracy: dict[int, float] | None
    timings: dict[str, float]

    @property
    def embedding_layer(self) -> str:
        return get_spec(self.config.backbone).embedding_layer

    def trend(self) -> list[dict]:
        """:func:`trend` at the embedding layer."""
        return trend(self.table, self.embedding_layer)

    def summary(self, command: str | None = None, settings: dict | None = None) -> dict:
        """What ``results.json`` holds; ``settings`` is recorded as its "config" (default: this run's config)."""
        return {
            "command": command, "config": self.config.to_dict() if settings is None else settings,
            "data": self.data, "steps_swept": self.steps_swept, "validation_accuracy": self.validation_accuracy,
            "trend_at_embedding": self.trend(), "timings_s": {k: round(v, 1) for k, v in self.timings.items()},
            "versions": provenance(),
        }

    def save(self, folder: str | Path, command: str | None = None, settings: dict | None = None) -> Path:
        """Write ``results.csv``, the figures (per eval set, in nats and over each curve's peak) and
        ``results.json`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_table(folder / "results.csv", self.table)
        for normalise, filename in ((False, FIGURES[0]), (True, FIGURES[1])):
            for name, n_images in self.data["eval_images"].items():
                fig = plot_expressivity_over_training(
                    self.table[self.table["eval_set"] == name], normalise=normalise,
                    title=f"{self.config.backbone} trained on {self.data['train_images']} LFW faces of "
                          f"{self.data['people']} people; swept on {name} (n={n_images}, {self.config.estimators[0]})")
                target = folder / (filename if name == HELDOUT else filename.replace(".png", f"_{name}.png"))
                save_figure(fig, target, dpi=120)
        write_summary(folder / "results.json", self.summary(command, settings))
        return folder


class OverTrainingStudy:
    """Trains a face network with identity loss and sweeps its checkpoints (see the module docstring)."""

    def __init__(self, config: OverTrainingConfig):
        self.config = config

    def run(self, run_dir: str | Path) -> OverTrainingResult:
        """Train into ``run_dir`` (checkpoints, log.csv, val.csv; or reuse it) and sweep its checkpoints."""
        config, run_dir, timings = self.config, Path(run_dir), {}
        spec = get_spec(config.backbone)
        t0 = time.perf_counter()
        people = load_lfw_people(config.data_root, min_images_per_person=config.min_images_per_person)
        train_set, eval_set = self._split(people)
        train_chips = face_chips(train_set, spec, progress=config.progress)
        eval_chips = face_chips(eval_set, spec, progress=config.progress)
        timings["chips_s"] = time.perf_counter() - t0
        if not config.reuse_run:
            t0 = time.perf_counter()
            trained = train_identity_network(
                train_chips, train_set.labels("identity"), run_dir, backbone=config.backbone, steps=config.steps,
                batch_size=config.batch_size, keep_every=config.keep_every, seed=config.seed, head=config.head,
                scale=config.scale, margin=config.margin, lr=config.lr, val_images=eval_chips,
                val_identities=eval_set.labels("identity"), progress=config.progress)
            timings["training_s"] = time.perf_counter() - t0
            timings["training_compute_s"] = trained.elapsed_s
        models = load_identity_checkpoints(run_dir, steps=config.sweep_steps)
        t0 = time.perf_counter()
        sets = {HELDOUT: EvalSet(eval_chips, collect_labels(eval_set, config.attributes, progress=config.progress))}
        if config.utkface_images:
            sets["utkface"] = self._utkface(spec)
        timings["labels_s"] = time.perf_counter() - t0
        tables = []
        for name, faces in sets.items():
            t0 = time.perf_counter()
            table = expressivity_over_training(models, faces.chips, faces.labels, estimators=config.estimators,
                                               layers=config.layers, seeds=[config.seed], n_jobs=config.jobs,
                                               progress=config.progress)
            timings[f"sweep_{name}_s"] = time.perf_counter() - t0
            table.insert(0, "eval_set", name)
            table.insert(1, "n_images", len(faces.chips))
            tables.append(table)
        val = read_log(run_dir / "val.csv") if (run_dir / "val.csv").is_file() else None
        data = {"people": len(np.unique(people.labels("identity"))), "train_images": len(train_chips),
                "eval_images": {name: len(faces.chips) for name, faces in sets.items()},
                "label_sources": {name: {a: lab.source for a, lab in faces.labels.items()}
                                  for name, faces in sets.items()}}
        accuracy = None if val is None else {int(r.step): round(float(r.val_accuracy), 4) for r in val.itertuples()}
        return OverTrainingResult(config, pd.concat(tables, ignore_index=True), data, [s for s, _ in models],
                                  accuracy, timings)

    def _split(self, people: FaceDataset) -> tuple[FaceDataset, FaceDataset]:
        """(train, eval): the same people, other images of them for the sweep; train capped per person."""
        config = self.config
        ids = people.labels("identity")
        train_idx, eval_idx = split_per_identity(ids, config.eval_fraction, config.max_eval_per_person,
                                                 seed=config.seed)
        if config.max_train_per_person:
            rng = np.random.default_rng(config.seed)
            keep = [rng.permutation(m)[:config.max_train_per_person] for m in
                    (train_idx[ids[train_idx] == person] for person in np.unique(ids[train_idx]))]
            train_idx = np.sort(np.concatenate(keep))
        return people.subset(train_idx), people.subset(eval_idx)

    def _utkface(self, spec: BackboneSpec) -> EvalSet:
        """UTKFace faces in grey (as the LFW copy the network trained on), with their own age and sex."""
        config = self.config
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="UTKFace: skipped")
            utk = load_utkface(config.data_root, max_images=config.utkface_images, seed=config.seed)
        chips = face_chips(utk, spec, progress=config.progress)
        # BT.601 luminance replicated to R = G = B, as in the LFW copy the network was trained on.
        grey = np.rint(chips.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
        attributes = [a for a in config.attributes if a != "identity"]
        return EvalSet(np.repeat(grey[..., None], 3, axis=-1), collect_labels(utk, attributes,
                                                                             progress=config.progress))


def trend(table: pd.DataFrame, layer: str) -> list[dict]:
    """Per (eval set, attribute, estimator) at ``layer``: step 0, peak and final estimates and what the CIs allow."""
    out = []
    rows = table[table["layer"] == layer]
    for (eval_set, attr, est), part in rows.groupby(["eval_set", "attribute", "estimator"], sort=False):
        part = part.groupby("step")[["estimate", "ci_low", "ci_high"]].mean().sort_index()
        first, last = part.iloc[0], part.iloc[-1]
        peak_step = int(part["estimate"].idxmax())
        peak = part.loc[peak_step]
        out.append({
            "eval_set": eval_set, "attribute": attr, "estimator": est, "layer": layer,
            "step0": [round(float(v), 4) for v in first], "peak_step": peak_step,
            "peak": [round(float(v), 4) for v in peak], "final_step": int(part.index[-1]),
            "final": [round(float(v), 4) for v in last],
            "rises_beyond_ci": bool(last["ci_low"] > first["ci_high"]),
            "falls_from_peak_beyond_ci": bool(last["ci_high"] < peak["ci_low"]),
        })
    return out
