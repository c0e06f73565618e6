"""Five-point face alignment by a similarity transform (in the manner of insightface's ``norm_crop``).

Faces that are not pre-aligned are mapped onto a backbone's template: five
points (eye centres, nose tip, mouth corners) from the 68 landmarks are fitted
to the template by the least-squares similarity transform (Umeyama 1991,
rotation + uniform scale + shift, no reflection), and the image is warped.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import ImageError

# insightface's ArcFace template for 112 x 112 chips (x, y): eyes, nose, mouth corners.
ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """(N, 68, 2) iBUG points -> (N, 5, 2): image-left eye, image-right eye, nose tip, mouth corners."""
    pts = np.asarray(landmarks68, np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be N x 68 x 2, got {pts.shape}")
    return np.stack([pts[:, 36:42].mean(1), pts[:, 42:48].mean(1), pts[:, 30], pts[:, 48], pts[:, 54]], axis=1)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2 x 3 matrix of the similarity that best maps ``src`` points onto ``dst`` (least squares)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two K x 2 point sets of one shape (K >= 2), got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s ** 2).sum() / len(s)
    if var_s < 1e-12:
        raise ValueError("source points coincide: no transform is defined")
    cov = d.T @ s / len(s)
    u, sigma, vt = np.linalg.svd(cov)
    flip = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        flip[1, 1] = -1  # keep a rotation, never a reflection
    rotation = u @ flip @ vt
    scale = np.trace(np.diag(sigma) @ flip) / var_s
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def warp_affine(images: torch.Tensor, matrices: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Warp N x 3 x H x W images by 2 x 3 pixel matrices (source -> destination) into ``size`` (H, W).

    Bilinear, zeros outside the frame; differentiable in the images. Pixel
    coordinates are continuous with the image spanning [0, W] x [0, H].
    """
    n, _, h, w = images.shape
    out_h, out_w = size
    mats = torch.as_tensor(np.asarray(matrices, np.float64).reshape(n, 2, 3), dtype=torch.float64)
    full = torch.cat([mats, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(n, 1, 3)], 1)
    inverse = torch.linalg.inv(full)[:, :2]  # destination pixel -> source pixel
    # normalised destination coords -> destination pixels -> source pixels -> normalised source coords
    to_pix = torch.tensor([[out_w / 2, 0, out_w / 2], [0, out_h / 2, out_h / 2], [0, 0, 1]], dtype=torch.float64)
    from_pix = torch.tensor([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]], dtype=torch.float64)
    theta = from_pix @ torch.cat([inverse, full[:, 2:]], 1) @ to_pix
    grid = torch.nn.functional.affine_grid(theta[:, :2].to(images.dtype), [n, 3, out_h, out_w], align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class FaceAligner:
    """Align faces to a five-point template with the 68-landmark net.

    ``layout`` names the crop the landmark net looks at first (e.g. the centre
    of an LFW frame); the output chips have layout ``"chip"``.
    """

    def __init__(self, template: np.ndarray, size: tuple[int, int], landmarks=None):
        self.template = np.asarray(template, np.float64)
        if self.template.shape != (5, 2):
            raise ValueError(f"template must be 5 x 2 points, got {self.template.shape}")
        self.size = (int(size[0]), int(size[1]))
        if landmarks is None:
            from .labellers.landmarks import LandmarkDetector

            landmarks = LandmarkDetector()
        self.landmarks = landmarks

    @classmethod
    def for_backbone(cls, backbone, landmarks=None) -> "FaceAligner":
        """The aligner that produces ``backbone``'s chips (its template and input size)."""
        spec = getattr(backbone, "spec", backbone)
        if spec.align_template is None:
            raise ValueError(f"backbone {spec.name!r} defines no alignment template")
        return cls(np.asarray(spec.align_template), spec.input_size, landmarks=landmarks)

    def matrices(self, images, layout: str) -> np.ndarray:
        points = five_points(self.landmarks.predict(images, layout=layout))
        return np.stack([similarity_transform(p, self.template) for p in points])

    def align(self, images, layout: str, batch_size: int = 64) -> np.ndarray:
        """uint8 N x H x W x 3 faces -> uint8 N x size x 3 aligned chips."""
        from .backbones.registry import images_to_tensor

        x = images_to_tensor(images)
        if len(x) == 0:
            raise ImageError("empty batch: no images to align")
        chips = []
        for start in range(0, len(x), batch_size):
            part = x[start:start + batch_size]
            warped = warp_affine(part, self.matrices(part, layout), self.size)
            chips.append((warped.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy())
        return np.concatenate(chips)
