"""What a face-recognition backbone is: its :class:`BackboneSpec` and the :class:`FaceBackbone` module.

A :class:`BackboneSpec` says everything a caller must know to feed a network
correctly (input size, colour order, mean/std, crop per dataset layout), what
it produces (embedding size, embedding layer) and what a probe may read (tap
layers), plus where its weights come from. A :class:`FaceBackbone` is a network
with that spec's one preprocessing path. The registry (:mod:`.registry`) and
:func:`~probes.backbones.wrap_backbone` (a module you bring) both build these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ImageError, UnknownNameError
from ..geometry import FULL_FRAME, Crop, crop_and_resize, images_to_tensor
from ..nn import evaluating


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    builder: Callable[[], nn.Module]
    loader: Callable[[nn.Module, Path | None], str]  # loads weights, returns a weights id (sha256)
    input_size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]  # subtracted in 0..255 units, in the network's colour order
    std: tuple[float, float, float]   # divisor in 0..255 units
    colour_order: str  # "RGB" or "BGR"
    embedding_size: int
    embedding_layer: str
    tap_layers: tuple[str, ...]
    weight_files: tuple[str, ...]
    source: str
    licence: str
    # Crops for pre-aligned dataset layouts; "chip" means already cropped for this network.
    crops: Mapping[str, Crop] = field(default_factory=lambda: {"chip": FULL_FRAME})
    pad_to_square: bool = False  # face-api pads a non-square input to a centred square
    l2_normalise: bool = False  # whether embeddings are compared after L2 normalisation (cosine)
    # How two templates are compared: "cosine", or "euclidean" for nets trained with a distance rule.
    verification_metric: str = "cosine"
    # Five points (eye centres, nose tip, mouth corners) in input pixels that
    # :class:`probes.align.FaceAligner` maps faces onto; None = no alignment defined.
    align_template: tuple[tuple[float, float], ...] | None = None
    notes: str = ""

    def crop_for(self, layout: str) -> Crop:
        try:
            return self.crops[layout]
        except KeyError:
            raise UnknownNameError(
                f"backbone {self.name!r} has no crop for layout {layout!r}; "
                f"known layouts: {', '.join(sorted(self.crops))}") from None


class FaceBackbone(nn.Module):
    """A face-recognition network with its one preprocessing path.

    ``forward`` takes RGB images as an N x 3 x H x W float tensor in [0, 1]
    (any size; cropped for ``layout`` and resized) and returns embeddings.
    It is differentiable end to end, so gradients reach the input image.
    """

    def __init__(self, spec: BackboneSpec, net: nn.Module, weights_id: str):
        super().__init__()
        self.spec = spec
        self.net = net
        self.weights_id = weights_id
        order = [2, 1, 0] if spec.colour_order == "BGR" else [0, 1, 2]
        self.register_buffer("_order", torch.tensor(order), persistent=False)
        self.register_buffer("_mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def device(self) -> torch.device:
        """The device the network's buffers (and so its inputs) live on."""
        return self._mean.device

    @property
    def tap_layers(self) -> tuple[str, ...]:
        return self.spec.tap_layers

    def layer(self, name: str) -> nn.Module:
        """The submodule whose output is tap point ``name``."""
        if name not in self.spec.tap_layers:
            raise UnknownNameError(
                f"backbone {self.spec.name!r} has no layer {name!r}; valid layers: "
                f"{', '.join(self.spec.tap_layers)}")
        return self.net.get_submodule(name)

    def check_size(self, size: tuple[int, int], layout: str, min_fraction: float = 0.5) -> None:
        """Refuse images whose ``layout`` crop is under ``min_fraction`` of the input size."""
        _, _, height, width = self.spec.crop_for(layout)
        crop_h, crop_w = height * size[0], width * size[1]
        need_h, need_w = (min_fraction * s for s in self.spec.input_size)
        if crop_h < need_h or crop_w < need_w:
            raise ImageError(
                f"images of {size[1]}x{size[0]} px are too small for backbone {self.spec.name!r} with layout "
                f"{layout!r}: its face region is {crop_w:.0f}x{crop_h:.0f} px, under half the "
                f"{self.spec.input_size[1]}x{self.spec.input_size[0]} input")

    def preprocess(self, images: torch.Tensor, layout: str = "chip") -> torch.Tensor:
        """[0, 1] RGB images -> the network's input (crop, resize, colour order, normalise)."""
        x = images_to_tensor(images).to(self._mean.device)
        x, _ = crop_and_resize(x, self.spec.crop_for(layout), self.spec.input_size, self.spec.pad_to_square)
        x = x.index_select(1, self._order) * 255.0
        return (x - self._mean) / self._std

    def to_rgb(self, net_input: torch.Tensor) -> torch.Tensor:
        """Invert :meth:`preprocess`'s normalisation and colour order: the network's input as RGB in [0, 1]."""
        x = (net_input * self._std.to(net_input) + self._mean.to(net_input)) / 255.0
        if self.spec.colour_order == "BGR":
            x = x.flip(1)
        return x.clamp(0, 1)

    def forward(self, images: torch.Tensor, layout: str = "chip") -> torch.Tensor:
        return self.net(self.preprocess(images, layout))

    @torch.no_grad()
    def embed(self, images, layout: str = "chip", batch_size: int = 64) -> np.ndarray:
        """Embeddings of uint8 images (or a [0, 1] tensor) as an N x D float32 array.

        Raises :class:`ImageError` when the face region of ``layout`` is smaller
        than half the network's input side: upsampling more than 2x invents the
        detail a face template is made of.
        """
        x = images_to_tensor(images)
        self.check_size(x.shape[-2:], layout)
        with evaluating(self):
            out = [self(x[i:i + batch_size], layout).float().cpu() for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.spec.embedding_size), np.float32)
