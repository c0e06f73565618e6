"""TinyFaceDetector from face-api.js: face boxes in whole images, decoded from its manifest.

Architecture (face-api.js ``TinyYolov2Base.runMobilenet`` with the
``TinyFaceDetector`` config: separable convs, first layer a plain conv,
filter sizes 3-16-32-64-128-256-512, no conv6/conv7):

- input: zero-pad the image to a square at the **bottom/right** (not centred),
  bilinear resize to ``input_size`` (TF.js ``resizeBilinear`` without
  half-pixel centres), subtract RGB mean [117.001, 114.697, 97.404], divide by
  256;
- ``conv0`` 3x3 VALID conv + bias, leaky ReLU (slope 0.1); then five times a
  2x2 max-pool (stride 2, SAME: -inf padding after) followed by a separable
  conv (depthwise 3x3 with zero padding 1 + pointwise 1x1 + bias, leaky ReLU);
  after ``conv5`` a 2x2 stride-1 SAME max-pool keeps the grid (13 x 13 for a
  416 input); ``conv8`` 1x1 conv + bias -> 25 channels = 5 anchors
  x (tx, ty, tw, th, score);
- decoding (YOLOv2): centre ``((col, row) + sigmoid(tx, ty)) / cells``, size
  ``exp(tw, th) * anchor / cells`` (fractions of the square input, corrected
  for the padding), score ``sigmoid(score)``; boxes scoring **above**
  ``score_threshold`` go through greedy non-maximum suppression that drops
  any box with IoU > ``iou_threshold`` to a better one.

Boxes come back in the caller's image pixels (the image spans [0, W] x [0, H])
as ``(x0, y0, x1, y1, score)``, best first, not clipped to the frame.

Checked against @vladmandic/face-api 1.7.15 on TensorFlow.js 4.22 (Node.js,
CPU backend), 22 images (face-api.js's 6-face test photo, UTKFace crops, LFW
frames, odd non-square sizes, noise) at input sizes 416 and 224: the same
detections, boxes within 6e-4 px, scores within 5e-6, raw outputs within
1.4e-4. That runtime divides the input by 255 where the original face-api.js
divides by 256; ``input_divisor`` selects either (256, the original, by
default; it moves boxes by <= 0.5 px and scores by <= 0.003).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ImageError
from ..nn import evaluating
from .faceapi import MIN_SIDE, SeparableConv, load_faceapi_weights, max_pool_same

MANIFEST = "tiny_face_detector_model-weights_manifest.json"
SHARD = "tiny_face_detector_model.bin"
MEAN_RGB = (117.001, 114.697, 97.404)
# (width, height) of the 5 anchor boxes in grid cells, from face-api.js's tinyFaceDetector/const.ts.
ANCHORS = ((1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061),
           (4.266906, 5.178857), (9.041765, 10.66308))
CHANNELS = (16, 32, 64, 128, 256, 512)
LEAK = 0.1


class TinyYoloNet(nn.Module):
    """Normalised N x 3 x S x S input (S a multiple of 32) -> N x 25 x S/32 x S/32 raw outputs."""

    def __init__(self, num_anchors: int = len(ANCHORS)):
        super().__init__()
        self.conv0 = nn.Conv2d(3, CHANNELS[0], 3)  # VALID: face-api passes 'valid' here
        for i in range(1, len(CHANNELS)):
            setattr(self, f"conv{i}", SeparableConv(CHANNELS[i - 1], CHANNELS[i]))
        self.conv8 = nn.Conv2d(CHANNELS[-1], num_anchors * 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv0(x), LEAK)
        for i in range(1, len(CHANNELS)):
            x = max_pool_same(x, 2, 2)
            x = F.leaky_relu(getattr(self, f"conv{i}")(x), LEAK)
        x = max_pool_same(x, 2, 1)  # keeps the grid: 13 x 13 for a 416 input
        return self.conv8(x)


def resize_bilinear_tf(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF.js ``resizeBilinear(x, [size, size], alignCorners=false, halfPixelCenters=false)``.

    Source coordinate of output pixel ``i`` is ``i * in / out`` (no half-pixel
    shift, no antialiasing), as face-api.js resizes tensor inputs.
    """

    def axis(n_in: int, dim: int, t: torch.Tensor) -> torch.Tensor:
        if n_in == size:
            return t
        pos = torch.arange(size, dtype=torch.float64) * (n_in / size)
        lo = pos.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        frac = (pos - lo).to(t.dtype)
        shape = [1] * t.ndim
        shape[dim] = size
        frac = frac.view(shape)
        return t.index_select(dim, lo) * (1 - frac) + t.index_select(dim, hi) * frac

    return axis(x.shape[-1], -1, axis(x.shape[-2], -2, x))


def square_bottom_right(x: torch.Tensor) -> torch.Tensor:
    """N x C x H x W zero-padded at the bottom or right to a square (face-api's ``padToSquare`` uncentred)."""
    h, w = x.shape[-2:]
    side = max(h, w)
    return F.pad(x, (0, side - w, 0, side - h)) if h != w else x


def check_image(image, name) -> np.ndarray:
    """A detector's input as a uint8 H x W x 3 array; anything else is an :class:`ImageError` naming ``name``."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ImageError(f"image {name}: must be H x W x 3 RGB, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ImageError(f"image {name}: must be uint8 0..255, got {array.dtype}")
    if min(array.shape[:2]) < MIN_SIDE:
        raise ImageError(f"image {name}: {array.shape[1]}x{array.shape[0]} is smaller than {MIN_SIDE} px")
    return array


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_output: int | None = None,
        ties: str = "later") -> np.ndarray:
    """Greedy non-maximum suppression as face-api.js does it: indices kept, best first.

    A box is dropped when its IoU with a better kept box is **above** ``iou_threshold``;
    boxes of zero area overlap nothing. Among equal scores ``ties="later"`` ranks the
    later box first (the TinyFaceDetector sorts ascending and pops from the end),
    ``ties="earlier"`` the earlier one (the SSD sorts descending, stably). At most
    ``max_output`` boxes are kept.
    """
    if ties not in ("later", "earlier"):
        raise ValueError(f"ties must be 'later' or 'earlier', got {ties!r}")
    ranked = np.argsort(scores, kind="stable")[::-1] if ties == "later" else np.argsort(-scores, kind="stable")
    order = list(ranked)
    lo = np.minimum(boxes[:, :2], boxes[:, 2:4])
    hi = np.maximum(boxes[:, :2], boxes[:, 2:4])
    area = np.prod(hi - lo, axis=1)
    keep = []
    while order and (max_output is None or len(keep) < max_output):
        best = order.pop(0)
        keep.append(best)
        if not order:
            break
        rest = np.asarray(order)
        sides = np.maximum(0.0, np.minimum(hi[best], hi[rest]) - np.maximum(lo[best], lo[rest]))
        inter = sides[:, 0] * sides[:, 1]
        union = area[best] + area[rest] - inter
        degenerate = (area[rest] <= 0) | (area[best] <= 0)
        iou = np.where(degenerate, 0.0, inter / np.where(degenerate, 1.0, union))
        order = [i for i, o in zip(order, iou) if o <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


class BoxDetector(nn.Module):
    """What face detectors share: ``detect(image) -> (K, 5) [x0, y0, x1, y1, score]`` in the image's pixels,
    best first, and :meth:`detect_batch` over images of any size.

    ``pad`` adds a black border of ``pad`` x the longer side on every side before detection (the
    boxes come back in the original image's pixels): face-api's detectors miss faces that fill their
    input. Each image is also run with every border of ``merge_pads``, and the detections of all
    these passes are merged by NMS (a border helps large faces and hurts small ones: no border
    keeps the small faces of a group photo). Images in which nothing is found are tried again with
    each of ``fallback_pads`` in turn (e.g. a wider border for a crop that is all face).
    Subclasses define :meth:`preprocess` (one uint8 image and a pad -> a 1 x 3 x S x S input),
    ``forward`` (a batch of inputs -> raw outputs), :meth:`split` (raw outputs -> one per image) and
    :meth:`decode` (one image's raw output -> boxes in the bordered image's pixels).
    """

    name = "detector"
    pad = 0.0
    merge_pads: tuple[float, ...] = ()
    fallback_pads: tuple[float, ...] = ()
    iou_threshold = 0.5

    def set_pads(self, pad: float, merge_pads=(), fallback_pads=()) -> None:
        """Check and set :attr:`pad`, :attr:`merge_pads` and :attr:`fallback_pads` (each in [0, 4])."""
        checked = {}
        for name, values in (("pad", (pad,)), ("merge_pads", merge_pads), ("fallback_pads", fallback_pads)):
            checked[name] = tuple(float(v) for v in values)
            for value in checked[name]:
                if not 0.0 <= value <= 4.0:
                    raise ValueError(f"{name} must lie in [0, 4] (a fraction of the longer side), got {value}")
        self.pad = checked["pad"][0]
        self.merge_pads = checked["merge_pads"]
        self.fallback_pads = checked["fallback_pads"]

    def border(self, height: int, width: int, pad: float | None = None) -> int:
        """Pixels of black border ``pad`` (default :attr:`pad`) adds on each side of an image of this size."""
        return math.floor((self.pad if pad is None else pad) * max(height, width) + 0.5)

    def bordered(self, image: np.ndarray, pad: float | None = None) -> torch.Tensor:
        """uint8 H x W x 3 -> float 1 x 3 x H' x W' with the ``pad`` border, on the detector's device."""
        b = self.border(*image.shape[:2], pad)
        device = next(iter(self.buffers()), torch.empty(0)).device
        # np.array copies: inputs may be read-only, which torch.from_numpy warns about
        x = torch.from_numpy(np.array(image, np.float32)).to(device).permute(2, 0, 1)[None]
        return F.pad(x, (b, b, b, b)) if b else x

    def preprocess(self, image: np.ndarray, pad: float | None = None) -> torch.Tensor:
        raise NotImplementedError

    def split(self, raw) -> list:
        """The raw outputs of a batch, one item per image."""
        return list(raw)

    def decode(self, raw, height: int, width: int) -> np.ndarray:
        raise NotImplementedError

    @torch.no_grad()
    def detect(self, image) -> np.ndarray:
        """(K, 5) float64 array of [x0, y0, x1, y1, score], best first; K = 0 when no face is found."""
        return self.detect_batch([image])[0]

    @torch.no_grad()
    def detect_batch(self, images: Sequence, batch_size: int = 16) -> list[np.ndarray]:
        """:meth:`detect` for each image of a list (any sizes) or an N x H x W x 3 array."""
        return self.detect_with_pads(images, batch_size)[0]

    @torch.no_grad()
    def detect_with_pads(self, images: Sequence, batch_size: int = 16) -> tuple[list[np.ndarray], list]:
        """:meth:`detect_batch`, and for each image the border that found its faces: :attr:`pad` for the
        first round (with :attr:`merge_pads`), a fallback pad, or None when none was found."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise ImageError("detect_batch takes a list of images or an N x H x W x 3 array; "
                             "use detect() for one image")
        images = [check_image(image, i) for i, image in enumerate(images)]
        results = [np.zeros((0, 5)) for _ in images]
        pads: list = [None] * len(images)
        todo = list(range(len(images)))
        with evaluating(self):
            for round_pads in ((self.pad, *self.merge_pads), *((p,) for p in self.fallback_pads)):
                found = {i: [] for i in todo}
                for pad in round_pads:
                    for start in range(0, len(todo), batch_size):
                        part = todo[start:start + batch_size]
                        raw = self(torch.cat([self.preprocess(images[i], pad) for i in part]))
                        for r, i in zip(self.split(raw), part):
                            h, w = images[i].shape[:2]
                            b = self.border(h, w, pad)
                            boxes = self.decode(r, h + 2 * b, w + 2 * b)
                            boxes[:, :4] -= b
                            found[i].append(boxes)
                for i, parts in found.items():
                    results[i] = self.merge(parts)
                    pads[i] = round_pads[0] if len(results[i]) else None
                todo = [i for i in todo if pads[i] is None]
                if not todo:
                    break
        return results, pads

    def merge(self, parts: list[np.ndarray]) -> np.ndarray:
        """One image's detections from several borders as one (K, 5) array: NMS at :attr:`iou_threshold`."""
        if len(parts) == 1:
            return parts[0]
        boxes = np.concatenate(parts)
        return boxes[nms(boxes[:, :4], boxes[:, 4], self.iou_threshold, ties="earlier")] if len(boxes) else boxes


class FaceDetector(BoxDetector):
    """face-api.js's TinyFaceDetector: ``detect(image) -> (K, 5) [x0, y0, x1, y1, score]`` in pixels.

    ``input_size`` (a multiple of 32; face-api's presets are 224, 320, 416,
    608) trades speed for small faces; ``score_threshold`` and
    ``iou_threshold`` are face-api's defaults.

    The net misses faces that fill most of its input (tight face crops):
    ``pad`` adds a black border of
    ``pad`` x the longer side on every side before detection (boxes still come
    back in the original image's pixels). For face crops and portrait frames
    ``input_size=224, pad=0.5`` found a face in 199 of 200 UTKFace crops and
    199 of 200 LFW frames, against 28 and 186 with face-api's 416 / no pad.
    """

    name = "faceapi-tinyfacedetector"

    def __init__(self, input_size: int = 416, score_threshold: float = 0.5, iou_threshold: float = 0.4,
                 pad: float = 0.0, weights: str | Path | None = None, pretrained: bool = True,
                 input_divisor: float = 256.0, device: str | torch.device = "cpu", merge_pads: tuple = (),
                 fallback_pads: tuple = ()):
        super().__init__()
        if not isinstance(input_size, int) or input_size < 32 or input_size % 32:
            raise ValueError(f"input_size must be a positive multiple of 32, got {input_size!r}")
        if not 0.0 < score_threshold < 1.0:
            raise ValueError(f"score_threshold must lie in (0, 1), got {score_threshold}")
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
        self.set_pads(pad, merge_pads, fallback_pads)
        self.input_size = input_size
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.input_divisor = float(input_divisor)
        self.net = TinyYoloNet()
        self.weights_id = load_faceapi_weights(self.net, MANIFEST, SHARD, weights) if pretrained else "random-init"
        self.register_buffer("_mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_anchors", torch.tensor(ANCHORS), persistent=False)
        self.to(device)
        self.eval()

    def preprocess(self, image: np.ndarray, pad: float | None = None) -> torch.Tensor:
        """uint8 H x W x 3 -> normalised 1 x 3 x S x S (``pad`` border, then face-api's bottom/right square pad)."""
        x = square_bottom_right(self.bordered(image, pad))
        x = resize_bilinear_tf(x, self.input_size)
        return (x - self._mean) / self.input_divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised N x 3 x S x S -> N x anchors x S/32 x S/32 x 5 raw (tx, ty, tw, th, score)."""
        out = self.net(x)
        n, _, rows, cols = out.shape
        return out.view(n, len(ANCHORS), 5, rows, cols).permute(0, 1, 3, 4, 2)

    def decode(self, raw: torch.Tensor, height: int, width: int) -> np.ndarray:
        """One image's raw output (anchors x rows x cols x 5) -> (K, 5) boxes in pixels after NMS."""
        rows, cols = raw.shape[1:3]
        raw = raw.double()
        scores = torch.sigmoid(raw[..., 4])
        mask = scores > self.score_threshold
        if not bool(mask.any()):
            return np.zeros((0, 5))
        # face-api measures boxes in the resized (unpadded) image: its size is rounded half up.
        scale = self.input_size / max(height, width)
        fx = self.input_size / math.floor(width * scale + 0.5)
        fy = self.input_size / math.floor(height * scale + 0.5)
        anchor, row, col = mask.nonzero(as_tuple=True)
        t = raw[anchor, row, col]
        cx = (col + torch.sigmoid(t[:, 0])) / cols * fx
        cy = (row + torch.sigmoid(t[:, 1])) / rows * fy
        bw = torch.exp(t[:, 2]) * self._anchors[anchor, 0].double() / cols * fx
        bh = torch.exp(t[:, 3]) * self._anchors[anchor, 1].double() / rows * fy
        x0, y0 = cx - bw / 2, cy - bh / 2
        boxes = torch.stack([x0 * width, y0 * height, (x0 + bw) * width, (y0 + bh) * height], 1).cpu().numpy()
        sc = scores[anchor, row, col].cpu().numpy()
        # face-api visits cells row, col, anchor; keep that order so equal scores resolve as in face-api.
        visit = np.lexsort((anchor.cpu().numpy(), col.cpu().numpy(), row.cpu().numpy()))
        boxes, sc = boxes[visit], sc[visit]
        keep = nms(boxes, sc, self.iou_threshold)
        return np.concatenate([boxes[keep], sc[keep, None]], 1)
