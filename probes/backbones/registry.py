"""Backbone registry: one spec per face-recognition network, one factory.

A :class:`BackboneSpec` says everything a caller must know to feed a network
correctly (input size, colour order, mean/std, crop per dataset layout), what
it produces (embedding size, embedding layer) and what a probe may read (tap
layers), plus where its weights come from. :func:`create_backbone` builds the
network and loads weights from local files only; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._nn import evaluating
from ..errors import ImageError, UnknownNameError, WeightFileError

# A crop is (top, left, height, width) as fractions of the image's height/width.
Crop = tuple[float, float, float, float]
FULL_FRAME: Crop = (0.0, 0.0, 1.0, 1.0)


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


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_spec(name: str) -> BackboneSpec:
    _ensure_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown backbone {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def _ensure_builtin() -> None:
    # The built-in specs register themselves on import of their modules.
    from . import arcface, dlib_resnet, hse, small_facenet, vggface  # noqa: F401


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


def create_backbone(name: str, weights: str | Path | None = None, device: str | torch.device = "cpu",
                    pretrained: bool = True) -> FaceBackbone:
    """Build backbone ``name`` with weights from a local file.

    ``weights`` overrides the default file (for networks whose weights the user
    brings, it is required). ``pretrained=False`` leaves random weights (tests,
    chance baselines). Nothing is ever downloaded.
    """
    spec = get_spec(name)
    net = spec.builder()
    if pretrained:
        weights_id = spec.loader(net, Path(weights) if weights is not None else None)
    else:
        weights_id = "random-init"
    backbone = FaceBackbone(spec, net, weights_id).to(device)
    backbone.eval()
    return backbone


def load_named_tensors(net: nn.Module, tensors: Mapping[str, torch.Tensor | np.ndarray], source: str,
                       ignore: Sequence[str] = ()) -> None:
    """Copy ``tensors`` into ``net``'s state dict, checking names and shapes.

    Any missing key, unexpected key or shape mismatch raises one
    :class:`WeightFileError` that names the file and the offending keys.
    """
    state = net.state_dict()
    tensors = {k: v for k, v in tensors.items() if k not in ignore}
    missing = sorted(set(state) - set(tensors))
    unexpected = sorted(set(tensors) - set(state))
    wrong = [f"{k}: file {tuple(np.shape(tensors[k]))} vs model {tuple(state[k].shape)}"
             for k in state if k in tensors and tuple(np.shape(tensors[k])) != tuple(state[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    if wrong:
        problems.append(f"wrong shapes {wrong[:8]}{' ...' if len(wrong) > 8 else ''}")
    if problems:
        raise WeightFileError(f"{source}: does not fit {type(net).__name__}: " + "; ".join(problems))
    net.load_state_dict({k: torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v)
                         .to(state[k].dtype) for k, v in tensors.items()})
