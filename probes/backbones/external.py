"""Face models you bring: :func:`wrap_backbone`, and backbone references beyond the registry.

:func:`wrap_backbone` turns any ``nn.Module`` that maps a batch of preprocessed faces
(N x 3 x H x W, already normalised) to embeddings (N x D) into a
:class:`~probes.backbones.FaceBackbone` with a :class:`~probes.backbones.BackboneSpec` of its own, so it
goes wherever a registry backbone goes (capture, expressivity, verification, decoders, the audit).
Its defaults are those of insightface-style models: 112 x 112 RGB chips, ``(x - 127.5) / 127.5``,
ArcFace's five-point alignment template and dataset crops, cosine comparison; tap layers are the
module's named children that run once in a forward pass (found by one dry run on random input).

:func:`load_backbone_reference` builds a backbone from a string other than a registry name;
:func:`probes.backbones.create_backbone` (and so every ``--backbone``) takes:

- ``package.module:function[=arg]`` -- imported when used, called as ``function()`` or ``function(arg)``;
- ``path/to/file.py:function[=arg]`` -- the same for a file not on the import path;
- ``path/to/model.onnx`` -- run by onnxruntime with :func:`wrap_backbone`'s defaults (input size from
  the file): the final embedding only, no inner taps and no gradients.

The function returns a ``FaceBackbone`` (kept as it is, renamed to the reference) or an ``nn.Module``
(wrapped with :func:`wrap_backbone`'s defaults). Either way the backbone's name is the reference text,
so a run that records it can rebuild it. ``weights`` then loads a PyTorch state dict into the
network (strictly: every key, every shape) and ``pretrained=False`` gives its untrained twin.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import weights as weight_store
from ..errors import FaceprobeError, WeightFileError
from ..geometry import ARCFACE_CROPS, FULL_FRAME, Crop, arcface_template
from ..nn import evaluating, reinitialised_copy
from ..resolve import ObjectSpecError, is_object_spec, parse_object_spec, resolve_object
from ..weight_files import existing_file, load_named_tensors, read_torch_state
from .base import BackboneSpec, FaceBackbone
from .onnx_runtime import OnnxEmbedder

REFERENCE_FORMS = "'package.module:function[=arg]', 'path/to/file.py:function[=arg]' or a 'path/to/model.onnx' file"
DEFAULT_INPUT_SIZE = 112
DEFAULT_MEAN = 127.5  # 0..255 units, per channel: (x - 127.5) / 127.5 maps [0, 255] to [-1, 1]
DEFAULT_STD = 127.5
CAPTURABLE_NDIM = (2, 4)  # what a tap may output: N x D, or N x C x H x W (pooled by LayerCapture)


class BackboneReferenceError(ObjectSpecError):
    """A backbone module or reference that cannot be made into a FaceBackbone; the message names it."""


def is_backbone_reference(text) -> bool:
    """Whether ``text`` is a backbone reference of another form than a registry name (see the module doc)."""
    return isinstance(text, str) and (is_object_spec(text) or text.strip().lower().endswith(".onnx"))


# --------------------------------------------------------------------------- wrap_backbone


def state_sha256(module: nn.Module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes and values): the weights id of a module with
    no weight file."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def load_state_file(net: nn.Module, weights: Path | None) -> str:
    """A wrapped module's loader: a PyTorch state dict from ``weights`` into ``net`` (every key and shape
    must fit); returns the file's sha256 (no file: the state dict's)."""
    if weights is None:
        return state_sha256(net)
    path = existing_file(weights, type(net).__name__)
    load_named_tensors(net, read_torch_state(path), str(path))
    return weight_store.sha256_of(path)


def _triple(value, what: str) -> tuple[float, float, float]:
    try:
        values = [float(value)] * 3 if np.isscalar(value) else [float(v) for v in value]
    except (TypeError, ValueError):
        raise BackboneReferenceError(f"wrap_backbone: {what} must be a number or three numbers, got {value!r}") \
            from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise BackboneReferenceError(f"wrap_backbone: {what} must be a number or three finite numbers, got {value!r}")
    return tuple(values)


def _input_size(value) -> tuple[int, int]:
    size = (value, value) if np.isscalar(value) else tuple(value)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 8
                                 for s in size):
        raise BackboneReferenceError(f"wrap_backbone: input_size must be an int or (height, width) of ints >= 8, "
                                     f"got {value!r}")
    return int(size[0]), int(size[1])


def _crops(crops: Mapping[str, Crop] | None) -> dict[str, Crop]:
    if crops is None:
        return dict(ARCFACE_CROPS)
    if not isinstance(crops, Mapping):
        raise BackboneReferenceError(f"wrap_backbone: crops must map layout names to (top, left, height, width) "
                                     f"fractions, got {type(crops).__name__}")
    out = {"chip": FULL_FRAME}
    for layout, crop in crops.items():
        try:
            values = tuple(float(c) for c in crop)
        except (TypeError, ValueError):
            values = ()
        if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[2] <= 0 or values[3] <= 0:
            raise BackboneReferenceError(f"wrap_backbone: crop {layout!r} must be (top, left, height, width) "
                                         f"fractions with a positive height and width, got {crop!r}")
        out[str(layout)] = values
    return out


def _template(align_template, size: tuple[int, int]):
    if align_template is None:
        return None
    if isinstance(align_template, str):
        if align_template != "arcface":
            raise BackboneReferenceError(f"wrap_backbone: align_template must be 'arcface', None or 5 x 2 points "
                                         f"in input pixels, got {align_template!r}")
        points = arcface_template(size)
    else:
        points = np.asarray(align_template, np.float64)
        if points.shape != (5, 2) or not np.isfinite(points).all():
            raise BackboneReferenceError(f"wrap_backbone: align_template must be 5 x 2 points (eyes, nose tip, "
                                         f"mouth corners) in input pixels, got shape {points.shape}")
    return tuple((float(x), float(y)) for x, y in points)


def _module_device(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def candidate_taps(module: nn.Module) -> list[str]:
    """The module's named children; through a lone container child (``nn.Sequential(body)``) to its children."""
    prefix, current = "", module
    while True:
        children = list(current.named_children())
        if len(children) == 1 and list(children[0][1].children()):
            prefix, current = f"{prefix}{children[0][0]}.", children[0][1]
            continue
        return [f"{prefix}{name}" for name, _ in children]


def _dry_run(module: nn.Module, names: Sequence[str], size: tuple[int, int], what: str):
    """One forward pass of 2 random inputs: the output, and each named submodule's (calls, output shape)
    in the order they first ran."""
    seen: dict[str, list] = {}

    def hook_for(name):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) and output else output
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
            seen.setdefault(name, [0, shape])[0] += 1
        return hook

    handles = [module.get_submodule(n).register_forward_hook(hook_for(n)) for n in names]
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0)).to(_module_device(module))
    try:
        with torch.no_grad(), evaluating(module):
            out = module(x)
    except FaceprobeError:
        raise
    except Exception as exc:  # any failure of the user's module is reported with what it was fed
        raise BackboneReferenceError(f"{what} failed on a 2 x 3 x {size[0]} x {size[1]} input: "
                                     f"{type(exc).__name__}: {exc}; give input_size= the size it expects") from exc
    finally:
        for handle in handles:
            handle.remove()
    return out, seen


def wrap_backbone(module: nn.Module, *, input_size: int | tuple[int, int] = DEFAULT_INPUT_SIZE,
                  mean: float | Sequence[float] = DEFAULT_MEAN, std: float | Sequence[float] = DEFAULT_STD,
                  colour: str = "rgb", name: str | None = None, taps: Sequence[str] | None = None,
                  embedding_layer: str | None = None, crops: Mapping[str, Crop] | None = None,
                  align_template="arcface", metric: str = "cosine", pad_to_square: bool = False,
                  weights_id: str | None = None, source: str | None = None, licence: str = "the model's own",
                  notes: str = "") -> FaceBackbone:
    """A :class:`FaceBackbone` around ``module``, usable wherever a registry backbone is.

    ``module`` maps N x 3 x H x W network input (after the normalisation below) to N x D embeddings.

    - ``input_size``: H = W, or (H, W), of the network input (default 112).
    - ``mean`` / ``std``: per-channel normalisation in **0..255 units**, in the network's colour order: the
      input is ``(pixel - mean) / std`` (default 127.5 / 127.5, i.e. [-1, 1]; torchvision's ImageNet
      statistics are ``mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4)``).
    - ``colour``: ``"rgb"`` or ``"bgr"``, the channel order the network expects.
    - ``name``: the backbone's name in tables and caches (default the module's class name).
    - ``taps``: submodule names a probe may read; default the named children (see :func:`candidate_taps`)
      that run exactly once with an N x D or N x C x H x W output, in the order they run.
    - ``embedding_layer``: the tap that is the embedding (default the last tap).
    - ``crops``: {layout: (top, left, height, width) fractions} for pre-aligned dataset layouts (``"chip"``
      is always the full frame); default ArcFace's crops of LFW frames and UTKFace chips.
    - ``align_template``: five points in input pixels for :class:`probes.align.FaceAligner`; ``"arcface"``
      (default) is insightface's template scaled to ``input_size``; None for none.
    - ``metric``: ``"cosine"`` (embeddings compared L2-normalised) or ``"euclidean"``.
    - ``weights_id``: what identifies the weights (default the sha256 of the module's state dict).

    One dry run on random input checks the module and finds the embedding size and the taps. The spec's
    builder makes the untrained twin (a re-initialised deep copy) and its loader reads a PyTorch state
    dict, so ``create_backbone(reference, weights=..., pretrained=False)`` work as for registry names.
    """
    if isinstance(module, FaceBackbone):
        raise BackboneReferenceError(f"wrap_backbone: {module.name!r} is already a FaceBackbone; wrap its .net to "
                                     "change its preprocessing")
    if not isinstance(module, nn.Module):
        raise BackboneReferenceError(f"wrap_backbone: module must be a torch.nn.Module, got {type(module).__name__}")
    name = type(module).__name__ if name is None else name
    if not isinstance(name, str) or not name.strip():
        raise BackboneReferenceError(f"wrap_backbone: name must be a non-empty string, got {name!r}")
    size = _input_size(input_size)
    mean3, std3 = _triple(mean, "mean"), _triple(std, "std")
    if min(std3) <= 0:
        raise BackboneReferenceError(f"wrap_backbone: std must be positive, got {std!r}")
    if 0 < max(mean3) <= 1 and max(std3) <= 1:
        warnings.warn(f"wrap_backbone({name!r}): mean {mean!r} and std {std!r} look like 0..1 units; they are "
                      "0..255 units (multiply by 255)", stacklevel=2)
    order = str(colour).upper()
    if order not in ("RGB", "BGR"):
        raise BackboneReferenceError(f"wrap_backbone: colour must be 'rgb' or 'bgr', got {colour!r}")
    if metric not in ("cosine", "euclidean"):
        raise BackboneReferenceError(f"wrap_backbone: metric must be 'cosine' or 'euclidean', got {metric!r}")
    layouts, template = _crops(crops), _template(align_template, size)

    what = f"module {name!r} ({type(module).__name__})"
    candidates = candidate_taps(module) if taps is None else list(taps)
    for tap in candidates:
        try:
            module.get_submodule(tap)
        except AttributeError:
            raise BackboneReferenceError(f"wrap_backbone: {what} has no submodule {tap!r}; its children: "
                                         f"{', '.join(candidate_taps(module)) or 'none'}") from None
    out, seen = _dry_run(module, candidates, size, what)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2:
        got = f"a {type(out).__name__}" if not isinstance(out, torch.Tensor) else f"shape {tuple(out.shape)}"
        raise BackboneReferenceError(f"wrap_backbone: {what} must return an N x D embedding tensor, got {got} for "
                                     "2 inputs; wrap it in a module whose forward returns the embedding")
    usable = [n for n in seen if seen[n][0] == 1 and seen[n][1] is not None and len(seen[n][1]) in CAPTURABLE_NDIM]
    if taps is not None:
        bad = [t for t in candidates if t not in usable]
        if bad:
            raise BackboneReferenceError(f"wrap_backbone: tap(s) {', '.join(map(repr, bad))} of {what} do not run "
                                         "exactly once with an N x D or N x C x H x W output; usable: "
                                         f"{', '.join(usable) or 'none'}")
        usable = list(candidates)
    if embedding_layer is None:
        embedding_layer = usable[-1] if usable else ""
    elif embedding_layer not in usable:
        raise BackboneReferenceError(f"wrap_backbone: embedding_layer {embedding_layer!r} is not a tap of {what}; "
                                     f"taps: {', '.join(usable) or 'none'}")

    spec = BackboneSpec(
        name=name.strip(), builder=lambda: reinitialised_copy(module), loader=load_state_file, input_size=size,
        mean=mean3, std=std3, colour_order=order, embedding_size=int(out.shape[1]), embedding_layer=embedding_layer,
        tap_layers=tuple(usable), weight_files=(), source=source or f"{type(module).__name__}, via wrap_backbone",
        licence=licence, crops=layouts, pad_to_square=bool(pad_to_square), l2_normalise=metric == "cosine",
        verification_metric=metric, align_template=template, notes=notes or "wrapped with wrap_backbone")
    backbone = FaceBackbone(spec, module, weights_id or state_sha256(module))
    return backbone.to(_module_device(module)).eval()


# --------------------------------------------------------------------------- references


def _no_twin(text: str):
    def builder():
        raise BackboneReferenceError(f"backbone {text!r} runs in onnxruntime: it has no untrained twin "
                                     "(pretrained=False needs a PyTorch module)")
    return builder


def onnx_backbone(text: str) -> FaceBackbone:
    """An ONNX file as a backbone: onnxruntime runs it with :func:`wrap_backbone`'s defaults."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise WeightFileError(f"backbone {text!r}: ONNX file {path} does not exist")
    net = OnnxEmbedder(input_size=None, embedding_size=None, name=text)
    net.load(path)
    backbone = wrap_backbone(net, input_size=net.input_size, name=text, weights_id=weight_store.sha256_of(path),
                             source=f"ONNX file {path}, run by onnxruntime",
                             notes="ONNX: final embedding only (tap 'embedding'), no gradients; wrap_backbone's "
                                   "defaults (RGB, (x - 127.5) / 127.5, ArcFace alignment)")
    backbone.spec = dataclasses.replace(backbone.spec, builder=_no_twin(text))
    return backbone


def _call(text: str) -> object:
    parsed = parse_object_spec(text, BackboneReferenceError, "backbone")
    function = resolve_object(parsed, BackboneReferenceError, "backbone")
    if not callable(function):
        raise BackboneReferenceError(f"backbone {text!r}: {parsed.attribute!r} is not callable")
    try:
        return function() if parsed.arg is None else function(parsed.arg)
    except FaceprobeError:
        raise
    except Exception as exc:  # any failure of the user's function is reported with its reference
        call = f"{parsed.name}()" if parsed.arg is None else f"{parsed.name}({parsed.arg!r})"
        raise BackboneReferenceError(f"backbone {text!r}: {call} failed: {type(exc).__name__}: {exc}") from exc


def load_backbone_reference(text: str, weights: str | Path | None = None, pretrained: bool = True) -> FaceBackbone:
    """The backbone a reference names (see the module doc); its name is ``text``."""
    text = text.strip()
    if text.lower().endswith(".onnx"):
        if weights is not None:
            raise BackboneReferenceError(f"backbone {text!r}: an ONNX file holds its own weights; drop weights "
                                         f"({weights})")
        if not pretrained:
            _no_twin(text)()
        return onnx_backbone(text)
    made = _call(text)
    if isinstance(made, FaceBackbone):
        backbone = FaceBackbone(dataclasses.replace(made.spec, name=text), made.net, made.weights_id)
    elif isinstance(made, nn.Module):
        backbone = wrap_backbone(made, name=text, source=f"{text}, wrapped with wrap_backbone's defaults")
    else:
        raise BackboneReferenceError(f"backbone {text!r} returned {type(made).__name__}; it must return a "
                                     "FaceBackbone or a torch.nn.Module")
    if weights is not None:
        backbone.weights_id = backbone.spec.loader(backbone.net, Path(weights))
    if not pretrained:
        backbone = FaceBackbone(backbone.spec, backbone.spec.builder(), "random-init")
    return backbone
