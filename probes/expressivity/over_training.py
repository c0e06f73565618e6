"""Expressivity over training: the per-layer sweep repeated on every checkpoint of one network.

Dhar et al. (FG 2020) report that, as a face network trains with an identity
loss, what its last layers tell about identity rises while what they tell
about age, sex and pose falls. :func:`expressivity_over_training` measures
that curve: each checkpoint's layers are captured on the *same* images and
swept against the *same* labels (collected once, with
:func:`~probes.expressivity.labels.collect_labels`) by
:func:`~probes.expressivity.sweep.expressivity_sweep`, and the tables are
stacked with a ``step`` column.
:func:`~probes.expressivity.figures.plot_expressivity_over_training` draws
expressivity against step, one line per attribute.

>>> models = [(0, create_backbone("small-facenet", weights="run/checkpoints/step_0000000.pt")),
...           (500, create_backbone("small-facenet", weights="run/checkpoints/step_0000500.pt"))]  # doctest: +SKIP
>>> labels = collect_labels(faces, ["age", "sex", "yaw", "identity"])                               # doctest: +SKIP
>>> table = expressivity_over_training(models, faces, labels)                                      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..backbones.registry import FaceBackbone
from ..capture import LayerCapture
from ..errors import FaceprobeError, preview
from .labels import AttributeLabels
from .sweep import expressivity_sweep


class CheckpointSeriesError(FaceprobeError, ValueError):
    """Checkpoints that cannot be compared along training (none, repeated steps, other architectures)."""


def _architecture(backbone: FaceBackbone) -> tuple:
    spec = backbone.spec
    shapes = tuple((k, tuple(v.shape)) for k, v in backbone.net.state_dict().items())
    return (spec.name, spec.tap_layers, spec.input_size, spec.embedding_size, shapes)


def check_checkpoint_series(models: Sequence[tuple[int, FaceBackbone]]) -> list[tuple[int, FaceBackbone]]:
    """``models`` as a list sorted by step, after checking it is one architecture at distinct steps.

    Raises :class:`CheckpointSeriesError` for an empty series, a step that is not a
    non-negative integer, a step given twice, or networks that differ in backbone
    name, tap layers, input/embedding size or parameter shapes.
    """
    if isinstance(models, Mapping):
        models = list(models.items())
    models = list(models)
    if not models:
        raise CheckpointSeriesError("models is empty: pass a list of (step, FaceBackbone) pairs, one per checkpoint")
    for k, item in enumerate(models):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise CheckpointSeriesError(f"models[{k}] is {type(item).__name__}, not a (step, FaceBackbone) pair")
        step, backbone = item
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise CheckpointSeriesError(f"models[{k}]: step {step!r} is not a non-negative integer")
        if not isinstance(backbone, FaceBackbone):
            raise CheckpointSeriesError(f"models[{k}] (step {step}) is a {type(backbone).__name__}, not a "
                                        "FaceBackbone; build it with probes.backbones.create_backbone")
    steps = [int(s) for s, _ in models]
    repeated = sorted({s for s in steps if steps.count(s) > 1})
    if repeated:
        raise CheckpointSeriesError(f"step(s) {repeated} appear more than once in models")
    first_step, first = models[0]
    reference = _architecture(first)
    for step, backbone in models[1:]:
        arch = _architecture(backbone)
        if arch == reference:
            continue
        if arch[0] != reference[0]:
            what = f"backbone {backbone.name!r} vs {first.name!r}"
        elif arch[1] != reference[1]:
            what = f"tap layers {list(arch[1])} vs {list(reference[1])}"
        elif arch[2:4] != reference[2:4]:
            what = f"input/embedding size {arch[2:4]} vs {reference[2:4]}"
        else:
            theirs, mine = dict(arch[4]), dict(reference[4])
            diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
            what = f"parameter shapes differ at {preview(diff, 5, None)}"
        raise CheckpointSeriesError(f"checkpoints must share one architecture: step {int(step)} differs from "
                                    f"step {int(first_step)} in {what}")
    return sorted(((int(s), b) for s, b in models), key=lambda item: item[0])


@dataclass(frozen=True)
class OverTrainingSettings:
    """How each checkpoint is captured (:class:`~probes.capture.LayerCapture`) and swept
    (:func:`~probes.expressivity.sweep.expressivity_sweep`).

    ``layers``: tap layers (default all of the architecture's); ``layout``: of the images (default the
    dataset's, or ``"chip"`` for arrays).
    """

    estimators: Sequence[str] = ("probe",)
    layers: Sequence[str] | str | None = None
    seeds: Sequence[int] = (0,)
    layout: str | None = None
    pool: str = "avg"
    projection_dim: int | None = None
    batch_size: int = 64
    estimator_params: Mapping[str, dict] | None = None
    n_jobs: int = 1
    cache_dir: str | Path | None = None
    progress: bool = True


def expressivity_over_training(models: Sequence[tuple[int, FaceBackbone]], images,
                               labels: Mapping[str, AttributeLabels], settings: OverTrainingSettings | None = None,
                               **overrides) -> pd.DataFrame:
    """Expressivity of every (layer, attribute) at every checkpoint; one tidy table.

    - ``models``: ``(step, FaceBackbone)`` pairs of one architecture (checked by
      :func:`check_checkpoint_series`; any order, sorted by step).
    - ``images``: a FaceDataset or an N x H x W x 3 uint8 array; every
      checkpoint sees the same images, so the rows of ``labels`` line up with all of them.
    - ``labels``: ``{attribute: AttributeLabels}`` from
      :func:`~probes.expressivity.labels.collect_labels`, collected once.
    - ``settings`` (or its fields as keywords, e.g. ``layers=["embedding"]``,
      ``progress=False``): see :class:`OverTrainingSettings`.

    Returns the sweep's columns plus ``step``, ``backbone`` and ``weights_id``:
    one row per (step, layer, attribute, estimator, seed), sorted by step.
    """
    settings = dataclasses.replace(settings or OverTrainingSettings(), **overrides)
    series = check_checkpoint_series(models)
    if not labels:
        raise CheckpointSeriesError("labels is empty: collect them once with collect_labels(dataset, attributes)")
    first = series[0][1]
    layers = settings.layers
    names = list(first.tap_layers if layers is None else ([layers] if isinstance(layers, str) else layers))
    for name in names:
        first.layer(name)  # unknown names fail before any work, listing the valid ones
    tables = []
    bar = tqdm(series, desc="checkpoints", unit="ckpt", disable=not settings.progress)
    for step, backbone in bar:
        bar.set_postfix(step=step)
        t0 = time.perf_counter()
        capture = LayerCapture(backbone, names, pool=settings.pool, projection_dim=settings.projection_dim,
                               batch_size=settings.batch_size, cache_dir=settings.cache_dir, progress=False)
        features = capture.capture(images, settings.layout)
        capture_s = time.perf_counter() - t0
        table = expressivity_sweep(features, labels, estimators=settings.estimators, seeds=settings.seeds,
                                   layer_order=names, estimator_params=settings.estimator_params,
                                   n_jobs=settings.n_jobs, progress=False)
        table.insert(0, "step", step)
        table.insert(1, "backbone", backbone.name)
        table.insert(2, "weights_id", backbone.weights_id)
        table["capture_s"] = capture_s
        tables.append(table)
    return pd.concat(tables, ignore_index=True)
