"""Five-point face alignment by a similarity transform (in the manner of insightface's ``norm_crop``).

Faces that are not pre-aligned are mapped onto a backbone's template: five
points (eye centres, nose tip, mouth corners) from the 68 landmarks are fitted
to the template by the least-squares similarity transform (Umeyama 1991,
rotation + uniform scale + shift, no reflection), and the image is warped.

Faces anywhere in an image (not cropped at all) go through
:func:`detect_and_align` / :meth:`FaceAligner.align_unaligned`: a face detector
finds them (by default face-api.js's TinyFaceDetector, and its SSD MobileNet V1
where that finds nothing; either alone by name: :data:`DETECTORS`), one face per
image is chosen by a stated rule
(:data:`SELECT_RULES`), the 68-landmark net runs on a square box around it, and
the five points are warped onto the template as above.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ImageError, NoFaceError, UnknownNameError
from .geometry import five_points, images_to_tensor, similarity_transform, warp_affine
from .images import load_image
from .labellers.detector import BoxDetector, FaceDetector
from .labellers.faceapi import MIN_SIDE
from .labellers.landmarks import LandmarkDetector
from .labellers.ssd import SsdFaceDetector

# The detectors :func:`detect_and_align` builds by name: (class, settings). Both of face-api's
# detectors miss faces that fill their input, so both get a black border of ``pad`` x the longer side:
# - "ssd": SSD MobileNet V1 at 512 x 512. It finds faces best when they span roughly
#   15-35% of its input: on 60 seeded LFW frames / 60 UTKFace crops a border of 0.25 found 58 / 37,
#   0.5 58 / 56, 0.75 60 / 58 and 1.0 50 / 60 (without a border face-api misses many LFW faces).
#   A border shrinks small faces out of reach, so every image also gets a pass without one (a group
#   photo's faces), merged by NMS: two passes per image. Images where neither finds a face are tried
#   again with a border of 1.5 (a crop that is all face). About 0.3 CPU-s per image.
# - "tiny": TinyFaceDetector at 224 (about 30 times faster); the border found a face in 199/200 UTKFace
#   crops and 199/200 LFW frames (face-api's 416 without a border: 28/200 and 186/200); images where it
#   finds nothing are tried again with a border of 1.0 (3 of the 4 UTKFace crops that the tiny detector
#   at 0.5 and the SSD both missed in a 300-crop sample). For small faces in large photos build
#   ``FaceDetector(input_size=416)`` (or 608) and pass it instead.
# - "tiny+ssd" (the default): the tiny detector, and the SSD on the images it finds nothing in
#   (:class:`CascadeDetector`; :attr:`DetectedFaces.found_by` says which found each face). On clean
#   portraits it costs about what the tiny detector costs and finds more than either alone;
#   benchmarks/detectors.py measures all three (benchmarks/README.md).
DETECTORS: dict[str, tuple[type, dict]] = {
    "ssd": (SsdFaceDetector, {"pad": 0.75, "merge_pads": (0.0,), "fallback_pads": (1.5,)}),
    "tiny": (FaceDetector, {"input_size": 224, "pad": 0.5, "fallback_pads": (1.0,)}),
}
DEFAULT_DETECTOR = "tiny+ssd"
# How one face is chosen among an image's detections (see :meth:`FaceAligner.align_unaligned`).
SELECT_RULES = ("score-centre", "largest", "best", "centre")
DEFAULT_SELECT = "score-centre"
LANDMARK_INPUT = 112  # FaceLandmark68Net's input side: face crops are resampled to it once


class FaceAligner:
    """Align faces to a five-point template with the 68-landmark net.

    ``layout`` names the crop the landmark net looks at first (e.g. the centre
    of an LFW frame); the output chips have layout ``"chip"``.
    """

    def __init__(self, template: np.ndarray, size: tuple[int, int], landmarks=None, detector=None):
        """``detector``: a detector object (``detect_batch``), a name in :data:`DETECTORS`, or None
        for :data:`DEFAULT_DETECTOR` (built on first use)."""
        self.template = np.asarray(template, np.float64)
        if self.template.shape != (5, 2):
            raise ValueError(f"template must be 5 x 2 points, got {self.template.shape}")
        self.size = (int(size[0]), int(size[1]))
        if landmarks is None:
            landmarks = LandmarkDetector()
        self.landmarks = landmarks
        self._detector = create_detector(detector) if isinstance(detector, str) else detector

    @classmethod
    def for_backbone(cls, backbone, landmarks=None, detector=None) -> FaceAligner:
        """The aligner that produces ``backbone``'s chips (its template and input size)."""
        spec = getattr(backbone, "spec", backbone)
        if spec.align_template is None:
            raise ValueError(f"backbone {spec.name!r} defines no alignment template")
        return cls(np.asarray(spec.align_template), spec.input_size, landmarks=landmarks, detector=detector)

    @property
    def detector(self):
        """The face detector of :meth:`align_unaligned` (built on first use: see :data:`DETECTORS`)."""
        if self._detector is None:
            self._detector = create_detector(DEFAULT_DETECTOR)
        return self._detector

    def matrices(self, images, layout: str) -> np.ndarray:
        points = five_points(self.landmarks.predict(images, layout=layout))
        return np.stack([similarity_transform(p, self.template) for p in points])

    def align(self, images, layout: str, batch_size: int = 64) -> np.ndarray:
        """uint8 N x H x W x 3 faces -> uint8 N x size x 3 aligned chips."""
        x = images_to_tensor(images)
        if len(x) == 0:
            raise ImageError("empty batch: no images to align")
        chips = []
        for start in range(0, len(x), batch_size):
            part = x[start:start + batch_size]
            warped = warp_affine(part, self.matrices(part, layout), self.size)
            chips.append((warped.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy())
        return np.concatenate(chips)

    def align_unaligned(self, images, select: str = DEFAULT_SELECT, on_missing: str = "raise",
                        names=None, box_scale: float = 1.0, batch_size: int = 32) -> DetectedFaces:
        """Detect, landmark and align one face per image; images may have any size.

        ``images``: a list of uint8 H x W x 3 arrays (sizes may differ), an
        N x H x W x 3 array, or a list of image paths. Where the detector finds
        several faces, one is chosen by ``select`` (:func:`selection_values`):
        ``"score-centre"`` (the default: detector score x closeness of the box
        centre to the image centre, 1 at the centre falling linearly to 0 at a
        corner; photos and LFW frames centre their subject, and a confident
        face near the centre beats a larger or slightly surer one at the
        edge), ``"largest"`` (box area), ``"best"`` (detector score) or
        ``"centre"`` (box centre nearest the image centre). The result records
        every detection, which one was chosen and the rule
        (:meth:`DetectedFaces.why`). The 68-landmark net then sees a square of
        ``box_scale`` x the box's longer side around that box's centre (zeros
        beyond the frame: face-api.js also feeds it the detection box padded
        to a square), and the five points are warped onto the template.

        Images without a detection raise :class:`NoFaceError` naming every
        one of them (``on_missing="raise"``), or are left out and listed in
        the result's ``missing`` with a warning (``on_missing="skip"``).
        """
        if select not in SELECT_RULES:
            raise ValueError(f"select must be one of {SELECT_RULES}, got {select!r}")
        if on_missing not in ("raise", "skip"):
            raise ValueError(f"on_missing must be 'raise' or 'skip', got {on_missing!r}")
        if not box_scale > 0:
            raise ValueError(f"box_scale must be positive, got {box_scale}")
        arrays, names = _image_list(images, names)
        if hasattr(self.detector, "detect_with_pads"):
            all_boxes, passes = self.detector.detect_with_pads(arrays, batch_size=batch_size)
        else:  # any object with detect_batch will do
            all_boxes, passes = self.detector.detect_batch(arrays, batch_size=batch_size), [None] * len(arrays)
        missing = _check_missing(all_boxes, names, on_missing)
        kept = np.asarray([i for i in range(len(arrays)) if len(all_boxes[i])], dtype=np.int64)
        chosen = np.asarray([int(np.argmax(selection_values(all_boxes[i], arrays[i].shape[:2], select)))
                             for i in kept], dtype=np.int64)
        boxes = np.stack([all_boxes[i][c] for i, c in zip(kept, chosen)]) if len(kept) else np.zeros((0, 5))
        points = self._frame_landmarks([arrays[i] for i in kept], boxes, box_scale, batch_size)
        matrices = np.stack([similarity_transform(p, self.template) for p in five_points(points)]) if len(kept) \
            else np.zeros((0, 2, 3))
        chips = self._warp_frames([arrays[i] for i in kept], matrices, batch_size)
        missing_names = [names[i] if names is not None else i for i in missing]
        return DetectedFaces(chips, kept, np.asarray(missing, dtype=np.int64), missing_names, boxes, points, matrices,
                             detections=[all_boxes[i] for i in kept], chosen=chosen, select=select,
                             shapes=[arrays[i].shape[:2] for i in kept],
                             found_by=[_found_by(self.detector, passes[i]) for i in kept])

    def align_landmarked(self, frames, landmarks68: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Chips of ``frames`` (uint8 H x W x 3 arrays, sizes may differ) warped onto this template from
        68 landmarks already found in them (frame pixels, e.g. :attr:`DetectedFaces.landmarks`): one
        detection serves several backbones' templates."""
        frames = [np.asarray(f) for f in frames]
        points = np.asarray(landmarks68, np.float64)
        if len(frames) != len(points):
            raise ValueError(f"{len(points)} landmark sets for {len(frames)} frames")
        if not frames:
            return np.zeros((0, *self.size, 3), np.uint8)
        matrices = np.stack([similarity_transform(p, self.template) for p in five_points(points)])
        return self._warp_frames(frames, matrices, batch_size)

    def _frame_landmarks(self, frames: list[np.ndarray], boxes: np.ndarray, box_scale: float,
                         batch_size: int) -> np.ndarray:
        """(M, 68, 2) landmarks in frame pixels, found on a square crop around each frame's chosen box."""
        points = np.zeros((len(frames), 68, 2), np.float32)
        for start in range(0, len(frames), batch_size):
            part = range(start, min(start + batch_size, len(frames)))
            crops, origins, sides = zip(*(_square_crop(frames[j], boxes[j], box_scale) for j in part))
            found = self.landmarks.predict(torch.cat(crops), layout="chip", batch_size=batch_size)
            scale = np.asarray(sides, np.float32)[:, None, None] / LANDMARK_INPUT
            points[start:start + len(part)] = found * scale + np.asarray(origins, np.float32)[:, None, :]
        return points

    def _warp_frames(self, frames: list[np.ndarray], matrices: np.ndarray, batch_size: int) -> np.ndarray:
        """uint8 chips of ``frames`` warped by ``matrices``, batched among frames of one size."""
        chips = np.zeros((len(frames), *self.size, 3), np.uint8)
        by_shape: dict[tuple, list[int]] = {}
        for j, frame in enumerate(frames):
            by_shape.setdefault(frame.shape, []).append(j)
        for group in by_shape.values():
            for start in range(0, len(group), batch_size):
                js = group[start:start + batch_size]
                x = images_to_tensor(np.stack([frames[j] for j in js]))
                warped = warp_affine(x, matrices[js], self.size)
                chips[js] = (warped.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return chips


@dataclass(frozen=True)
class DetectedFaces:
    """What :meth:`FaceAligner.align_unaligned` found; row ``j`` of each array belongs to input ``index[j]``."""

    chips: np.ndarray  # M x H x W x 3 uint8 aligned chips (layout "chip")
    index: np.ndarray  # (M,) input position of each chip
    missing: np.ndarray  # input positions with no detected face
    missing_names: list  # their paths (or positions when no names were known)
    boxes: np.ndarray  # (M, 5) chosen detection [x0, y0, x1, y1, score] in source pixels
    landmarks: np.ndarray  # (M, 68, 2) points in source pixels
    matrices: np.ndarray  # (M, 2, 3) source pixels -> chip pixels
    detections: list = field(default_factory=list)  # M arrays (K_j, 5): every face the detector found
    chosen: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (M,) row of detections[j] used
    select: str = DEFAULT_SELECT  # the rule that chose it
    shapes: list = field(default_factory=list)  # M (H, W) of the source images
    found_by: list = field(default_factory=list)  # M strings: which detector (and border) found the faces

    def why(self, j: int) -> str:
        """One line saying which face of input ``index[j]`` was aligned and why."""
        found = self.detections[j]
        x0, y0, x1, y1, score = found[self.chosen[j]]
        h, w = self.shapes[j]
        where = (f"box ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}), score {score:.3f}, centre "
                 f"{math.hypot((x0 + x1 - w) / 2, (y0 + y1 - h) / 2):.0f} px from the image centre")
        by = f" by {self.found_by[j]}" if self.found_by else ""
        if len(found) == 1:
            return f"image {self.index[j]}: the only face found{by}: {where}"
        values = selection_values(found, (h, w), self.select)
        return (f"image {self.index[j]}: {len(found)} faces found{by}; chose detection {self.chosen[j]} by "
                f"{self.select!r} ({SELECT_MEANING[self.select]} {values[self.chosen[j]]:.3g}; next best "
                f"{np.sort(values)[-2]:.3g}): {where}")


@dataclass(frozen=True)
class DetectionOptions:
    """How :func:`detect_and_align` picks and crops each image's face (see :meth:`FaceAligner.align_unaligned`):
    the ``select`` rule, the ``box_scale`` of the landmark net's square and the ``batch_size``."""

    select: str = DEFAULT_SELECT
    box_scale: float = 1.0
    batch_size: int = 32


def detect_and_align(images, backbone_or_template, size=None, detector=None, landmarks=None, *,
                     on_missing: str = "raise", names=None, options: DetectionOptions | None = None) -> DetectedFaces:
    """Align faces in uncropped images onto a backbone's (or a given) five-point template.

    ``backbone_or_template``: a backbone or spec with ``align_template`` (its
    input size is used), or a 5 x 2 template in chip pixels with ``size`` =
    (H, W). ``detector``: a name in :data:`DETECTORS` (default ``"tiny+ssd"``:
    the tiny detector, then the SSD where it finds nothing; ``"ssd"`` or
    ``"tiny"`` alone) or a detector object.
    ``result.chips`` are the aligned chips; see
    :meth:`FaceAligner.align_unaligned` for the other arguments (``options``
    carries ``select``, ``box_scale`` and ``batch_size``).
    """
    if hasattr(backbone_or_template, "spec") or hasattr(backbone_or_template, "align_template"):
        aligner = FaceAligner.for_backbone(backbone_or_template, landmarks=landmarks, detector=detector)
        if size is not None and tuple(size) != aligner.size:
            raise ValueError(f"size {tuple(size)} differs from the backbone's input size {aligner.size}")
    else:
        if size is None:
            raise ValueError("a bare template needs size=(H, W) of the chips")
        aligner = FaceAligner(backbone_or_template, size, landmarks=landmarks, detector=detector)
    options = options or DetectionOptions()
    return aligner.align_unaligned(images, select=options.select, on_missing=on_missing, names=names,
                                   box_scale=options.box_scale, batch_size=options.batch_size)


def _found_by(detector, found) -> str:
    """Which detector and border found an image's faces, in words (``found``: its ``detect_with_pads`` entry)."""
    name, pad = found if isinstance(found, tuple) else (getattr(detector, "name", type(detector).__name__), found)
    return name if pad is None else f"{name} (border {pad:g})"


def _check_missing(all_boxes: list[np.ndarray], names, on_missing: str) -> list[int]:
    """Positions of the images without a detection; raises :class:`NoFaceError` naming them, or warns."""
    missing = [i for i, b in enumerate(all_boxes) if len(b) == 0]
    if missing and on_missing == "raise":
        shown = ", ".join(_describe(i, names) for i in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise NoFaceError(f"no face detected in {len(missing)} of {len(all_boxes)} image(s): {shown}{more}",
                          missing=[names[i] if names is not None else i for i in missing])
    if missing:
        # stacklevel 3: the warning names the caller of align_unaligned
        warnings.warn(f"no face detected in {len(missing)} of {len(all_boxes)} image(s), skipped: "
                      + ", ".join(_describe(i, names) for i in missing[:10]), stacklevel=3)
    return missing


def _image_list(images, names) -> tuple[list[np.ndarray], list | None]:
    """Images as a list of H x W x 3 uint8 arrays, plus names for messages (paths when given)."""
    if isinstance(images, torch.Tensor):
        raise ImageError("detect_and_align takes uint8 H x W x 3 arrays or image paths, not tensors")
    if isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim == 3):
        images = [images]  # one image
    images = list(images)
    if not images:
        raise ImageError("empty batch: no images to align")
    if all(isinstance(im, (str, Path)) for im in images):
        names = [str(p) for p in images] if names is None else names
        images = [load_image(p) for p in images]
    if names is not None:
        names = list(names)
        if len(names) != len(images):
            raise ValueError(f"{len(names)} names for {len(images)} images")
    arrays = []
    for i, im in enumerate(images):
        a = np.asarray(im)
        if a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8:
            raise ImageError(f"image {_describe(i, names)}: must be a uint8 H x W x 3 RGB array, "
                             f"got {a.dtype} {a.shape}")
        if min(a.shape[:2]) < MIN_SIDE:
            raise ImageError(f"image {_describe(i, names)}: {a.shape[1]}x{a.shape[0]} is smaller than {MIN_SIDE} px")
        arrays.append(a)
    return arrays, names


def _describe(i: int, names) -> str:
    return f"{i} ({names[i]})" if names is not None else str(i)


SELECT_MEANING = {"score-centre": "score x centrality", "largest": "box area in px^2", "best": "score",
                  "centre": "minus the distance in px of the box centre from the image centre"}


def selection_values(boxes: np.ndarray, shape: tuple[int, int], select: str) -> np.ndarray:
    """What rule ``select`` maximises over an image's (K, 5) detections; ``shape`` is the image's (H, W).

    ``"score-centre"``: score x max(0, 1 - d / r), d the distance of the box centre from the image
    centre and r half the image diagonal; ``"largest"``: box area; ``"best"``: score; ``"centre"``: -d.
    Ties go to the detector's order (best first).
    """
    if select not in SELECT_RULES:
        raise ValueError(f"select must be one of {SELECT_RULES}, got {select!r}")
    h, w = shape
    dist = np.hypot((boxes[:, 0] + boxes[:, 2] - w) / 2, (boxes[:, 1] + boxes[:, 3] - h) / 2)
    if select == "score-centre":
        return boxes[:, 4] * np.maximum(0.0, 1.0 - dist / (math.hypot(w, h) / 2))
    if select == "largest":
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if select == "best":
        return boxes[:, 4].astype(np.float64)
    return -dist


def create_detector(name: str = DEFAULT_DETECTOR, **overrides):
    """The face detector called ``name`` in :data:`DETECTORS`, with its settings (``overrides`` win)."""
    try:
        cls, settings = DETECTORS[name]
    except KeyError:
        raise UnknownNameError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}") from None
    return cls(**{**settings, **overrides})


class CascadeDetector:
    """Detectors tried in turn: an image's faces are those of the first detector that finds any.

    ``stages``: names in :data:`DETECTORS` (or ``(name, detector)`` pairs); ``overrides`` (e.g.
    ``device``) go to every stage built by name. Each later stage sees only the images all earlier
    ones found nothing in, so it costs time only there. :meth:`detect_with_pads` says which stage
    (and which of its borders) found each image's faces.
    """

    name = "cascade"

    def __init__(self, stages=("ssd", "tiny"), **overrides):
        built = [(s, create_detector(s, **overrides)) if isinstance(s, str) else tuple(s) for s in stages]
        if not built:
            raise ValueError("a cascade needs at least one detector")
        self.stages: list[tuple[str, BoxDetector]] = built

    @property
    def found_by(self) -> list[str]:
        """The stage names, in the order they are tried."""
        return [name for name, _ in self.stages]

    def detect(self, image) -> np.ndarray:
        return self.detect_batch([image])[0]

    def detect_batch(self, images, batch_size: int = 16) -> list[np.ndarray]:
        return self.detect_with_pads(images, batch_size)[0]

    def detect_with_pads(self, images, batch_size: int = 16) -> tuple[list[np.ndarray], list]:
        """Each image's (K, 5) boxes and ``(stage name, border)`` of the stage that found them, or None."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise ImageError("detect_batch takes a list of images or an N x H x W x 3 array; "
                             "use detect() for one image")
        images = list(images)
        results = [np.zeros((0, 5)) for _ in images]
        found: list = [None] * len(images)
        todo = list(range(len(images)))
        for name, detector in self.stages:
            if not todo:
                break
            boxes, pads = detector.detect_with_pads([images[i] for i in todo], batch_size)
            for i, b, pad in zip(todo, boxes, pads):
                if pad is not None:
                    results[i], found[i] = b, (name, pad)
            todo = [i for i in todo if found[i] is None]
        return results, found


# Cascades of the detectors above (see :class:`CascadeDetector`): "tiny+ssd" runs the tiny detector and
# the SSD only on the images it finds nothing in.
DETECTORS["tiny+ssd"] = (CascadeDetector, {"stages": ("tiny", "ssd")})


def _square_crop(image: np.ndarray, box: np.ndarray, box_scale: float):
    """1 x 3 x 112 x 112 [0, 1] crop of the square around ``box``; its (x, y) origin and side in pixels."""
    h, w = image.shape[:2]
    side = max(math.floor(box_scale * max(box[2] - box[0], box[3] - box[1]) + 0.5), 8)
    x0 = math.floor((box[0] + box[2] - side) / 2 + 0.5)
    y0 = math.floor((box[1] + box[3] - side) / 2 + 0.5)
    crop = np.zeros((side, side, 3), np.uint8)  # zeros beyond the frame
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div_(255.0)
    if side != LANDMARK_INPUT:
        # as the landmark net's own prepare_input resizes: bilinear, antialiased when shrinking
        x = F.interpolate(x, size=(LANDMARK_INPUT, LANDMARK_INPUT), mode="bilinear", align_corners=False,
                          antialias=side > LANDMARK_INPUT).clamp_(0, 1)
    return x, (float(x0), float(y0)), float(side)
