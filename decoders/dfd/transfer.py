"""Reconstructions of backbone A's templates shown to backbone B: A's chips put back into the source frame.

B cannot take A's chip as its own crop, so each chip goes back where A's crop lies in the source
frame, on black (no source pixel leaks in), and B crops that frame with its own crop for the layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def reframe(chip: torch.Tensor, spec, layout: str, frame_hw: tuple[int, int]) -> torch.Tensor:
    """Put a 3 x S x S chip (backbone ``spec``'s crop for ``layout``) back into an H x W frame.

    The inverse of the crop and square padding of
    :meth:`probes.backbones.registry.FaceBackbone.preprocess`; the frame outside
    the crop is black. Returns 3 x H x W in [0, 1].
    """
    h, w = frame_hw
    top, left, ch, cw = spec.crop_for(layout)
    y0, x0 = round(top * h), round(left * w)
    y1, x1 = round((top + ch) * h), round((left + cw) * w)
    rh, rw = y1 - y0, x1 - x0
    x = chip[None].float()
    if spec.pad_to_square and rh != rw:
        side = max(rh, rw)
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=side < x.shape[-1])
        dy, dx = (side - rh) // 2, (side - rw) // 2
        x = x[..., dy:dy + rh, dx:dx + rw]
    else:
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=rh < x.shape[-2])
    canvas = torch.zeros(1, 3, h, w, dtype=x.dtype, device=x.device)
    # Parts of the crop outside the frame (padding in preprocess) are dropped.
    fy0, fx0, fy1, fx1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
    canvas[..., fy0:fy1, fx0:fx1] = x[..., fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    return canvas[0].clamp_(0, 1)


@torch.no_grad()
def transfer_embeddings(backbone_b, recon_u8: np.ndarray, spec_a, layout: str, frames: Sequence[tuple[int, int]],
                        batch_size: int = 32) -> np.ndarray:
    """Templates by ``backbone_b`` of A's reconstructions, each reframed into its source frame."""
    device = next(backbone_b.parameters()).device
    x = torch.from_numpy(np.array(recon_u8)).permute(0, 3, 1, 2).float() / 255
    out = []
    for start in range(0, len(x), batch_size):
        batch = [backbone_b.preprocess(reframe(x[i], spec_a, layout, frames[i])[None].to(device), layout)
                 for i in range(start, min(len(x), start + batch_size))]
        out.append(backbone_b.net(torch.cat(batch)).float().cpu())
    return torch.cat(out).numpy()


def frame_sizes(paths: Sequence[str | Path]) -> list[tuple[int, int]]:
    """(height, width) of each image file, read from its header."""
    sizes = []
    for p in paths:
        with Image.open(p) as img:
            sizes.append((img.size[1], img.size[0]))
    return sizes
