"""What the GAN's training face model encodes, layer by layer, of original faces and of aged outputs.

An expressivity sweep (:func:`probes.expressivity.sweep.expressivity_sweep`) over the face model's
layers for age, sex and yaw, estimated on each image by the audit's labellers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from probes.backbones import FaceBackbone
from probes.capture import LayerCapture
from probes.expressivity import EstimationError
from probes.expressivity.sweep import AttributeLabels, expressivity_sweep

from ..aging.data import resize_faces
from .config import AuditConfig
from .measure import LAYOUT, AgedFaces, FaceReaders

MIN_EXPRESSIVITY_FACES = 40
PROJECTION_DIM = 256


def expressivity_table(aged: AgedFaces, net: FaceBackbone, readers: FaceReaders, config: AuditConfig
                       ) -> tuple[pd.DataFrame | None, str | None]:
    """The sweep's table for original and aged faces (None when skipped) and a note on what was not estimated."""
    n = len(aged.faces)
    if n < MIN_EXPRESSIVITY_FACES:
        return None, (f"expressivity sweep skipped: {n} faces (< {MIN_EXPRESSIVITY_FACES} needed for a held-out "
                      "probe)")
    attributes = [a for a in config.expressivity_attributes if a != "yaw" or readers.pose is not None]
    capture = LayerCapture(net, layers=config.expressivity_layers, projection_dim=PROJECTION_DIM, seed=config.seed,
                           batch_size=config.batch_size, progress=config.progress)
    sources = {"age": readers.age.name, "sex": readers.age.name, "yaw": getattr(readers.pose, "name", "none")}
    tables, problems = [], []
    for which, images, values in image_sets(aged, config.seed):
        features = capture.capture(resize_faces(images, config.measure_size), LAYOUT)
        for a in attributes:
            y = np.asarray(values[a], np.float64)
            finite = y[np.isfinite(y)]
            if len(finite) and np.ptp(finite) <= 1e-4 * max(1.0, float(np.abs(finite).max())):
                # One value for every image (e.g. a collapsed generator; batched convolutions differ in the
                # last bits): nothing to know, I = 0 exactly.
                problems.append(f"{a} on {which} faces is the same for every image: I = 0 at every layer")
                tables.append(pd.DataFrame({"set": which, "layer": capture.layers,
                                            "depth": range(len(capture.layers)), "attribute": a,
                                            "estimator": config.expressivity, "estimate": 0.0, "ci_low": 0.0,
                                            "ci_high": 0.0, "n": len(finite), "label_source": sources[a]}))
                continue
            try:
                table = sweep(features, a, AttributeLabels(y, "continuous", sources[a]), capture.layers, config)
            except EstimationError as exc:
                problems.append(f"{a} on {which} faces not estimated: {exc}")
                continue
            table.insert(0, "set", which)
            tables.append(table)
    note = ("Expressivity: " + "; ".join(problems) + ".") if problems else None
    if not tables:
        return None, note
    out = pd.concat(tables, ignore_index=True)
    out.insert(1, "backbone", net.name)
    return out, note


def image_sets(aged: AgedFaces, seed: int) -> list[tuple[str, np.ndarray, dict[str, np.ndarray]]]:
    """``(set, images, {attribute: labels})`` for the originals and for one aged output per face.

    The aged output of each face is at a seeded random target: as many aged as original images.
    """
    n, targets, measured = len(aged.faces), aged.targets, aged.measured
    rng = np.random.default_rng(seed + 2)
    pick = np.asarray(targets)[rng.integers(0, len(targets), n)]
    images = np.stack([aged.outputs[t][k] for k, t in enumerate(pick)])
    real = aged.real
    return [("original", aged.faces.images, {"age": real.age, "sex": real.p_male, "yaw": real.yaw}),
            ("aged", images, {"age": np.array([measured[t].age[k] for k, t in enumerate(pick)]),
                              "sex": np.array([measured[t].p_male[k] for k, t in enumerate(pick)]),
                              "yaw": np.array([measured[t].yaw[k] for k, t in enumerate(pick)])})]


def sweep(features, attribute: str, labels: AttributeLabels, layers, config: AuditConfig) -> pd.DataFrame:
    """One attribute's sweep over the captured layers with the configured estimator."""
    params = {config.expressivity: {"n_bootstrap": 100, "n_permutations": 100, **config.expressivity_params}}
    return expressivity_sweep(features, {attribute: labels}, estimators=[config.expressivity], seeds=[config.seed],
                              layer_order=layers, estimator_params=params, progress=config.progress)
