"""The expressivity sweep of one face network on one dataset: faces, labels, capture, estimates, files.

:class:`ExpressivitySweep` runs what ``python -m probes.expressivity`` runs: load the faces, collect
the attribute labels (:mod:`~probes.expressivity.labels`), capture every tap layer
(:class:`~probes.capture.LayerCapture`), estimate every (layer, attribute) pair
(:func:`~probes.expressivity.sweep.expressivity_sweep`). Its :class:`ExpressivityResult` saves
``results.csv``, ``results.json`` and ``expressivity.png``.

>>> config = ExpressivityConfig(backbone="dlib-resnet29", dataset="utkface", max_images=500)  # doctest: +SKIP
>>> ExpressivitySweep(config).run().save("runs/expressivity-utkface")                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..backbones import create_backbone
from ..capture import LayerCapture
from ..config import DictConfig
from ..datasets import FaceDataset, load_dataset
from ..datasets.people import write_skipped
from ..errors import FaceprobeError
from ..outputs import atomic_write_bytes, provenance, save_figure
from .figures import plot_expressivity
from .labels import AttributeLabels, collect_labels
from .sweep import expressivity_sweep, pool_over_seeds

OUTPUT_FILES = ("results.csv", "results.json", "expressivity.png")


@dataclass(frozen=True)
class ExpressivityConfig(DictConfig):
    """What one expressivity sweep measures, and how.

    ``dataset``: ``lfw`` (people with at least ``min_images_per_person`` images), ``utkface`` or
    ``folder`` (``data_root`` the image folder, ``labels_csv`` its labels); at most ``max_images`` of
    them, a subset drawn with ``seed``. ``labels_from``: where an attribute the dataset has comes from
    (``dataset`` or ``labeller``). ``layers``: tap layers (None: all of the backbone's).
    ``projection_dim``: random projection of wider layers (0 or None keeps every channel); ``pool``:
    how a convolutional layer's H x W map becomes one vector (``avg`` or ``max``). The table's
    ``reduction`` column says what was done.
    ``seeds``: of the estimators, one row per seed. ``jobs``: worker processes for the estimates
    (-1: one per CPU core); results do not depend on it.
    """

    config_name = "expressivity"
    config_error = FaceprobeError

    backbone: str = "dlib-resnet29"
    weights: str | None = None
    dataset: str = "lfw"
    data_root: str | None = None
    labels_csv: str | None = None
    folder_layout: str = "chip"
    min_images_per_person: int = 10
    max_images: int | None = 2000
    seed: int = 0
    attributes: tuple[str, ...] = ("age", "sex", "yaw", "identity")
    labels_from: str = "dataset"
    age_sex_labeller: str = "faceapi-agegender"
    pose_labeller: str = "faceapi-headpose"
    layers: tuple[str, ...] | None = None
    estimators: tuple[str, ...] = ("probe", "mine")
    seeds: tuple[int, ...] = (0, 1, 2)  # three splits and training seeds: intervals cover their spread
    interval: str = "envelope"  # how results_pooled.csv pools the seeds' intervals (see pool_over_seeds)
    projection_dim: int | None = 512
    pool: str = "avg"
    batch_size: int = 64
    device: str = "cpu"
    jobs: int = -1
    cache_dir: str | None = None
    progress: bool = True


def layer_reduction(capture: LayerCapture, layer: str, captured: np.ndarray) -> str:
    """How ``layer``'s output became the vectors the estimators read (pooling, projection)."""
    parts = [f"global {capture.pool} pooling of 4-D maps"]
    if capture.projection_dim is not None and captured.shape[1] == capture.projection_dim:
        parts.append(f"random projection to {capture.projection_dim} where wider")
    return "; ".join(parts)


def load_faces(config: ExpressivityConfig) -> FaceDataset:
    """The faces ``config`` names: its dataset, at most ``max_images`` of them drawn with ``seed``."""
    if config.dataset == "folder":
        dataset = load_dataset("folder", config.data_root, labels_csv=config.labels_csv, layout=config.folder_layout)
        if config.max_images and len(dataset) > config.max_images:
            dataset = dataset.subset(np.random.default_rng(config.seed).choice(len(dataset), config.max_images,
                                                                               replace=False))
        return dataset
    kwargs = {"max_images": config.max_images, "seed": config.seed}
    if config.dataset == "lfw":
        kwargs["min_images_per_person"] = config.min_images_per_person
    return load_dataset(config.dataset, config.data_root, **kwargs)


def label_faces(config: ExpressivityConfig, faces: FaceDataset) -> dict[str, AttributeLabels]:
    """``config.attributes`` of every face, from the dataset or ``config``'s labellers."""
    labellers = {a: config.age_sex_labeller for a in ("age", "sex")}
    labellers.update({a: config.pose_labeller for a in ("yaw", "pitch", "roll")})
    return collect_labels(faces, config.attributes, labellers, prefer=config.labels_from,
                          batch_size=config.batch_size, device=config.device, progress=config.progress)


@dataclass
class ExpressivityResult:
    """One sweep's table (one row per layer, attribute, estimator and seed) and what it was made from."""

    config: ExpressivityConfig
    table: pd.DataFrame
    layers: list[str]
    dataset_name: str
    n_images: int
    label_sources: dict[str, str]
    backbone_weights_id: str | None
    timings: dict[str, float]
    skipped: list = field(default_factory=list)  # (path, reason) of what the data set left out

    def figure(self, title: str | None = None):
        """Expressivity against depth (a matplotlib Figure), titled with the backbone and dataset by default."""
        return plot_expressivity(self.table, title or
                                 f"{self.config.backbone} on {self.dataset_name} (n={self.n_images})")

    def summary(self, command: str | None = None, settings: dict | None = None) -> dict:
        """What ``results.json`` holds; ``settings`` is recorded as its "config" (default: this run's config)."""
        return {
            "command": command, "config": self.config.to_dict() if settings is None else settings,
            "n_images": self.n_images, "layers": self.layers, "label_sources": self.label_sources,
            "backbone_weights_id": self.backbone_weights_id, "timings": self.timings, "versions": provenance(),
            "n_skipped": len(self.skipped),
            "results": self.table.to_dict(orient="records"),
        }

    def save(self, folder: str | Path, command: str | None = None, settings: dict | None = None) -> Path:
        """Write ``results.csv``, ``expressivity.png`` and ``results.json`` into ``folder`` (created if
        needed; other files there are left alone), ``results_pooled.csv`` (:func:`pool_over_seeds`)
        when there are several seeds, and ``skipped.csv`` when the data set left files out; see
        :meth:`summary` for ``command`` and ``settings``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_table(folder / "results.csv", self.table)
        if self.table["seed"].nunique() > 1:
            write_table(folder / "results_pooled.csv", pool_over_seeds(self.table, self.config.interval))
        save_figure(self.figure(), folder / "expressivity.png", dpi=130)
        write_summary(folder / "results.json", self.summary(command, settings))
        write_skipped(folder, self.skipped)
        return folder


def write_table(path: Path, table: pd.DataFrame) -> None:
    """``table`` as CSV (pandas' format, no index), written atomically."""
    atomic_write_bytes(path, lambda h: h.write(table.to_csv(index=False).encode()))


def write_summary(path: Path, summary: dict) -> None:
    """``summary`` as indented JSON, written atomically (the results.json of the expressivity commands)."""
    atomic_write_bytes(path, lambda h: h.write(json.dumps(summary, indent=2, default=str).encode()))


class ExpressivitySweep:
    """Measures how much each layer of a face network tells about each attribute (see the module docstring)."""

    def __init__(self, config: ExpressivityConfig):
        self.config = config

    def run(self, faces: FaceDataset | None = None,
            labels: dict[str, AttributeLabels] | None = None) -> ExpressivityResult:
        """Sweep ``faces`` (default: :func:`load_faces`) with ``labels`` (default: :func:`label_faces`)."""
        config = self.config
        faces = load_faces(config) if faces is None else faces
        backbone = create_backbone(config.backbone, weights=config.weights, device=config.device)
        layers = list(config.layers or backbone.tap_layers)
        for layer in layers:
            backbone.layer(layer)  # unknown names fail now, listing the valid ones
        timings = {}
        t0 = time.perf_counter()
        labels = label_faces(config, faces) if labels is None else labels
        timings["labels_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        capture = LayerCapture(backbone, layers, pool=config.pool, projection_dim=config.projection_dim or None,
                               batch_size=config.batch_size, cache_dir=config.cache_dir, progress=config.progress)
        features = capture.capture(faces)
        timings["capture_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        # Images of one person share age and sex: with identities, attributes are estimated on person-disjoint
        # splits so that a held-out face is never of a person seen in training.
        people = faces.labels("identity") if "identity" in faces.attributes else None
        table = expressivity_sweep(features, labels, estimators=config.estimators, seeds=config.seeds,
                                   layer_order=layers, n_jobs=config.jobs, progress=config.progress, groups=people)
        timings["estimation_s"] = time.perf_counter() - t0
        table.insert(0, "backbone", config.backbone)
        table["reduction"] = table["layer"].map(lambda layer: layer_reduction(capture, layer, features[layer]))
        table.insert(1, "dataset", faces.name)
        return ExpressivityResult(config, table, layers, faces.name, len(faces),
                                  {a: lab.source for a, lab in labels.items()}, backbone.weights_id, timings,
                                  skipped=list(faces.skipped))
