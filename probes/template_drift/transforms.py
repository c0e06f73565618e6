"""The backbone's view of images, and the geometric, occlusion and noise perturbations acting on it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.registry import FaceBackbone
from ..datasets import FaceDataset
from ..errors import ImageError
from ..geometry import images_to_tensor
from ..images import load_image
from .families import PADDINGS, PerturbationError


def _image_batches(images, batch_size: int):
    """Yield [0, 1] float tensors (N x 3 x H x W) from uint8 arrays, lists of them, tensors or a FaceDataset."""
    if isinstance(images, FaceDataset):

        for p in images.paths:
            yield images_to_tensor(load_image(p))
        return
    if isinstance(images, torch.Tensor) or (isinstance(images, np.ndarray) and images.ndim in (3, 4)):
        x = images_to_tensor(images)
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size]
        return
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        for image in images:  # sizes may differ: one at a time
            yield images_to_tensor(image)
        return
    raise ImageError(f"images must be a uint8 N x H x W x 3 array, a list of H x W x 3 arrays, an "
                     f"N x 3 x H x W [0, 1] tensor or a FaceDataset, got {type(images).__name__}")


@torch.no_grad()
def backbone_view(backbone: FaceBackbone, images, layout: str = "chip", batch_size: int = 32) -> torch.Tensor:
    """What the backbone reads of ``images``: its crop for ``layout``, padding and resize, as RGB [0, 1].

    Returns N x 3 x H x W at the network's input size; feeding it back with
    layout ``"chip"`` gives the images' templates. Images whose face region is
    under half the input size raise :class:`ImageError` (as ``embed`` does).
    """
    device = backbone.device
    out = []
    for x in _image_batches(images, batch_size):
        if not torch.isfinite(x).all():
            raise ImageError("images contain NaN or infinite values")
        backbone.check_size(tuple(x.shape[-2:]), layout)
        out.append(backbone.to_rgb(backbone.preprocess(x.to(device), layout)).cpu())
    if not out:
        raise ImageError("no images given")
    return torch.cat(out)


# --------------------------------------------------------------------------- geometric and occlusion


def _as_batch_values(values, n: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise PerturbationError(f"{name}: need one value or one per image ({n}), got {t.numel()}")
    return t


def affine(images: torch.Tensor, matrix: torch.Tensor, shift: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Resample N x 3 x H x W images: output pixel p (pixels, from the centre) reads source ``matrix @ p + shift``."""
    if padding not in PADDINGS:
        raise PerturbationError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    n, _, h, w = images.shape
    # align_corners=False: normalised u = 2 p / size with p measured from the image centre.
    d = torch.tensor([2.0 / w, 2.0 / h], dtype=images.dtype, device=images.device)
    a = matrix.to(images) * d.view(1, 2, 1) / d.view(1, 1, 2)
    theta = torch.cat([a, (shift.to(images) * d).unsqueeze(-1)], dim=2)
    grid = F.affine_grid(theta, (n, 3, h, w), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False).clamp_(0, 1)


def rotate(images: torch.Tensor, degrees, padding: str = "zeros") -> torch.Tensor:
    """Rotate each image about its centre by ``degrees`` (one value or one per image)."""
    angle = _as_batch_values(degrees, len(images), "degrees")
    if not angle.any():
        return images.clone()
    r = torch.deg2rad(angle)
    c, s = torch.cos(r), torch.sin(r)
    matrix = torch.stack([torch.stack([c, s], 1), torch.stack([-s, c], 1)], 1)
    return affine(images, matrix, torch.zeros(len(images), 2), padding)


def translate(images: torch.Tensor, dx, dy, padding: str = "zeros") -> torch.Tensor:
    """Move each image's content by (``dx``, ``dy``) pixels (right, down)."""
    n = len(images)
    shift = torch.stack([_as_batch_values(dx, n, "dx"), _as_batch_values(dy, n, "dy")], 1)
    if not shift.any():
        return images.clone()
    return affine(images, torch.eye(2).expand(n, 2, 2), -shift, padding)


def zoom(images: torch.Tensor, factor, padding: str = "zeros") -> torch.Tensor:
    """Enlarge (``factor`` > 1) or shrink (< 1) each image's content about its centre."""
    f = _as_batch_values(factor, len(images), "factor")
    if (f <= 0).any():
        raise PerturbationError(f"zoom factors must be positive, got {f.min().item():g}")
    if (f == 1).all():
        return images.clone()
    return affine(images, torch.eye(2) / f.view(-1, 1, 1), torch.zeros(len(images), 2), padding)


def occlude(images: torch.Tensor, centres, side: float, fill: float = 0.0) -> torch.Tensor:
    """Paint square patches of ``side`` pixels with ``fill``; ``centres`` is N x K x 2 (x, y) pixels."""
    out = images.clone()
    c = torch.as_tensor(centres, dtype=torch.float32)
    if c.ndim == 2:
        c = c.unsqueeze(1)
    if c.shape[0] != len(images) or c.shape[-1] != 2:
        raise PerturbationError(f"centres must be N x K x 2 with N = {len(images)}, got {tuple(c.shape)}")
    side = round(side)
    if side <= 0:
        return out
    h, w = images.shape[-2:]
    for i in range(len(images)):
        for x, y in c[i].tolist():
            x0, y0 = round(x - side / 2), round(y - side / 2)
            out[i, :, max(0, y0):min(h, y0 + side), max(0, x0):min(w, x0 + side)] = fill
    return out


def sign_noise(images: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add +/-``eps`` (random sign) to every pixel, clipped to [0, 1]: L-inf distance at most ``eps``."""
    if eps == 0:
        return images.clone()
    signs = torch.randint(0, 2, images.shape, generator=generator).to(images) * 2 - 1
    return (images + eps * signs).clamp_(0, 1)

