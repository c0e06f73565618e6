"""Attribute labellers: face-api ports (AgeGenderNet, FaceLandmark68Net), head pose, registry."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from probes.errors import ImageError, UnknownNameError, WeightFileError
from probes.labellers import create_labeller, list_labellers
from probes.labellers.age_gender import AgeGenderNet
from probes.labellers.faceapi import faceapi_to_state, max_pool_same, same_padding
from probes.labellers.landmarks import FaceLandmark68Net
from probes.labellers.pose import (
    MIRROR_68,
    load_meanshape,
    pose_from_landmarks,
    symmetrise,
)
from probes.tfjs import read_weights_manifest

# ---- no weights needed -------------------------------------------------------------------------

def test_tf_same_padding_is_asymmetric_and_maxpool_pads_with_minus_inf():
    assert same_padding(112, 3, 2) == (0, 1)  # TF puts the odd pad after
    assert same_padding(56, 3, 1) == (1, 1)
    assert same_padding(28, 1, 2) == (0, 0)
    x = -torch.ones(1, 1, 4, 4)
    assert torch.all(max_pool_same(x) == -1)  # a zero pad would win here
    assert max_pool_same(x).shape[-2:] == (2, 2)


def test_nets_produce_the_expected_shapes():
    age, logits = AgeGenderNet().eval()(torch.zeros(2, 3, 112, 112))
    assert age.shape == (2,) and logits.shape == (2, 2)
    assert FaceLandmark68Net().eval()(torch.zeros(3, 3, 112, 112)).shape == (3, 68, 2)


def test_mirror_permutation_is_an_involution_that_swaps_sides():
    assert sorted(MIRROR_68) == list(range(68))
    assert np.array_equal(MIRROR_68[MIRROR_68], np.arange(68))
    assert MIRROR_68[0] == 16 and MIRROR_68[36] == 45 and MIRROR_68[48] == 54 and MIRROR_68[30] == 30


def test_pose_solver_recovers_known_angles_and_flips_yaw_under_mirroring():
    shape = symmetrise(load_meanshape())
    truth = np.array([[20.0, 0, 0], [0, 15, 0], [0, 0, 10], [-35, -10, 5]])
    points = []
    for yaw, pitch, roll in truth:
        rot = Rotation.from_euler("YXZ", [-yaw, -pitch, roll], degrees=True).as_matrix()
        points.append(60 * (shape @ rot.T)[:, :2] + 100)
    points = np.stack(points)
    pose = pose_from_landmarks(points, shape)
    got = np.stack([pose["yaw"], pose["pitch"], pose["roll"]], 1)
    np.testing.assert_allclose(got, truth, atol=1e-3)
    # positive yaw = nose to the image's right of the face's centre
    assert points[0, 30, 0] > points[0, :, 0].mean()
    mirrored = points.copy()
    mirrored[..., 0] = 200 - mirrored[..., 0]
    mirrored = mirrored[:, MIRROR_68]  # a detector labels the mirrored face's points by its own sides
    flipped = pose_from_landmarks(mirrored, shape)
    np.testing.assert_allclose(flipped["yaw"], -truth[:, 0], atol=1e-3)
    np.testing.assert_allclose(flipped["pitch"], truth[:, 1], atol=1e-3)


def test_meanshape_loader_refuses_code_and_wrong_shapes(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Path("x")))  # any global outside numpy's array machinery
    with pytest.raises(WeightFileError, match="evil.pkl"):
        load_meanshape(evil)
    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps(np.zeros((5, 3), np.float32)))
    with pytest.raises(WeightFileError, match=r"\(68, 3\)"):
        load_meanshape(wrong)
    shape = load_meanshape()
    assert shape.shape == (68, 3) and shape[30, 2] < shape[0, 2]  # nose tip nearer the camera than the jaw


def test_unknown_labeller_lists_valid_names():
    names = list_labellers()
    assert {"faceapi-agegender", "faceapi-headpose"} <= set(names)
    with pytest.raises(UnknownNameError, match="faceapi-agegender"):
        create_labeller("no-such-labeller")


# ---- with face-api weights ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def agegender(faceapi_weights):
    return create_labeller("faceapi-agegender")


@pytest.fixture(scope="module")
def headpose(faceapi_weights):
    return create_labeller("faceapi-headpose")


@pytest.mark.parametrize("manifest, net, count", [
    ("age_gender_model-weights_manifest.json", AgeGenderNet, 51),
    ("face_landmark_68_model-weights_manifest.json", FaceLandmark68Net, 49),
])
def test_manifest_decodes_into_the_port(faceapi_weights, manifest, net, count):
    from probes.weights import weight_path

    tensors = read_weights_manifest(weight_path(manifest))
    assert len(tensors) == count
    state = faceapi_to_state(tensors, manifest)
    expected = net().state_dict()
    assert set(state) == set(expected)
    assert all(tuple(state[k].shape) == tuple(expected[k].shape) for k in expected)


def test_labeller_interface(agegender, headpose):
    assert agegender.name == "faceapi-agegender" and set(agegender.attributes) == {"age", "sex", "p_male"}
    assert headpose.name == "faceapi-headpose" and set(headpose.attributes) == {"yaw", "pitch", "roll"}
    assert len(agegender.weights_id) == 64


def test_state_dict_round_trip_and_wrong_file(agegender, tmp_path):
    from probes.labellers.age_gender import AgeGenderLabeller

    path = tmp_path / "ag.pt"
    torch.save(agegender.net.state_dict(), path)
    again = AgeGenderLabeller(weights=path)
    x = torch.rand(2, 3, 112, 112)
    torch.testing.assert_close(again(x)[1], agegender(x)[1])
    bad = tmp_path / "bad.pt"
    torch.save({"fc.age.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(WeightFileError, match="bad.pt"):
        AgeGenderLabeller(weights=bad)


def _utkface_faces(data_root: Path, n: int = 16):
    from probes.images import load_images

    files = sorted((data_root / "utkface").glob("*.jpg"))
    files = [f for f in files if len(f.name.split("_")) >= 4 and f.name.split("_")[1] in ("0", "1")]
    pick = np.sort(np.random.default_rng(0).choice(len(files), size=n, replace=False))
    chosen = [files[i] for i in pick]
    ages = np.array([int(f.name.split("_")[0]) for f in chosen])
    sexes = np.array([int(f.name.split("_")[1]) for f in chosen])
    return load_images(chosen), ages, sexes


@pytest.fixture(scope="module")
def faces(data_root):
    return _utkface_faces(data_root)


def test_age_and_sex_on_utkface(agegender, faces):
    images, ages, sexes = faces
    out = agegender.predict(images, layout="utkface")
    assert out["age"].shape == out["p_male"].shape == out["sex"].shape == (16,)
    assert ((out["p_male"] >= 0) & (out["p_male"] <= 1)).all()
    assert (out["sex"] == sexes).mean() >= 0.75  # ~92% on 2000 faces
    assert np.abs(out["age"] - ages).mean() < 10.0  # ~4.5 years on 2000 faces
    # uint8 arrays, a [0, 1] tensor, small batches and a list of mixed sizes agree
    as_tensor = torch.from_numpy(images[:4]).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_allclose(agegender.predict(as_tensor, "utkface")["age"], out["age"][:4], atol=1e-3)
    np.testing.assert_allclose(agegender.predict(images[:5], "utkface", batch_size=2)["age"], out["age"][:5],
                               atol=1e-3)
    mixed = agegender.predict([images[0], images[1][:, :150], images[2]], "utkface")
    np.testing.assert_allclose(mixed["age"][[0, 2]], out["age"][[0, 2]], atol=1e-3)


def test_landmarks_follow_crop_and_padding(headpose, faces):
    detector = headpose.landmarks
    images = faces[0][:3]
    points = detector.predict(images, "utkface")
    assert points.shape == (3, 68, 2) and points.dtype == np.float32
    assert ((points > -10) & (points < 210)).mean() > 0.95
    # the same face inside a black frame, cropped back out by a layout crop: points shift by the frame
    framed = np.pad(images, ((0, 0), (50, 50), (50, 50), (0, 0)))
    detector.crops["framed"] = (50 / 300, 50 / 300, 200 / 300, 200 / 300)
    try:
        np.testing.assert_allclose(detector.predict(framed, "framed"), points + 50, atol=0.05)
    finally:
        del detector.crops["framed"]
    # a non-square image is padded to a centred square, and the pad is taken off again
    narrow = np.ascontiguousarray(images[:, :, 25:175])
    square = np.zeros_like(images)
    square[:, :, 25:175] = narrow
    np.testing.assert_allclose(detector.predict(narrow, "chip") + [25, 0], detector.predict(square, "chip"),
                               atol=0.05)


def test_mirrored_faces_get_opposite_yaw(headpose, faces):
    images = faces[0][:8]
    pose = headpose.predict(images, "utkface")
    flipped = headpose.predict(np.ascontiguousarray(images[:, :, ::-1]), "utkface")
    assert np.abs(pose["yaw"] + flipped["yaw"]).mean() < 4.0  # 1.9 degrees on 200 faces
    assert np.abs(pose["pitch"] - flipped["pitch"]).mean() < 4.0
    assert np.isfinite(pose["roll"]).all()


def test_bad_inputs_raise_clear_errors(agegender, headpose):
    with pytest.raises(ImageError, match="empty batch"):
        agegender.predict([])
    with pytest.raises(ImageError, match="empty batch"):
        headpose.predict(np.zeros((0, 64, 64, 3), np.uint8))
    with pytest.raises(ImageError, match="smaller than 16"):
        agegender.predict(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ImageError, match="H x W x 3"):
        agegender.predict(np.zeros((2, 64, 64, 4), np.uint8))
    with pytest.raises(ImageError, match="uint8"):
        agegender.predict(np.zeros((64, 64, 3), np.float64))
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        agegender.predict(torch.full((1, 3, 64, 64), 255.0))
    with pytest.raises(ImageError, match="float"):
        agegender.predict(torch.zeros((1, 3, 64, 64), dtype=torch.uint8))
    with pytest.raises(UnknownNameError, match="utkface"):
        headpose.predict(np.zeros((64, 64, 3), np.uint8), layout="no-such-layout")


def _pattern(h: int, w: int) -> torch.Tensor:
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    values = (3 * y + 5 * x + 71 * c + (x * y) % 17) % 256
    return torch.from_numpy(values.astype(np.float32)).permute(2, 0, 1)[None] / 255


# Reference outputs of @vladmandic/face-api 1.7.15 on TensorFlow.js 4.22 (CPU backend, Node.js 20) for
# _pattern(h, w): age, P(male), landmarks 0, 30, 67 in pixels (face-api's relative points times w, h).
FACEAPI_REFERENCE = {
    (112, 112): (15.902023, 0.9492990, [[38.949660, 37.894509], [70.894547, 62.635866], [73.015623, 57.414432]]),
    (112, 101): (14.710054, 0.9539059, [[29.649608, 38.806846], [64.275285, 57.892293], [69.146357, 49.034951]]),
}


@pytest.mark.parametrize("size", list(FACEAPI_REFERENCE))
def test_ports_match_faceapi_js(headpose, size):
    from probes.labellers.age_gender import AgeGenderLabeller

    age, p_male, points = FACEAPI_REFERENCE[size]
    x = _pattern(*size)
    as_runtime = AgeGenderLabeller(input_divisor=255)  # the runtime's divisor; face-api.js's is 256
    out = as_runtime.predict(x)
    assert out["age"][0] == pytest.approx(age, abs=1e-3)
    assert out["p_male"][0] == pytest.approx(p_male, abs=1e-5)
    got = headpose.landmarks.predict(x)[0, [0, 30, 67]]
    # face-api subtracts |w - h| / 2 = 5.5 as the pad; the pad really added before is 5
    shift = [(size[0] - size[1]) % 2 * 0.5, 0.0]
    np.testing.assert_allclose(got, np.asarray(points) + shift, atol=2e-3)
