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


@pytest.fixture(scope="session")
def faceapi_weights():
    """Skip when face-api weights are not fetched (`python -m probes.weights fetch`)."""
    from probes import weights

    try:
        weights.weight_path("face_recognition_model.bin")
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        pytest.skip(f"face-api weights unavailable: {exc}")
    return weights.weights_dir()
