"""SSD MobileNet V1 from face-api.js: face boxes in whole images, decoded from its manifest.

face-api.js's accurate face detector (``ssdMobilenetv1/``: ``mobileNetV1``, ``predictionLayer``,
``boxPredictionLayer``, ``outputLayer``, ``nonMaxSuppression``), TensorFlow's Object Detection API
SSD on a MobileNet V1 trunk, trained on WIDER FACE:

- input: zero-pad the image to a square at the **bottom/right**, bilinear resize to 512 x 512
  (TF.js ``resizeBilinear`` without half-pixel centres), then ``x / 127.5 - 1``;
- trunk: ``conv_0`` 3x3 stride-2 SAME conv + offset, ReLU6; then 13 pairs of a 3x3 depthwise
  conv (SAME; stride 2 in pairs 2, 4, 6 and 12) with batch norm (eps 1e-3) and ReLU6, and a 1x1
  conv + offset with ReLU6 (32 ... 1024 channels: 32 x 32 x 512 after pair 11, 16 x 16 x 1024
  after pair 13);
- extra layers: 8 convs + offset + ReLU6 (1x1, then 3x3 stride 2, four times): 8 x 8, 4 x 4,
  2 x 2, 1 x 1;
- six box predictors (1x1 conv + bias) on pair 11's output, pair 13's and the four odd extra
  layers: 3 anchors per cell on the first, 6 on the others, 5,118 anchors in all, each with 4 box
  encodings and 3 class logits (face score = sigmoid of the logit at index 1);
- decoding against the anchors shipped in the weights (``Output/extra_dim``, [ymin, xmin, ymax,
  xmax] of the square input): centre += (t_y / 10, t_x / 10) x anchor size, size = anchor size x
  exp(t_h / 5, t_w / 5);
- anchors scoring **above** ``min_confidence`` go through greedy NMS (IoU > 0.5 drops a box; at
  most 100 kept); boxes are clipped to the square input and mapped back to the image.

Boxes come back in the caller's image pixels (the image spans [0, W] x [0, H]) as
``(x0, y0, x1, y1, score)``, best first. The net sees every image at 512 x 512: small images are
upscaled to it (a 64 x 64 thumbnail works) and large ones shrunk, so a face much smaller than its
smallest anchors (0.1 of the side) is lost; and faces that span more than about a third of the
input are found less often than smaller ones (without a border face-api misses a third of LFW's
250 x 250 frames, whose faces span ~40%): ``pad`` adds a black border, ``merge_pads`` adds passes
with other borders, ``fallback_pads`` retries the images where nothing was found (see
:class:`~.detector.BoxDetector` and :data:`probes.align.DETECTORS`).

Checked against @vladmandic/face-api 1.7.15 on TensorFlow.js 4.22 (Node.js, CPU backend) by
``benchmarks/faceapi_reference.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightFileError
from ..tfjs import conv_filter, depthwise_filter
from .detector import BoxDetector, nms, resize_bilinear_tf, square_bottom_right
from .faceapi import SameConv2d, load_faceapi_weights, pad_same

MANIFEST = "ssd_mobilenetv1_model-weights_manifest.json"
SHARD = "ssd_mobilenetv1_model.bin"
INPUT_SIZE = 512
NUM_ANCHORS = 5118
BN_EPSILON = 0.0010000000474974513  # face-api's mobileNetV1.ts
# (channels out, depthwise stride) of the 13 depthwise/pointwise pairs after conv_0 (32 channels).
TRUNK = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
         (512, 1), (1024, 2), (1024, 1))
# (kernel, channels out, stride) of the extra layers conv_0 .. conv_7 on the trunk's 1024 channels.
EXTRA = ((1, 256, 1), (3, 512, 2), (1, 128, 1), (3, 256, 2), (1, 128, 1), (3, 256, 2), (1, 64, 1), (3, 128, 2))
# (input channels, anchors per cell) of box predictors 0-5: on trunk pair 11, pair 13, extra conv_1, 3, 5, 7.
PREDICTORS = ((512, 3), (1024, 6), (512, 6), (256, 6), (256, 6), (128, 6))
# Graph constants of the converted TF model that face-api reads nothing from.
UNUSED_TENSORS = ("Preprocessor/", "Postprocessor/", "concat_1/axis", "/stack", "/strided_slice")


class PointwiseConv(SameConv2d):
    """face-api's ``pointwiseConvLayer``: conv (SAME) + batch-norm offset as a bias, ReLU6."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(super().forward(x), inplace=True)


class FrozenBatchNorm(nn.Module):
    """TF.js ``batchNorm`` with fixed statistics: (x - mean) / sqrt(variance + eps) x scale + offset."""

    def __init__(self, channels: int, eps: float = BN_EPSILON):
        super().__init__()
        self.eps = eps
        for field in ("scale", "offset", "mean", "variance"):
            self.register_buffer(field, torch.ones(channels) if field in ("scale", "variance")
                                 else torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.mean, self.variance, self.scale, self.offset, False, 0.0, self.eps)


class DepthwiseConv(nn.Module):
    """face-api's ``depthwiseConvLayer``: 3x3 depthwise conv (SAME, no bias), batch norm, ReLU6.

    The frozen batch norm is a per-channel scale and shift, so it is folded into the conv's weights
    and bias on each call (one pass over the activations instead of two; the same numbers within
    float rounding).
    """

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.conv = SameConv2d(channels, channels, 3, stride, groups=channels, bias=False)
        self.batch_norm = FrozenBatchNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn, conv = self.batch_norm, self.conv
        k = bn.scale * torch.rsqrt(bn.variance + bn.eps)
        x = x if conv.pads_itself else pad_same(x, 3, conv.stride[0])
        out = F.conv2d(x, conv.weight * k.view(-1, 1, 1, 1), bn.offset - bn.mean * k, conv.stride, conv.padding,
                       groups=conv.groups)
        return F.relu6(out, inplace=True)


class ConvPair(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.depthwise_conv = DepthwiseConv(cin, stride)
        self.pointwise_conv = PointwiseConv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class MobileNetV1(nn.Module):
    """The trunk: normalised N x 3 x 512 x 512 -> (N x 1024 x 16 x 16, pair 11's N x 512 x 32 x 32)."""

    def __init__(self):
        super().__init__()
        self.conv_0 = PointwiseConv(3, 32, 3, stride=2)
        cin = 32
        for i, (cout, stride) in enumerate(TRUNK, start=1):
            setattr(self, f"conv_{i}", ConvPair(cin, cout, stride))
            cin = cout

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.conv_0(x)
        conv11 = out
        for i in range(1, len(TRUNK) + 1):
            out = getattr(self, f"conv_{i}")(out)
            if i == 11:
                conv11 = out
        return out, conv11


class BoxPredictor(nn.Module):
    """1x1 convs + bias: 4 box encodings and 3 class logits per anchor of every cell."""

    def __init__(self, cin: int, anchors: int):
        super().__init__()
        self.box_encoding_predictor = nn.Conv2d(cin, anchors * 4, 1)
        self.class_predictor = nn.Conv2d(cin, anchors * 3, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        # TF's NHWC reshape: anchors run fastest, then columns, then rows.
        boxes = self.box_encoding_predictor(x).permute(0, 2, 3, 1).reshape(n, -1, 4)
        classes = self.class_predictor(x).permute(0, 2, 3, 1).reshape(n, -1, 3)
        return boxes, classes


class PredictionLayer(nn.Module):
    """Extra layers and box predictors: (trunk output, pair 11) -> (N x 5118 x 4 encodings, N x 5118 x 3 logits)."""

    def __init__(self):
        super().__init__()
        cin = 1024
        for i, (kernel, cout, stride) in enumerate(EXTRA):
            setattr(self, f"conv_{i}", PointwiseConv(cin, cout, kernel, stride=stride))
            cin = cout
        for i, (channels, anchors) in enumerate(PREDICTORS):
            setattr(self, f"box_predictor_{i}", BoxPredictor(channels, anchors))

    def forward(self, x: torch.Tensor, conv11: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        extra = []
        out = x
        for i in range(len(EXTRA)):
            out = getattr(self, f"conv_{i}")(out)
            extra.append(out)
        maps = (conv11, x, extra[1], extra[3], extra[5], extra[7])
        parts = [getattr(self, f"box_predictor_{i}")(m) for i, m in enumerate(maps)]
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)


class SsdMobilenetV1(nn.Module):
    """Normalised N x 3 x 512 x 512 -> (N x 5118 x 4 box encodings, N x 5118 x 3 class logits).

    ``output_layer.extra_dim`` holds the 5,118 anchors ([ymin, xmin, ymax, xmax] of the input square)
    shipped with the weights.
    """

    def __init__(self):
        super().__init__()
        self.mobilenetv1 = MobileNetV1()
        self.prediction_layer = PredictionLayer()
        self.output_layer = nn.Module()
        self.output_layer.register_buffer("extra_dim", torch.zeros(NUM_ANCHORS, 4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, conv11 = self.mobilenetv1(x)
        return self.prediction_layer(out, conv11)

    @property
    def anchors(self) -> torch.Tensor:
        return self.output_layer.extra_dim


def decode_boxes(encodings: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """face-api's ``decodeBoxesLayer``: (..., 5118, 4) encodings -> [ymin, xmin, ymax, xmax] of the input square."""
    size = anchors[:, 2:] - anchors[:, :2]
    centre = anchors[:, :2] + size / 2
    half = torch.exp(encodings[..., 2:] / 5) * size / 2
    mid = encodings[..., :2] / 10 * size + centre
    return torch.cat([mid - half, mid + half], -1)


def ssd_to_state(tensors: Mapping[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """The SSD manifest's TF Object Detection names -> :class:`SsdMobilenetV1` state-dict keys."""
    state: dict[str, np.ndarray] = {}
    bn_fields = {"gamma": "scale", "beta": "offset", "moving_mean": "mean", "moving_variance": "variance"}
    for name, value in tensors.items():
        parts = name.split("/")
        if name == "Output/extra_dim":
            state["output_layer.extra_dim"] = value.reshape(NUM_ANCHORS, 4)
        elif parts[0] in ("MobilenetV1", "Prediction") and parts[1].startswith("Conv2d_"):
            index, kind = parts[1][len("Conv2d_"):].split("_", 1)
            prefix = f"mobilenetv1.conv_{index}" if parts[0] == "MobilenetV1" else f"prediction_layer.conv_{index}"
            if parts[0] == "MobilenetV1" and index != "0":
                prefix += ".pointwise_conv" if kind == "pointwise" else ".depthwise_conv"
            if parts[2] == "weights":
                state[f"{prefix}.weight"] = conv_filter(value)
            elif parts[2] == "convolution_bn_offset":
                state[f"{prefix}.bias"] = value
            elif parts[2] == "depthwise_weights":
                state[f"{prefix}.conv.weight"] = depthwise_filter(value)
            elif parts[2] == "BatchNorm" and parts[3] in bn_fields:
                state[f"{prefix}.batch_norm.{bn_fields[parts[3]]}"] = value
            else:
                raise WeightFileError(f"{source}: unexpected tensor {name!r}")
        elif parts[0] == "Prediction" and parts[1].startswith("BoxPredictor_") and parts[-1] in ("weights", "biases"):
            head = {"BoxEncodingPredictor": "box_encoding_predictor", "ClassPredictor": "class_predictor"}.get(parts[2])
            if head is None:
                raise WeightFileError(f"{source}: unexpected tensor {name!r}")
            key = f"prediction_layer.box_predictor_{parts[1][len('BoxPredictor_'):]}.{head}"
            state[f"{key}.weight" if parts[-1] == "weights" else f"{key}.bias"] = (
                conv_filter(value) if parts[-1] == "weights" else value)
        elif not any(marker in name for marker in UNUSED_TENSORS):
            raise WeightFileError(f"{source}: unexpected tensor {name!r}")
    return state


class SsdFaceDetector(BoxDetector):
    """face-api.js's SsdMobilenetv1: ``detect(image) -> (K, 5) [x0, y0, x1, y1, score]`` in pixels.

    ``min_confidence`` (face-api's default 0.5; a box must score above it), ``iou_threshold`` (0.5)
    and ``max_results`` (100) are face-api's. ``pad`` adds a black border of ``pad`` x the longer
    side on every side before detection (boxes still come back in the original image's pixels);
    ``merge_pads`` are further borders whose detections are merged in, and images without a face
    are tried again with each of ``fallback_pads`` (:class:`~.detector.BoxDetector`). The SSD finds
    faces that fill much of the frame less often (LFW frames, UTKFace crops) and small faces only
    without a border; see :data:`probes.align.DETECTORS` for the setting
    :func:`probes.align.detect_and_align` uses. The defaults here are face-api's (one pass, no border).

    Speed on CPU: the net sees ``forward_batch`` images per pass (1 by default: a 512 x 512 pass costs
    6.3 GFLOP and its activations, 64 x 256 x 256 floats and more per image, outgrow the caches in
    batches, so larger batches cost more per image on CPU; None runs each batch at once), with the
    activations in ``channels_last`` layout (oneDNN's native one; the contiguous layout gives the same
    numbers within 1e-5). benchmarks/detectors.py measures both.
    """

    name = "faceapi-ssd-mobilenetv1"

    def __init__(self, min_confidence: float = 0.5, iou_threshold: float = 0.5, max_results: int = 100,
                 pad: float = 0.0, merge_pads: tuple = (), fallback_pads: tuple = (),
                 weights: str | Path | None = None, pretrained: bool = True, device: str | torch.device = "cpu",
                 forward_batch: int | None = 1, channels_last: bool = True):
        super().__init__()
        if forward_batch is not None and (not isinstance(forward_batch, int) or forward_batch < 1):
            raise ValueError(f"forward_batch must be a positive integer or None, got {forward_batch!r}")
        if not 0.0 < min_confidence < 1.0:
            raise ValueError(f"min_confidence must lie in (0, 1), got {min_confidence}")
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
        if not isinstance(max_results, int) or max_results < 1:
            raise ValueError(f"max_results must be a positive integer, got {max_results!r}")
        self.min_confidence = float(min_confidence)
        self.iou_threshold = float(iou_threshold)
        self.max_results = max_results
        self.set_pads(pad, merge_pads, fallback_pads)
        self.input_size = INPUT_SIZE  # the shipped anchors are those of a 512 x 512 input
        self.net = SsdMobilenetV1()
        self.weights_id = (load_faceapi_weights(self.net, MANIFEST, SHARD, weights, to_state=ssd_to_state)
                           if pretrained else "random-init")
        self.forward_batch = forward_batch
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(device)
        self.net.to(memory_format=self.memory_format)
        self.eval()

    def preprocess(self, image: np.ndarray, pad: float | None = None) -> torch.Tensor:
        """uint8 H x W x 3 -> normalised 1 x 3 x 512 x 512 (``pad`` border, face-api's bottom/right square pad)."""
        x = resize_bilinear_tf(square_bottom_right(self.bordered(image, pad)), self.input_size)
        return x / 127.5 - 1.0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised N x 3 x S x S -> (N x A x 4 boxes [ymin, xmin, ymax, xmax] of the square, N x A scores).

        The net runs on :attr:`forward_batch` images at a time (all at once when None) in
        :attr:`memory_format`.
        """
        step = self.forward_batch or max(len(x), 1)
        parts = [self.net(x[i:i + step].contiguous(memory_format=self.memory_format)) for i in range(0, len(x), step)]
        encodings, logits = (torch.cat(outputs) for outputs in zip(*parts))
        anchors = self.net.anchors
        if encodings.shape[1] != anchors.shape[0]:
            raise ValueError(f"input {x.shape[-1]} x {x.shape[-2]} gives {encodings.shape[1]} anchors, the "
                             f"weights have {anchors.shape[0]}: the SSD takes {INPUT_SIZE} x {INPUT_SIZE} inputs")
        return decode_boxes(encodings, anchors), torch.sigmoid(logits[..., 1])

    def split(self, raw) -> list:
        boxes, scores = raw
        return list(zip(boxes, scores))

    def decode(self, raw, height: int, width: int) -> np.ndarray:
        """One image's (boxes, scores) -> (K, 5) boxes in pixels of the (bordered) image, after NMS."""
        boxes = raw[0].double().cpu().numpy()
        scores = raw[1].double().cpu().numpy()
        candidates = np.flatnonzero(scores > self.min_confidence)
        if not len(candidates):
            return np.zeros((0, 5))
        keep = candidates[nms(boxes[candidates], scores[candidates], self.iou_threshold, self.max_results,
                              ties="earlier")]
        # face-api clips to the square input, then measures boxes in the resized (unpadded) image,
        # whose size it rounds half away from zero.
        side = max(height, width)
        fx = self.input_size / math.floor(width * self.input_size / side + 0.5) * width
        fy = self.input_size / math.floor(height * self.input_size / side + 0.5) * height
        top_left = np.maximum(boxes[keep, :2], 0.0)
        bottom_right = np.minimum(boxes[keep, 2:], 1.0)
        return np.stack([top_left[:, 1] * fx, top_left[:, 0] * fy, bottom_right[:, 1] * fx, bottom_right[:, 0] * fy,
                         scores[keep]], 1)
