"""Shared pieces of the face-api.js ports: TF-style layers, weight loading, input geometry.

face-api.js runs TensorFlow.js ops whose padding rules differ from PyTorch's:
``'same'`` padding with stride 2 pads 0 before and 1 after (for even inputs),
and a ``'same'`` max-pool pads with -inf. The layers below reproduce that, so
a manifest decoded with :func:`probes.tfjs.read_weights_manifest` gives the
same numbers as face-api.js.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import weights as weight_store
from ..errors import ImageError, UnknownNameError, WeightFileError
from ..geometry import Crop, Geometry, crop_and_resize, images_to_tensor
from ..tfjs import conv_filter, dense_weight, depthwise_filter, read_weights_manifest
from ..weight_files import load_named_tensors, read_torch_state

FACEAPI_MEAN_RGB = (122.782, 117.001, 104.298)
MIN_SIDE = 16  # smaller inputs carry no face worth labelling; refuse them


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) along one axis: the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's 'SAME' padding (asymmetric for stride 2).

    With stride 1 and an odd kernel 'SAME' pads (kernel - 1) / 2 on every side whatever the input
    size, which the convolution does itself (no padded copy of the input); otherwise the input is
    padded as TF does first.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = True):
        symmetric = stride == 1 and kernel % 2 == 1
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if symmetric else 0, groups=groups,
                         bias=bias)
        self.pads_itself = symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x if self.pads_itself else pad_same(x, self.kernel_size[0], self.stride[0]))


class SeparableConv(nn.Module):
    """TF ``separableConv2d``: depthwise 3x3 (groups=C, carries the stride), then pointwise 1x1 + bias."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.depthwise = SameConv2d(cin, cin, 3, stride, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def max_pool_same(x: torch.Tensor, kernel: int = 3, stride: int = 2) -> torch.Tensor:
    """TF max-pool with 'SAME' padding: padded cells never win (-inf)."""
    return F.max_pool2d(pad_same(x, kernel, stride, value=-math.inf), kernel, stride)


def faceapi_to_state(tensors: Mapping[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """face-api tensor names (``a/b/filters``) -> state-dict keys of the ports, layouts converted.

    A separable conv's ``bias`` belongs to its pointwise conv; a plain conv's to
    the conv itself; ``weights`` are fully connected layers.
    """
    state: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        prefix, _, field = name.rpartition("/")
        key = prefix.replace("/", ".")
        if field == "filters":
            state[f"{key}.weight"] = conv_filter(value)
        elif field == "depthwise_filter":
            state[f"{key}.depthwise.weight"] = depthwise_filter(value)
        elif field == "pointwise_filter":
            state[f"{key}.pointwise.weight"] = conv_filter(value)
        elif field == "bias":
            separable = f"{prefix}/depthwise_filter" in tensors
            state[f"{key}.pointwise.bias" if separable else f"{key}.bias"] = value
        elif field == "weights":
            state[f"{key}.weight"] = dense_weight(value)
        else:
            raise WeightFileError(f"{source}: unexpected tensor {name!r}")
    return state


def load_faceapi_weights(net: nn.Module, manifest: str, shard: str, weights: str | Path | None = None,
                         to_state=faceapi_to_state) -> str:
    """Load a face-api manifest (default: the pinned, cached one) or a PyTorch state dict.

    ``to_state(tensors, source)`` maps the manifest's tensor names to ``net``'s state-dict keys.
    Returns a weights id: the pinned shard's sha256, or the given file's.
    """
    if weights is None:
        manifest_path = weight_store.weight_path(manifest)
        weight_store.weight_path(shard)  # verifies the shard's hash too
        load_named_tensors(net, to_state(read_weights_manifest(manifest_path), str(manifest_path)),
                           str(manifest_path))
        return weight_store.WEIGHT_FILES[shard].sha256
    weights = Path(weights)
    if not weights.is_file():
        raise WeightFileError(f"weight file {weights} does not exist")
    if weights.suffix == ".json":
        load_named_tensors(net, to_state(read_weights_manifest(weights), str(weights)), str(weights))
    else:
        load_named_tensors(net, read_torch_state(weights), str(weights))
    return weight_store.sha256_of(weights)


class FaceApiPort(nn.Module):
    """A face-api.js net applied to face crops: ``net`` with its weights (the pinned ``manifest`` and
    ``shard``, a given ``weights`` file, or a random init when not ``pretrained``), the crop of each
    dataset layout (``crops``, default ``default_crops``) and face-api's input mean; on ``device``, in
    eval mode. Subclasses set ``name`` and ``owner`` (how messages call them, e.g. "labeller")."""

    name = "faceapi"
    owner = "labeller"

    def __init__(self, net: nn.Module, manifest: str, shard: str, weights: str | Path | None, pretrained: bool,
                 crops: Mapping[str, Crop] | None, default_crops: Mapping[str, Crop], device: str | torch.device):
        super().__init__()
        self.net = net
        self.weights_id = load_faceapi_weights(self.net, manifest, shard, weights) if pretrained else "random-init"
        self.crops = dict(default_crops if crops is None else crops)
        self.register_buffer("_mean", torch.tensor(FACEAPI_MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.to(device)
        self.eval()

    def crop_for(self, layout: str) -> Crop:
        """The crop of ``layout``; an unknown layout is refused, naming the known ones."""
        return check_layout(self.crops, layout, f"{self.owner} {self.name!r}")


def prepare_input(x: torch.Tensor, crop: Crop, size: int) -> tuple[torch.Tensor, Geometry]:
    """Crop, pad to a centred square and resize to ``size`` (:func:`crop_and_resize`); ``x`` is N x 3 x H x W
    in [0, 1] and the result in 0..255 units, like the pixels face-api.js feeds its nets."""
    x, geometry = crop_and_resize(x, crop, (size, size))
    return x * 255.0, geometry


def check_layout(crops: Mapping[str, Crop], layout: str, owner: str) -> Crop:
    try:
        return crops[layout]
    except KeyError:
        raise UnknownNameError(
            f"{owner} has no crop for layout {layout!r}; known layouts: {', '.join(sorted(crops))}") from None


def batches_by_size(images) -> list[tuple[np.ndarray, torch.Tensor]]:
    """Split the input into groups of equally sized images: [(indices, N x 3 x H x W tensor in [0, 1])].

    Accepts what :func:`images_to_tensor` accepts, plus a list of differently
    sized uint8 images. Raises :class:`ImageError` for an empty batch or images
    smaller than 16 pixels.
    """
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ImageError("empty batch: no images were given")
        shapes = [np.shape(a) for a in images]
        if len(set(shapes)) > 1:
            groups: dict[tuple, list[int]] = {}
            for i, shape in enumerate(shapes):
                groups.setdefault(shape, []).append(i)
            return [(np.asarray(idx), _checked(images_to_tensor(np.stack([images[i] for i in idx]))))
                    for idx in groups.values()]
    x = images_to_tensor(images)
    return [(np.arange(len(x)), _checked(x))]


def _checked(x: torch.Tensor) -> torch.Tensor:
    if len(x) == 0:
        raise ImageError("empty batch: no images were given")
    if min(x.shape[-2:]) < MIN_SIDE:
        raise ImageError(f"images are {x.shape[-1]}x{x.shape[-2]} pixels, smaller than {MIN_SIDE}; "
                         "pass face crops")
    if not x.dtype.is_floating_point:
        raise ImageError(f"image tensors must be float in [0, 1], got {x.dtype}; pass uint8 images as numpy arrays")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise ImageError("image tensor values must lie in [0, 1] (got "
                         f"{float(x.min()):.3g}..{float(x.max()):.3g}); pass uint8 arrays for 0..255 images")
    return x


def predict_batched(fn, images, batch_size: int) -> dict[str, np.ndarray]:
    """Run ``fn(x) -> {key: array}`` over chunks of each same-size group; results in input order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    total = 0
    for idx, x in batches_by_size(images):
        total += len(idx)
        for start in range(0, len(x), batch_size):
            parts.append((idx[start:start + batch_size], fn(x[start:start + batch_size])))
    result = {}
    for key, first in parts[0][1].items():
        merged = np.empty((total, *first.shape[1:]), dtype=first.dtype)
        for idx, values in parts:
            merged[idx] = values[key]
        result[key] = merged
    return result
