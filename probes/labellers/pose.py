"""``faceapi-headpose``: estimated head pose (yaw, pitch, roll in degrees) from 68 landmarks.

No data set here has ground-truth pose, so these are *estimates*: the 68
points of :class:`~.landmarks.LandmarkDetector` are fitted by a scaled
orthographic (weak-perspective) PnP solve to the 3D mean face that
insightface ships (``insightface/data/objects/meanshape_68.pkl``). Weak
perspective suits face crops (the face is shallow next to its distance to
the camera) and needs no focal length.

Conventions (camera frame: x to the image's right, y down, z into the scene):

- ``yaw`` > 0: the face is turned towards its own left, i.e. the nose points
  to the image's right. A mirrored image gives the opposite yaw.
- ``pitch`` > 0: the face is tilted up (nose towards the image's top).
- ``roll`` > 0: the face is rotated clockwise in the image (its own left eye,
  on the image's right, lower). Mirroring flips roll too; pitch stays.

The angles are intrinsic Y-X-Z Euler angles of the fitted rotation. The mean
shape is made exactly left-right symmetric before fitting, so the solve
itself is mirror-antisymmetric; any residual asymmetry comes from the
landmark network. The jaw contour (points 0-16) is left out by default: it is
the visible silhouette, which slides over the face as it turns, not a fixed
set of 3D points; with it, yaw shrinks by about a third (the silhouette
stays wide) while the mirror check still holds.

Known bias: face-api's points and the mean face differ in proportions, which
the fit reads as a tilt: on UTKFace's mostly frontal portraits the median
pitch is about -15 degrees. Use pitch relative to a reference set, not as an
absolute angle. Yaw and roll keep their sign and mirror symmetry (the mean
face is symmetric), but their scale is only as good as the mean face.
"""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation
from torch import nn

from ..errors import WeightFileError
from ..geometry import Crop
from ..safe_pickle import NumpyOnlyUnpickler
from .landmarks import NUM_POINTS, LandmarkDetector
from .registry import LabellerSpec, register_labeller

MEANSHAPE = "meanshape_68.pkl"

# iBUG 68-point left-right correspondence (point i <-> MIRROR_68[i]).
MIRROR_68 = np.array(
    list(range(16, -1, -1))                      # jaw
    + list(range(26, 16, -1))                    # brows
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]    # nose bridge, nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65])          # inner lips
INNER_POINTS = tuple(range(17, NUM_POINTS))  # all but the jaw contour


def insightface_meanshape_path() -> Path:
    """Path of insightface's ``meanshape_68.pkl`` (found without importing insightface)."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise WeightFileError("the insightface package is not installed; it ships the 3D mean face "
                              f"({MEANSHAPE}) the head-pose estimator needs (pip install insightface)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "objects" / MEANSHAPE
    if not path.is_file():
        raise WeightFileError(f"{path} is missing; reinstall insightface (>= 0.7)")
    return path


def load_meanshape(path: str | Path | None = None) -> np.ndarray:
    """The (68, 3) mean face, in a camera-style frame: x right, y down, z into the scene.

    insightface stores z towards the viewer; it is negated here so that the
    frame is right-handed like the camera's.
    """
    path = Path(path) if path is not None else insightface_meanshape_path()
    try:
        with open(path, "rb") as handle:
            shape = np.asarray(NumpyOnlyUnpickler(handle, str(path)).load(), dtype=np.float64)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
        raise WeightFileError(f"{path}: not a readable mean-shape pickle ({exc})") from exc
    if shape.shape != (NUM_POINTS, 3) or not np.isfinite(shape).all():
        raise WeightFileError(f"{path}: expected a finite (68, 3) array, got shape {shape.shape}")
    return shape * np.array([1.0, 1.0, -1.0])


def symmetrise(shape: np.ndarray) -> np.ndarray:
    """Average a 68-point shape with its mirror image (x -> -x, left/right points swapped)."""
    mirrored = shape[MIRROR_68] * np.array([-1.0, 1.0, 1.0])
    return (shape + mirrored) / 2.0


def _fit_one(model: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Rotation of the scaled-orthographic fit ``s * R[:2] @ X + t ~ points`` (both centred)."""
    X = model - model.mean(0)
    u = points - points.mean(0)
    # Closed-form start: least-squares affine camera, projected onto scaled rotations.
    affine = np.linalg.lstsq(X, u, rcond=None)[0].T  # 2 x 3
    U, S, Vt = np.linalg.svd(affine, full_matrices=False)
    rows = U @ Vt
    start = np.vstack([rows, np.cross(rows[0], rows[1])])
    scale0 = S.mean()

    def residuals(params: np.ndarray) -> np.ndarray:
        rot = Rotation.from_rotvec(params[:3]).as_matrix() @ start
        return (np.exp(params[3]) * X @ rot[:2].T - u).ravel()

    fit = least_squares(residuals, np.array([0.0, 0.0, 0.0, np.log(scale0)]), method="lm")
    return Rotation.from_rotvec(fit.x[:3]).as_matrix() @ start


def pose_from_landmarks(points: np.ndarray, meanshape: np.ndarray | None = None,
                        use: Sequence[int] = INNER_POINTS) -> dict[str, np.ndarray]:
    """Yaw, pitch, roll (degrees, float32) of N x 68 x 2 image points (x right, y down).

    ``meanshape`` is a (68, 3) model in the camera-style frame (default:
    insightface's, symmetrised); ``use`` picks the points that enter the fit.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (NUM_POINTS, 2):
        raise ValueError(f"landmarks must be N x 68 x 2, got shape {points.shape}")
    model = symmetrise(load_meanshape()) if meanshape is None else np.asarray(meanshape, np.float64)
    idx = np.asarray(use)
    angles = np.zeros((len(points), 3))
    for i, pts in enumerate(points):
        rot = _fit_one(model[idx], pts[idx])
        # Intrinsic Y-X-Z: R = Ry(a) Rx(b) Rz(c); the face's forward axis is -z in its frame.
        a, b, c = Rotation.from_matrix(rot).as_euler("YXZ")
        angles[i] = (-a, -b, c)
    angles = np.degrees(angles).astype(np.float32)
    return {"yaw": angles[:, 0], "pitch": angles[:, 1], "roll": angles[:, 2]}


class HeadPoseEstimator(nn.Module):
    """Estimated yaw/pitch/roll (degrees) of face crops: landmarks, then a weak-perspective PnP."""

    name = "faceapi-headpose"
    attributes = ("yaw", "pitch", "roll")

    def __init__(self, weights: str | Path | None = None, pretrained: bool = True,
                 crops: Mapping[str, Crop] | None = None, device: str | torch.device = "cpu",
                 meanshape: str | Path | None = None, use: Sequence[int] = INNER_POINTS):
        super().__init__()
        self.landmarks = LandmarkDetector(weights, pretrained=pretrained, crops=crops, device=device)
        self.meanshape = symmetrise(load_meanshape(meanshape))
        self.use = tuple(int(i) for i in use)
        if not self.use or min(self.use) < 0 or max(self.use) >= NUM_POINTS or len(self.use) < 6:
            raise ValueError(f"use must name at least 6 landmark indices in 0..67, got {self.use}")
        self.weights_id = self.landmarks.weights_id

    @property
    def crops(self) -> dict[str, Crop]:
        return self.landmarks.crops

    def predict(self, images, layout: str = "chip", batch_size: int = 64) -> dict[str, np.ndarray]:
        """``{"yaw", "pitch", "roll"}``: float32 degrees, one per image."""
        return pose_from_landmarks(self.landmarks.predict(images, layout, batch_size), self.meanshape, self.use)

    def predict_with_landmarks(self, images, layout: str = "chip",
                               batch_size: int = 64) -> tuple[dict[str, np.ndarray], np.ndarray]:
        points = self.landmarks.predict(images, layout, batch_size)
        return pose_from_landmarks(points, self.meanshape, self.use), points


SPEC = register_labeller(LabellerSpec(
    "faceapi-headpose", HeadPoseEstimator, HeadPoseEstimator.attributes,
    "estimated yaw/pitch/roll (degrees) from FaceLandmark68Net's 68 points and a weak-perspective PnP "
    "against insightface's 3D mean face; positive yaw = face turned to its own left",
    "FaceLandmark68Net via @vladmandic/face-api@1.7.15; meanshape_68.pkl from insightface", "MIT"))
