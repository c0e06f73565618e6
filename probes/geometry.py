"""Image geometry shared by backbones, labellers and alignment (a leaf: it imports only the errors).

- a :data:`Crop` is (top, left, height, width) as fractions of an image's height and width;
- :func:`crop_and_resize` is the one crop path of backbones and labellers;
- :func:`images_to_tensor` turns uint8 arrays into N x 3 x H x W tensors in [0, 1];
- five-point alignment templates and the similarity fit / warp that map faces onto them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ImageError

# A crop is (top, left, height, width) as fractions of the image's height/width.
Crop = tuple[float, float, float, float]
FULL_FRAME: Crop = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class Geometry:
    """Where a network input lies in the caller's image (pixel units, image spans [0, W] x [0, H]).

    A point ``p`` in [0, 1]^2 of a square network input maps to image pixels as
    ``p * side - pad + origin``.
    """

    origin: tuple[float, float]  # (x, y) of the crop's top-left corner in the image
    pad: tuple[float, float]  # (x, y) zeros added before the crop to make it square
    side: float  # side of the square (crop pixels) that was resized to the input size


def crop_box(crop: Crop, height: int, width: int) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) in pixels of a fractional (top, left, h, w) crop; may reach past the frame."""
    top, left, h, w = crop
    return round(top * height), round(left * width), round((top + h) * height), round((left + w) * width)


def crop_and_resize(x: torch.Tensor, crop: Crop, size: tuple[int, int],
                    pad_to_square: bool = True) -> tuple[torch.Tensor, Geometry]:
    """The one crop path of backbones and labellers: cut a fractional crop out of N x 3 x H x W images
    (zero-padding where it reaches past the frame), pad it to a centred square with zeros (face-api's
    padToSquare: the odd pixel goes after), and resize to ``size`` (bilinear, antialiased when
    shrinking). Values keep their units; differentiable."""
    h, w = x.shape[-2:]
    y0, x0, y1, x1 = crop_box(crop, h, w)
    if y1 - y0 < 1 or x1 - x0 < 1:
        raise ImageError(f"crop {crop} of a {w}x{h} image is empty")
    if y0 < 0 or x0 < 0 or y1 > h or x1 > w:
        x = F.pad(x, (max(0, -x0), max(0, x1 - w), max(0, -y0), max(0, y1 - h)))
        sy, sx = max(0, -y0), max(0, -x0)
        x = x[..., y0 + sy:y1 + sy, x0 + sx:x1 + sx]
    else:
        x = x[..., y0:y1, x0:x1]
    ch, cw = x.shape[-2:]
    pad_x = pad_y = 0
    if pad_to_square and ch != cw:
        side = max(ch, cw)
        pad_x, pad_y = (side - cw) // 2, (side - ch) // 2
        x = F.pad(x, (pad_x, side - cw - pad_x, pad_y, side - ch - pad_y))
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > size[1])
    return x, Geometry((float(x0), float(y0)), (float(pad_x), float(pad_y)), float(max(ch, cw)))


def images_to_tensor(images) -> torch.Tensor:
    """uint8 HxWx3 array(s) -> float tensor N x 3 x H x W in [0, 1] (RGB).

    Accepts one array, a list of equally sized arrays, an N x H x W x 3 array or
    a tensor already in N x 3 x H x W [0, 1] form (returned unchanged).
    """
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ImageError(f"image tensor must be N x 3 x H x W, got {tuple(images.shape)}")
        return images
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    array = np.stack(list(images)) if not isinstance(images, np.ndarray) else images
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ImageError(f"images must be H x W x 3 (RGB), got array of shape {array.shape}")
    if array.dtype != np.uint8:
        raise ImageError(f"images must be uint8 0..255, got {array.dtype}")
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)


# insightface's ArcFace template for 112 x 112 chips (x, y): eyes, nose, mouth corners.
ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)

# Crops: ArcFace expects insightface's 5-point aligned chip (eyes at 46% of
# the height, 31% of the width apart; mouth at 82%). A mean of LFW's
# unaligned 250x250 frames has the eyes at 45% height, 18% of the width apart
# and the mouth at 64%: a 0.55 square with its top at 0.19 puts them about
# where the template wants them. UTKFace chips have the eyes at 30% height,
# 42% apart, mouth at 68%: a 1.1 square reaching 0.2 above the frame (padded
# black, as insightface's own alignment warp pads) comes closest. These are
# estimates from mean faces; real alignment (5 landmarks) is better.
ARCFACE_CROPS: dict[str, Crop] = {"chip": FULL_FRAME, "lfw": (0.19, 0.225, 0.55, 0.55),
                                  "utkface": (-0.2, -0.05, 1.1, 1.1)}


def arcface_template(size: tuple[int, int]) -> np.ndarray:
    """insightface's five-point template for chips of ``size`` (H, W): the 112 x 112 template scaled by
    H / 112 about the chip's vertical centre line (so 112 x 96 gives SphereFace's 96-wide template)."""
    h, w = size
    scale = h / 112.0
    return np.stack([(ARCFACE_TEMPLATE_112[:, 0] - 56.0) * scale + w / 2.0, ARCFACE_TEMPLATE_112[:, 1] * scale], 1)


LFW_FRAME_SIZE = (250, 250)


def lfw_frame_template(size: tuple[int, int] = LFW_FRAME_SIZE) -> np.ndarray:
    """Five points (x, y) where an LFW frame of ``size`` (H, W) has them on average: insightface's template
    placed by :data:`ARCFACE_CROPS`' ``lfw`` crop (eyes at 44% of the height, 17% of the width apart, mouth
    at 64%). Photos aligned onto it can be read with every backbone's ``lfw`` crop."""
    top, left, height, width = ARCFACE_CROPS["lfw"]
    h, w = size
    return np.stack([(left + ARCFACE_TEMPLATE_112[:, 0] / 112.0 * width) * w,
                     (top + ARCFACE_TEMPLATE_112[:, 1] / 112.0 * height) * h], 1)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """(N, 68, 2) iBUG points -> (N, 5, 2): image-left eye, image-right eye, nose tip, mouth corners."""
    pts = np.asarray(landmarks68, np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be N x 68 x 2, got {pts.shape}")
    return np.stack([pts[:, 36:42].mean(1), pts[:, 42:48].mean(1), pts[:, 30], pts[:, 48], pts[:, 54]], axis=1)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2 x 3 matrix of the similarity that best maps ``src`` points onto ``dst`` (least squares; Umeyama's
    fit, by scikit-image's :class:`~skimage.transform.SimilarityTransform`: a rotation, never a reflection)."""
    from skimage.transform import SimilarityTransform

    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two K x 2 point sets of one shape (K >= 2), got {src.shape} and {dst.shape}")
    if ((src - src.mean(0)) ** 2).sum() / len(src) < 1e-12:
        raise ValueError("source points coincide: no transform is defined")
    fit = SimilarityTransform.from_estimate(src, dst)
    if not fit:
        raise ValueError(f"no similarity transform fits these points: {fit}")
    return np.array(fit.params[:2], np.float64)


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
