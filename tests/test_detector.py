"""TinyFaceDetector port and detection-based alignment (probes.labellers.detector, probes.align)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from probes.align import detect_and_align
from probes.errors import ImageError, NoFaceError
from probes.geometry import five_points
from probes.labellers.detector import (
    ANCHORS,
    FaceDetector,
    TinyYoloNet,
    nms,
    resize_bilinear_tf,
)
from probes.tfjs import conv_filter, depthwise_filter, read_weights_manifest

# ---- no weights needed -------------------------------------------------------------------------


def test_net_maps_input_sizes_to_the_yolo_grid():
    net = TinyYoloNet().eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 416, 416)).shape == (1, 5 * len(ANCHORS), 13, 13)
        assert net(torch.zeros(2, 3, 224, 224)).shape == (2, 25, 7, 7)


def test_resize_is_tfjs_legacy_bilinear():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    # source coordinate i * in / out, no half-pixel shift, last pixel repeated
    assert torch.allclose(resize_bilinear_tf(x, 8)[0, 0, 0], torch.tensor([0, .5, 1, 1.5, 2, 2.5, 3, 3]))
    assert torch.allclose(resize_bilinear_tf(x, 2)[0, 0, 0], torch.tensor([0.0, 2.0]))


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = np.array([0.6, 0.9, 0.7, 0.6])
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    # face-api keeps a box whose IoU equals the threshold, and breaks score ties towards the later box
    touching = np.array([[0, 0, 10, 10], [0, 0, 4, 10.0]])  # IoU 0.4
    assert nms(touching, np.array([0.9, 0.8]), 0.4).tolist() == [0, 1]
    assert nms(boxes[[0, 3]], scores[[0, 3]], 0.4).tolist() == [1]


def test_bad_settings_and_inputs_are_refused():
    with pytest.raises(ValueError, match="multiple of 32"):
        FaceDetector(input_size=300, pretrained=False)
    with pytest.raises(ValueError, match="score_threshold"):
        FaceDetector(score_threshold=1.5, pretrained=False)
    det = FaceDetector(pretrained=False)
    with pytest.raises(ImageError, match="uint8"):
        det.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ImageError, match="H x W x 3"):
        det.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(ImageError, match="detect\\(\\)"):
        det.detect_batch(np.zeros((64, 64, 3), np.uint8))


# ---- with the face-api weights -----------------------------------------------------------------


@pytest.fixture(scope="module")
def detector(faceapi_weights):
    from probes import weights

    try:
        weights.weight_path("tiny_face_detector_model-weights_manifest.json")
        weights.weight_path("tiny_face_detector_model.bin")
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        pytest.skip(f"TinyFaceDetector weights unavailable: {exc}")
    return FaceDetector()


@pytest.fixture(scope="module")
def crop_detector(detector):
    """The setting for tight face crops: 224 input, black border of half the side."""
    return FaceDetector(input_size=224, pad=0.5)


def test_manifest_loads_into_the_port(detector):
    from probes import weights

    tensors = read_weights_manifest(weights.weight_path("tiny_face_detector_model-weights_manifest.json"))
    net = detector.net
    assert tensors["conv0/filters"].shape == (3, 3, 3, 16) and tensors["conv8/filters"].shape == (1, 1, 512, 25)
    np.testing.assert_array_equal(net.conv0.weight.detach().numpy(), conv_filter(tensors["conv0/filters"]))
    np.testing.assert_array_equal(net.conv3.depthwise.weight.detach().numpy(),
                                  depthwise_filter(tensors["conv3/depthwise_filter"]))
    np.testing.assert_array_equal(net.conv5.pointwise.bias.detach().numpy(), tensors["conv5/bias"])
    assert sum(p.numel() for p in net.parameters()) == sum(t.size for t in tensors.values())


def test_noise_and_flat_images_have_no_face(detector):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (240, 200, 3), dtype=np.uint8)
    flat = np.full((128, 160, 3), 128, np.uint8)
    assert [len(b) for b in detector.detect_batch([noise, flat])] == [0, 0]


def _check_one_central_box(boxes, image):
    h, w = image.shape[:2]
    assert len(boxes) == 1, boxes
    x0, y0, x1, y1, score = boxes[0]
    assert score > 0.5
    assert abs((x0 + x1) / 2 - w / 2) < 0.15 * w and abs((y0 + y1) / 2 - h / 2) < 0.15 * h
    assert 0.3 * w < x1 - x0 < 1.3 * w and 0.3 * h < y1 - y0 < 1.3 * h


def test_one_face_found_in_the_centre_of_real_images(detector, crop_detector, faces):
    for image, boxes in zip(faces["lfw"], detector.detect_batch(faces["lfw"])):
        _check_one_central_box(boxes, image)
    for image in faces["utk"]:
        _check_one_central_box(crop_detector.detect(image), image)


def test_pad_maps_boxes_back_to_the_original_frame(crop_detector, faces):
    image = faces["utk"][0]
    border = crop_detector.border(*image.shape[:2])
    padded = np.pad(image, ((border, border), (border, border), (0, 0)))
    plain = FaceDetector(input_size=224, pad=0.0)
    expected = plain.detect(padded)
    expected[:, :4] -= border
    np.testing.assert_allclose(crop_detector.detect(image), expected, atol=1e-6)


def test_detect_and_align_puts_eyes_on_the_template(crop_detector, landmarks, faces):
    from probes.backbones import (
        dlib_resnet,  # the spec alone: no other backbone is imported
    )

    spec = dlib_resnet.SPEC
    paths = [str(p) for p in faces["paths"]]
    result = detect_and_align(paths, spec, detector=crop_detector, landmarks=landmarks)
    assert result.chips.shape == (len(paths), *spec.input_size, 3) and result.chips.dtype == np.uint8
    assert result.index.tolist() == list(range(len(paths))) and result.missing.size == 0
    assert result.landmarks.shape == (len(paths), 68, 2) and result.matrices.shape == (len(paths), 2, 3)
    # the landmark net, run again on the chips, finds the eyes where the template puts them
    points = five_points(landmarks.predict(result.chips, layout="chip"))
    eye_error = np.linalg.norm(points[:, :2] - np.asarray(spec.align_template)[:2], axis=2)
    assert eye_error.max() < 6.0 and eye_error.mean() < 4.0, eye_error


def test_missing_faces_raise_or_are_skipped(crop_detector, landmarks, faces, tmp_path):
    from probes.geometry import ARCFACE_TEMPLATE_112

    noise_path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (180, 180, 3), dtype=np.uint8)).save(noise_path)
    face = faces["utk"][1]
    with pytest.raises(NoFaceError, match="noise.png") as info:
        detect_and_align([Path(faces["paths"][0]), noise_path], ARCFACE_TEMPLATE_112, (112, 112),
                         detector=crop_detector, landmarks=landmarks)
    assert info.value.missing == [str(noise_path)] and isinstance(info.value, ImageError)
    grey = np.full((150, 170, 3), 90, np.uint8)
    with pytest.raises(NoFaceError, match=r"image\(s\): 1$"):
        detect_and_align([face, grey], ARCFACE_TEMPLATE_112, (112, 112), detector=crop_detector,
                         landmarks=landmarks)
    with pytest.warns(UserWarning, match="no face detected in 1 of 3"):
        result = detect_and_align([face, grey, face], ARCFACE_TEMPLATE_112, (112, 112), detector=crop_detector,
                                  landmarks=landmarks, on_missing="skip")
    assert result.index.tolist() == [0, 2] and result.missing.tolist() == [1] and result.missing_names == [1]
    assert result.chips.shape == (2, 112, 112, 3)
    np.testing.assert_array_equal(result.chips[0], result.chips[1])  # same face, same chip
    with pytest.raises(ValueError, match="on_missing"):
        detect_and_align([face], ARCFACE_TEMPLATE_112, (112, 112), detector=crop_detector, landmarks=landmarks,
                         on_missing="ignore")
