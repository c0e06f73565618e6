"""Shared fixtures: where the shared face data and the weight cache are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _data_root() -> Path | None:
    for candidate in (os.environ.get("FACEPROBE_DATA"), Path(__file__).resolve().parents[1] / ".." / "shared" / "data"):
        if candidate and (Path(candidate) / "utkface").is_dir():
            return Path(candidate).resolve()
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared data folder (FACEPROBE_DATA, or ../shared/data beside the checkout)."""
    root = _data_root()
    if root is None:
        pytest.skip("shared face data not found: set FACEPROBE_DATA")
    return root


def weights_or_skip(filename: str, what: str):
    """The cached weight file's path, or skip the test when it is not fetched."""
    from probes import weights

    try:
        return weights.weight_path(filename)
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        pytest.skip(f"{what} unavailable: {exc}")


@pytest.fixture(scope="session")
def faceapi_weights():
    """Skip when face-api weights are not fetched (`python -m probes.weights fetch`)."""
    from probes import weights

    weights_or_skip("face_recognition_model.bin", "face-api weights")
    return weights.weights_dir()


@pytest.fixture(scope="session")
def lpips_weights():
    """Skip when LPIPS' AlexNet checkpoint is not fetched."""
    return weights_or_skip("alexnet.ckpt", "LPIPS checkpoint")


@pytest.fixture(scope="session")
def ssd_weights(faceapi_weights):
    """Skip when face-api's SSD MobileNet V1 files are not fetched (they came after the others)."""
    for name in ("ssd_mobilenetv1_model-weights_manifest.json", "ssd_mobilenetv1_model.bin"):
        weights_or_skip(name, "SSD MobileNet V1 weights")
    return faceapi_weights


@pytest.fixture(scope="session")
def expression_weights(faceapi_weights):
    """Skip when face-api's FaceExpressionNet files are not fetched."""
    for name in ("face_expression_model-weights_manifest.json", "face_expression_model.bin"):
        weights_or_skip(name, "FaceExpressionNet weights")
    return faceapi_weights


# Three LFW frames and two UTKFace crops that the detector, SSD and landmark tests share.
DETECTION_LFW_NAMES = ("Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Colin_Powell/Colin_Powell_0001.jpg",
                       "Serena_Williams/Serena_Williams_0001.jpg")
DETECTION_UTK_NAMES = ("18_1_2_20170105183420463.jpg.chip.jpg", "26_1_3_20170104222936409.jpg.chip.jpg")


@pytest.fixture(scope="module")
def landmarks(faceapi_weights):
    from probes.labellers.landmarks import LandmarkDetector

    return LandmarkDetector()


@pytest.fixture(scope="module")
def faces(data_root):
    """The shared test faces as arrays ("lfw", "utk") with their "paths"; skips without the shared data."""
    from probes.images import load_image

    lfw = [data_root / "lfw_home" / "lfw" / n for n in DETECTION_LFW_NAMES]
    utk = [data_root / "utkface" / n for n in DETECTION_UTK_NAMES]
    if not all(p.is_file() for p in lfw + utk):
        pytest.skip("the test faces are not in the shared data")
    return {"lfw": [load_image(p) for p in lfw], "utk": [load_image(p) for p in utk], "paths": lfw + utk}
