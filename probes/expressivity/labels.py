"""Face-attribute labels for the expressivity sweep: from the dataset where it has them, else a labeller.

Labels come from the dataset where it has them (UTKFace age/sex) and from a labeller otherwise
(yaw, expression; age/sex on LFW); :class:`AttributeLabels` records which. Identity is a discrete attribute from
the dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..errors import DatasetError, UnknownNameError
from ..labellers import create_labeller

# Which labeller attribute stands for each sweep attribute. Sex is estimated as the binary label it is
# (the labeller's decision), not as P(male): Dhar et al. used P(male) as a continuous attribute, but a
# near-binary variable breaks the Gaussian-residual bound and has no finite ceiling, while a binary
# label's information is bounded by H(sex) <= log 2.
# Expression is face-api's FaceExpressionNet's decision among its 7 classes (a discrete label, ceiling
# H(expression) <= log 7), for the same reason.
LABELLER_OUTPUT = {"age": "age", "sex": "sex", "yaw": "yaw", "pitch": "pitch", "roll": "roll",
                   "expression": "expression"}
DISCRETE_LABELLER_OUTPUTS = ("sex", "expression")
DEFAULT_LABELLERS = {"age": "faceapi-agegender", "sex": "faceapi-agegender", "yaw": "faceapi-headpose",
                     "pitch": "faceapi-headpose", "roll": "faceapi-headpose", "expression": "faceapi-expression"}
# figures colour attributes by their position here: new ones go last
KNOWN_ATTRIBUTES = ("age", "sex", "yaw", "pitch", "roll", "identity", "race", "expression")


@dataclass(frozen=True)
class AttributeLabels:
    """One attribute's values for every image, where they came from, and their kind."""

    values: np.ndarray
    kind: str  # "continuous" or "discrete"
    source: str  # "dataset" or the labeller's name


def collect_labels(dataset, attributes: Sequence[str], labellers: Mapping[str, str] | None = None,
                   prefer: str = "dataset", batch_size: int = 64, device: str = "cpu",
                   progress: bool = True) -> dict[str, AttributeLabels]:
    """Labels for ``attributes``: from ``dataset`` when it has them (``prefer="dataset"``), else a labeller.

    ``labellers`` maps attribute -> labeller name (defaults: face-api's
    age/gender net for age and sex, the head-pose estimator for yaw/pitch/roll,
    face-api's expression net for expression).
    """

    unknown = [a for a in attributes if a not in KNOWN_ATTRIBUTES]
    if unknown:
        raise UnknownNameError(f"unknown attribute(s) {unknown}; known: {', '.join(KNOWN_ATTRIBUTES)}")
    chosen = {**DEFAULT_LABELLERS, **(labellers or {})}
    out: dict[str, AttributeLabels] = {}
    need: dict[str, list[str]] = {}
    for attr in attributes:
        if attr in dataset.attributes and (prefer == "dataset" or attr not in LABELLER_OUTPUT):
            values = dataset.labels(attr)
            if attr == "identity":
                values = pd.factorize(pd.Series(values))[0]
            kind = "continuous" if attr == "age" else "discrete"
            out[attr] = AttributeLabels(np.asarray(values), kind, "dataset")
        elif attr in LABELLER_OUTPUT:
            need.setdefault(chosen[attr], []).append(attr)
        else:
            raise DatasetError(f"dataset {dataset.name!r} has no {attr!r} labels and no labeller estimates "
                               f"{attr!r}; available: {', '.join(dataset.attributes) or 'none'}")
    for labeller_name, attrs in need.items():
        out.update(_estimate_labels(dataset, labeller_name, attrs, batch_size, device, progress))
    return out


def _estimate_labels(dataset, labeller_name: str, attrs: list[str], batch_size: int, device: str,
                     progress: bool) -> dict[str, AttributeLabels]:
    """``attrs`` of every image of ``dataset`` as estimated by labeller ``labeller_name``."""
    labeller = create_labeller(labeller_name, device=device)
    missing = [LABELLER_OUTPUT[a] for a in attrs if LABELLER_OUTPUT[a] not in labeller.attributes]
    if missing:
        raise UnknownNameError(f"labeller {labeller_name!r} does not estimate {missing}; "
                               f"it gives {', '.join(labeller.attributes)}")
    parts: dict[str, list[np.ndarray]] = {a: [] for a in attrs}
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc=f"labels [{labeller_name}]", unit="batch", disable=not progress):
        idx = np.arange(start, min(start + batch_size, len(dataset)))
        predicted = labeller.predict(dataset.load_images(idx), layout=dataset.layout)
        for a in attrs:
            parts[a].append(np.asarray(predicted[LABELLER_OUTPUT[a]], np.float64))
    return {a: AttributeLabels(np.concatenate(parts[a]).astype(np.int64) if a in DISCRETE_LABELLER_OUTPUTS
                               else np.concatenate(parts[a]),
                               "discrete" if a in DISCRETE_LABELLER_OUTPUTS else "continuous", labeller_name)
            for a in attrs}
