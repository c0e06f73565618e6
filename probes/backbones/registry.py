"""Backbone registry: one spec per face-recognition network, one factory.

Each built-in network registers its :class:`~.base.BackboneSpec` when its module is imported;
the registry imports none of them. :func:`create_backbone` builds a registered network and loads
weights from local files only (nothing is downloaded), or builds a model you bring from a reference
(``package.module:function[=arg]``, ``path/to/file.py:function[=arg]`` or an ``.onnx`` file; see
:mod:`.external`), so every command's ``--backbone`` takes both.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UnknownNameError, lookup, register
from .base import BackboneSpec, FaceBackbone
from .external import REFERENCE_FORMS, is_backbone_reference, load_backbone_reference

__all__ = ["BackboneSpec", "FaceBackbone", "create_backbone", "get_spec", "list_backbones", "register_backbone"]

_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    return register(_REGISTRY, spec.name, spec, "backbone")


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> BackboneSpec:
    return lookup(_REGISTRY, name, "backbone")


def create_backbone(name: str, weights: str | Path | None = None, device: str | torch.device = "cpu",
                    pretrained: bool = True) -> FaceBackbone:
    """Build backbone ``name`` with weights from a local file.

    ``name`` is a registered name (``python -m probes.backbones list``) or a reference to a model you
    bring: ``package.module:function[=arg]``, ``path/to/file.py:function[=arg]`` (the function returns a
    :class:`FaceBackbone`, or an ``nn.Module`` that is wrapped with
    :func:`~probes.backbones.wrap_backbone`'s defaults) or ``path/to/model.onnx`` (run by onnxruntime).
    ``weights`` overrides the default file (for networks whose weights the user brings, it is required;
    for a reference, a PyTorch state dict loaded into its module). ``pretrained=False`` leaves random
    weights (tests, chance baselines). Nothing is ever downloaded.
    """
    if isinstance(name, str) and name.strip() in _REGISTRY:
        spec = _REGISTRY[name.strip()]
        net = spec.builder()
        if pretrained:
            weights_id = spec.loader(net, Path(weights) if weights is not None else None)
        else:
            weights_id = "random-init"
        backbone = FaceBackbone(spec, net, weights_id)
    elif is_backbone_reference(name):
        backbone = load_backbone_reference(name, weights, pretrained)
    else:
        raise UnknownNameError(f"unknown backbone {name!r}; registered: {', '.join(sorted(_REGISTRY))}; or bring "
                               f"your own as {REFERENCE_FORMS}")
    backbone = backbone.to(device)
    backbone.eval()
    return backbone
