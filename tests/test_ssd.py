"""SSD MobileNet V1 port (probes.labellers.ssd), detector choice and the multi-face rule (probes.align)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from probes.align import (
    DEFAULT_DETECTOR,
    DETECTORS,
    SELECT_RULES,
    FaceAligner,
    create_detector,
    detect_and_align,
    selection_values,
)
from probes.errors import ImageError, NoFaceError, UnknownNameError, WeightFileError
from probes.labellers.detector import FaceDetector, nms
from probes.labellers.ssd import (
    NUM_ANCHORS,
    MobileNetV1,
    SsdFaceDetector,
    SsdMobilenetV1,
    decode_boxes,
    ssd_to_state,
)

# ---- no weights needed -------------------------------------------------------------------------


def test_net_shapes_follow_face_api():
    net = SsdMobilenetV1().eval()
    with torch.no_grad():
        out, conv11 = net.mobilenetv1(torch.zeros(1, 3, 512, 512))
        assert out.shape == (1, 1024, 16, 16) and conv11.shape == (1, 512, 32, 32)
        boxes, classes = net(torch.zeros(2, 3, 512, 512))
    # 32*32*3 + (16*16 + 8*8 + 4*4 + 2*2 + 1) * 6 anchors
    assert boxes.shape == (2, NUM_ANCHORS, 4) and classes.shape == (2, NUM_ANCHORS, 3)
    assert isinstance(net.mobilenetv1, MobileNetV1)


def test_zero_encodings_decode_to_the_anchors():
    anchors = torch.tensor([[0.1, 0.2, 0.3, 0.6], [0.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(decode_boxes(torch.zeros(2, 4), anchors), anchors)
    # t_y = 10 moves the centre by one anchor height; t_h = 5 ln 2 doubles the height
    moved = decode_boxes(torch.tensor([[10.0, 0.0, 5 * math.log(2.0), 0.0]]), anchors[:1])
    torch.testing.assert_close(moved, torch.tensor([[0.2, 0.2, 0.6, 0.6]]))


def test_nms_ties_order_and_limits():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 40, 50.0]])
    scores = np.array([0.8, 0.8, 0.7, 0.9])
    # the SSD keeps the earlier of two equal boxes, the tiny detector the later; a box of zero area
    # overlaps nothing
    assert nms(boxes, scores, 0.5, ties="earlier").tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.5, ties="later").tolist() == [3, 1, 2]
    assert nms(boxes, scores, 0.5, max_output=2, ties="earlier").tolist() == [3, 0]
    with pytest.raises(ValueError, match="ties"):
        nms(boxes, scores, 0.5, ties="first")


def test_passes_with_several_borders_merge_by_nms():
    det = SsdFaceDetector(pad=0.75, merge_pads=[0.0], fallback_pads=[1.5], pretrained=False)
    assert (det.pad, det.merge_pads, det.fallback_pads) == (0.75, (0.0,), (1.5,))
    bordered = np.array([[10, 10, 50, 50, 0.7], [100, 100, 120, 120, 0.6]])
    plain = np.array([[11, 10, 51, 50, 0.9], [200, 200, 230, 230, 0.8]])
    merged = det.merge([bordered, plain])
    np.testing.assert_array_equal(merged, np.array([[11, 10, 51, 50, 0.9], [200, 200, 230, 230, 0.8],
                                                    [100, 100, 120, 120, 0.6]]))
    assert det.merge([np.zeros((0, 5)), np.zeros((0, 5))]).shape == (0, 5)
    with pytest.raises(ValueError, match="merge_pads must lie in"):
        SsdFaceDetector(merge_pads=[5.0], pretrained=False)


def test_manifest_names_map_to_the_port_or_are_refused():
    tensors = {"MobilenetV1/Conv2d_3_depthwise/BatchNorm/moving_variance": np.ones(128, np.float32),
               "MobilenetV1/Conv2d_0_pointwise/weights": np.zeros((3, 3, 3, 32), np.float32),
               "Prediction/BoxPredictor_5/ClassPredictor/biases": np.zeros(18, np.float32),
               "Prediction/Conv2d_7_pointwise/convolution_bn_offset": np.zeros(128, np.float32),
               "Preprocessor/mul/x": np.ones((), np.float32)}
    state = ssd_to_state(tensors, "m.json")
    assert set(state) == {"mobilenetv1.conv_3.depthwise_conv.batch_norm.variance", "mobilenetv1.conv_0.weight",
                          "prediction_layer.box_predictor_5.class_predictor.bias",
                          "prediction_layer.conv_7.bias"}
    assert state["mobilenetv1.conv_0.weight"].shape == (32, 3, 3, 3)
    assert set(state) <= set(SsdMobilenetV1().state_dict())
    with pytest.raises(WeightFileError, match="m.json.*Mystery/weights"):
        ssd_to_state({"Mystery/weights": np.zeros(1)}, "m.json")


def test_bad_settings_and_inputs_are_refused():
    with pytest.raises(ValueError, match="min_confidence"):
        SsdFaceDetector(min_confidence=1.5, pretrained=False)
    with pytest.raises(ValueError, match="pad"):
        SsdFaceDetector(pad=-1, pretrained=False)
    with pytest.raises(ValueError, match="takes 512 x 512 inputs"):
        SsdFaceDetector(pretrained=False)(torch.zeros(1, 3, 256, 256))
    with pytest.raises(ValueError, match="max_results"):
        SsdFaceDetector(max_results=0, pretrained=False)
    det = SsdFaceDetector(pretrained=False)
    with pytest.raises(ImageError, match="image 0: 10x12 is smaller than 16 px"):
        det.detect(np.zeros((12, 10, 3), np.uint8))
    with pytest.raises(ImageError, match="uint8"):
        det.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ImageError, match="image 1: must be H x W x 3"):
        det.detect_batch([np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8)])
    with pytest.raises(UnknownNameError, match="unknown detector 'yolo'; known: ssd, tiny"):
        create_detector("yolo")


def test_selection_rules_on_made_up_detections():
    # (H, W) = (200, 300): a sure face at the edge, a large one off centre, a fair one at the centre
    boxes = np.array([[0, 0, 40, 40, 0.99], [160, 40, 300, 200, 0.90], [130, 80, 170, 120, 0.80]])
    picks = {rule: int(np.argmax(selection_values(boxes, (200, 300), rule))) for rule in SELECT_RULES}
    assert picks == {"score-centre": 2, "largest": 1, "best": 0, "centre": 2}
    # closeness falls linearly from 1 at the centre to 0 at a corner
    np.testing.assert_allclose(selection_values(boxes, (200, 300), "score-centre")[2], 0.80)
    assert selection_values(boxes[:1], (200, 300), "score-centre")[0] < 0.99 * 0.2
    with pytest.raises(ValueError, match="select must be one of"):
        selection_values(boxes, (200, 300), "nearest")


# ---- with the face-api weights -----------------------------------------------------------------


@pytest.fixture(scope="module")
def ssd(ssd_weights):
    return SsdFaceDetector()


@pytest.fixture(scope="module")
def padded_ssd(ssd):
    """The setting detect_and_align uses."""
    return create_detector("ssd")


def test_manifest_loads_into_the_port(ssd):
    from probes import weights
    from probes.tfjs import conv_filter, read_weights_manifest

    tensors = read_weights_manifest(weights.weight_path("ssd_mobilenetv1_model-weights_manifest.json"))
    net = ssd.net
    np.testing.assert_array_equal(net.mobilenetv1.conv_13.pointwise_conv.weight.detach().numpy(),
                                  conv_filter(tensors["MobilenetV1/Conv2d_13_pointwise/weights"]))
    np.testing.assert_array_equal(net.mobilenetv1.conv_5.depthwise_conv.batch_norm.mean.numpy(),
                                  tensors["MobilenetV1/Conv2d_5_depthwise/BatchNorm/moving_mean"])
    np.testing.assert_array_equal(net.anchors.numpy(), tensors["Output/extra_dim"][0])
    loaded = sum(v.numel() for v in net.state_dict().values())
    used = sum(t.size for name, t in tensors.items() if "/stack" not in name and "/strided_slice" not in name
               and not name.startswith(("Preprocessor/", "Postprocessor/", "concat_1")))
    assert loaded == used
    assert ssd.weights_id == weights.WEIGHT_FILES["ssd_mobilenetv1_model.bin"].sha256


# Final detections of @vladmandic/face-api 1.7.15 (SsdMobilenetv1.locateFaces, minConfidence 0.5) on
# TensorFlow.js 4.22 (CPU backend, Node.js 20), from benchmarks/faceapi_reference.py:
# image -> [x0, y0, x1, y1, score] of its best face.
FACEAPI_SSD = {
    "lfw_home/lfw/Faye_Alibocus/Faye_Alibocus_0001.jpg":
        [71.99878990650177, 68.97737085819244, 170.782208442688, 180.11178076267242, 0.9963480830192566],
    "lfw_home/lfw/Salma_Hayek/Salma_Hayek_0013.jpg":
        [81.19778335094452, 75.2154141664505, 170.99647223949432, 180.72544038295746, 0.9979518055915833],
}


@pytest.mark.data
def test_port_matches_faceapi_js_on_real_images(ssd, data_root):
    from probes.images import load_image

    for name, expected in FACEAPI_SSD.items():
        found = ssd.detect(load_image(data_root / name))
        assert len(found) >= 1, name
        np.testing.assert_allclose(found[0, :4], expected[:4], atol=0.05)
        assert found[0, 4] == pytest.approx(expected[4], abs=1e-4)


def _check_one_central_box(boxes, image):
    h, w = image.shape[:2]
    assert len(boxes) == 1, boxes
    x0, y0, x1, y1, score = boxes[0]
    assert score > 0.5
    assert abs((x0 + x1) / 2 - w / 2) < 0.15 * w and abs((y0 + y1) / 2 - h / 2) < 0.15 * h
    assert 0.25 * w < x1 - x0 < 1.3 * w and 0.25 * h < y1 - y0 < 1.3 * h


@pytest.mark.data
def test_one_central_face_in_real_images(padded_ssd, faces):
    for image, boxes in zip(faces["lfw"] + faces["utk"], padded_ssd.detect_batch(faces["lfw"] + faces["utk"])):
        _check_one_central_box(boxes, image)


@pytest.mark.data
def test_small_images_are_upscaled_to_the_input(padded_ssd, faces):
    """A 64 x 64 thumbnail of an LFW frame: the net sees it at 512 x 512 and finds the same face."""
    frame = faces["lfw"][0]
    small = np.asarray(Image.fromarray(frame).resize((64, 64), Image.BILINEAR))
    big = padded_ssd.detect(frame)
    found = padded_ssd.detect(small)
    assert len(found) == 1
    assert _iou(found[0, :4] * 250 / 64, big[0, :4]) > 0.8  # 0.90 here


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


@pytest.mark.data
def test_default_detector_is_the_cascade_and_each_detector_is_selectable(landmarks):
    from probes.align import CascadeDetector
    from probes.geometry import ARCFACE_TEMPLATE_112

    assert DEFAULT_DETECTOR == "tiny+ssd" and set(DETECTORS) == {"ssd", "tiny", "tiny+ssd"}
    default = FaceAligner(ARCFACE_TEMPLATE_112, (112, 112), landmarks=landmarks).detector
    assert isinstance(default, CascadeDetector) and default.found_by == ["tiny", "ssd"]
    assert isinstance(default.stages[1][1], SsdFaceDetector)
    tiny = FaceAligner(ARCFACE_TEMPLATE_112, (112, 112), landmarks=landmarks, detector="tiny").detector
    assert isinstance(tiny, FaceDetector) and tiny.input_size == 224 and tiny.pad == 0.5
    assert tiny.fallback_pads == (1.0,)
    ssd = FaceAligner(ARCFACE_TEMPLATE_112, (112, 112), landmarks=landmarks, detector="ssd").detector
    assert isinstance(ssd, SsdFaceDetector)


@pytest.mark.data
def test_multi_face_choice_on_a_composite(padded_ssd, landmarks, faces):
    """Two faces in one picture: a large one in the corner, a smaller one in the centre."""
    from probes.geometry import ARCFACE_TEMPLATE_112

    face = faces["lfw"][1][40:210, 40:210]  # 170 x 170 around Colin Powell's face
    canvas = np.full((720, 960, 3), 60, np.uint8)
    canvas[0:340, 0:340] = np.asarray(Image.fromarray(face).resize((340, 340), Image.BILINEAR))
    canvas[275:445, 395:565] = face  # centred
    common = {"detector": padded_ssd, "landmarks": landmarks}
    by_rule = {}
    for rule in ("score-centre", "largest"):
        result = detect_and_align([canvas], ARCFACE_TEMPLATE_112, (112, 112), options=_options(rule), **common)
        assert len(result.detections[0]) == 2 and result.select == rule
        box = result.boxes[0]
        by_rule[rule] = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        assert "2 faces found" in result.why(0) and rule in result.why(0)
    assert np.hypot(by_rule["score-centre"][0] - 480, by_rule["score-centre"][1] - 360) < 40
    assert by_rule["largest"][0] < 340 and by_rule["largest"][1] < 340


def _options(rule):
    from probes.align import DetectionOptions

    return DetectionOptions(select=rule)


@pytest.mark.data
def test_no_face_and_tiny_images_are_clear_errors(padded_ssd, landmarks, faces, tmp_path):
    from probes.geometry import ARCFACE_TEMPLATE_112

    noise_path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 240, 3), dtype=np.uint8)).save(noise_path)
    flat = np.full((128, 160, 3), 128, np.uint8)
    assert [len(b) for b in padded_ssd.detect_batch([np.asarray(Image.open(noise_path)), flat])] == [0, 0]
    with pytest.raises(NoFaceError, match=r"no face detected in 1 of 2 image\(s\): 1 \(.*noise.png\)"):
        detect_and_align([faces["paths"][0], noise_path], ARCFACE_TEMPLATE_112, (112, 112),
                         detector=padded_ssd, landmarks=landmarks)
    with pytest.raises(ImageError, match="image 1: 12x9 is smaller than 16 px"):
        detect_and_align([faces["lfw"][0], np.zeros((9, 12, 3), np.uint8)], ARCFACE_TEMPLATE_112, (112, 112),
                         detector=padded_ssd, landmarks=landmarks)
    tiny_path = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((10, 40, 3), np.uint8)).save(tiny_path)
    with pytest.raises(ImageError, match=r"tiny.png: image is 40x10, smaller than 16 px"):
        detect_and_align([faces["paths"][0], tiny_path], ARCFACE_TEMPLATE_112, (112, 112), detector=padded_ssd,
                         landmarks=landmarks)
    with pytest.raises(UnknownNameError, match="unknown detector 'ssd2'"):
        detect_and_align([faces["lfw"][0]], ARCFACE_TEMPLATE_112, (112, 112), detector="ssd2", landmarks=landmarks)


@pytest.mark.data
def test_detect_and_align_with_the_ssd_puts_eyes_on_the_template(padded_ssd, landmarks, faces):
    from probes.backbones import dlib_resnet
    from probes.geometry import five_points

    spec = dlib_resnet.SPEC
    paths = [str(p) for p in faces["paths"]]
    result = detect_and_align(paths, spec, detector=padded_ssd, landmarks=landmarks)
    assert result.chips.shape == (len(paths), *spec.input_size, 3) and result.missing.size == 0
    assert result.chosen.tolist() == [0] * len(paths) and "the only face found" in result.why(0)
    points = five_points(landmarks.predict(result.chips, layout="chip"))
    eye_error = np.linalg.norm(points[:, :2] - np.asarray(spec.align_template)[:2], axis=2)
    assert eye_error.max() < 6.0 and eye_error.mean() < 4.0, eye_error


# ---- the fast path gives the plain path's numbers -------------------------------------------------


def test_same_conv_pads_itself_only_where_tf_same_is_symmetric():
    from probes.labellers.faceapi import SameConv2d, pad_same

    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 8)
    for stride, symmetric in ((1, True), (2, False)):
        conv = SameConv2d(4, 4, 3, stride, groups=4)
        assert conv.pads_itself is symmetric
        expected = torch.nn.functional.conv2d(pad_same(x, 3, stride), conv.weight, conv.bias, stride, groups=4)
        torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-6)


def test_depthwise_layer_folds_its_batch_norm_exactly():
    from probes.labellers.ssd import DepthwiseConv

    torch.manual_seed(1)
    layer = DepthwiseConv(6, stride=2)
    bn = layer.batch_norm
    bn.scale.uniform_(0.5, 2.0)
    bn.offset.normal_()
    bn.mean.normal_()
    bn.variance.uniform_(0.1, 3.0)
    x = torch.randn(2, 6, 10, 10) * 3
    plain = torch.clamp(torch.nn.functional.batch_norm(layer.conv(x), bn.mean, bn.variance, bn.scale, bn.offset,
                                                       False, 0.0, bn.eps), 0, 6)
    assert (plain > 0).any() and (plain < 6).any() and (plain == 6).any()  # all three parts of ReLU6 are used
    torch.testing.assert_close(layer(x), plain, rtol=1e-5, atol=1e-5)


def test_one_image_per_pass_in_channels_last_gives_the_batched_numbers():
    torch.manual_seed(2)
    fast = SsdFaceDetector(pretrained=False)
    plain = SsdFaceDetector(pretrained=False, forward_batch=None, channels_last=False)
    plain.load_state_dict(fast.state_dict())
    assert fast.forward_batch == 1 and fast.memory_format == torch.channels_last
    x = torch.rand(3, 3, 512, 512) * 2 - 1
    with torch.no_grad():
        (boxes_a, scores_a), (boxes_b, scores_b) = fast(x), plain(x)
    assert boxes_a.shape == (3, NUM_ANCHORS, 4) and scores_a.shape == (3, NUM_ANCHORS)
    torch.testing.assert_close(boxes_a, boxes_b, rtol=0, atol=1e-4)
    torch.testing.assert_close(scores_a, scores_b, rtol=0, atol=1e-5)
    # images stay in their places: the second image alone gives the second row
    with torch.no_grad():
        torch.testing.assert_close(fast(x[1:2])[1][0], scores_a[1], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="forward_batch"):
        SsdFaceDetector(pretrained=False, forward_batch=0)


# ---- cascades -------------------------------------------------------------------------------------


class _FakeStage:
    """Finds a face in the images whose top-left pixel is in ``finds``; remembers what it was shown."""

    def __init__(self, finds, pad):
        self.finds, self.pad, self.seen = set(finds), pad, []

    def detect_with_pads(self, images, batch_size=16):
        marks = [int(im[0, 0, 0]) for im in images]
        self.seen.append(marks)
        boxes = [np.array([[10.0, 10, 50, 50, 0.9]]) if m in self.finds else np.zeros((0, 5)) for m in marks]
        return boxes, [self.pad if m in self.finds else None for m in marks]


def test_cascade_tries_later_detectors_only_where_earlier_ones_found_nothing():
    from probes.align import CascadeDetector

    first, second = _FakeStage({0, 2}, 0.5), _FakeStage({1}, 0.75)
    cascade = CascadeDetector([("fast", first), ("slow", second)])
    images = [np.full((64, 64, 3), i, np.uint8) for i in range(4)]
    boxes, found = cascade.detect_with_pads(images)
    assert first.seen == [[0, 1, 2, 3]] and second.seen == [[1, 3]]
    assert found == [("fast", 0.5), ("slow", 0.75), ("fast", 0.5), None]
    assert [len(b) for b in boxes] == [1, 1, 1, 0] and cascade.found_by == ["fast", "slow"]
    assert [len(b) for b in cascade.detect_batch(images)] == [1, 1, 1, 0]
    with pytest.raises(ValueError, match="at least one detector"):
        CascadeDetector([])
    assert DETECTORS["tiny+ssd"][1] == {"stages": ("tiny", "ssd")}


@pytest.mark.data
def test_aligned_faces_say_which_detector_found_them(landmarks, faces):
    from probes.align import CascadeDetector
    from probes.geometry import ARCFACE_TEMPLATE_112

    never = _FakeStage(set(), 0.5)
    cascade = CascadeDetector([("never", never), "tiny"])
    result = detect_and_align([faces["lfw"][0]], ARCFACE_TEMPLATE_112, (112, 112), detector=cascade,
                              landmarks=landmarks)
    assert result.found_by == ["tiny (border 0.5)"]
    assert "the only face found by tiny (border 0.5)" in result.why(0)
