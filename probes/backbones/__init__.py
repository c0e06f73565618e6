"""Face-recognition backbones: a registry of specs and one factory."""

from .registry import (
                       BackboneSpec,
                       FaceBackbone,
                       create_backbone,
                       get_spec,
                       images_to_tensor,
                       list_backbones,
                       register_backbone,
)

__all__ = ["BackboneSpec", "FaceBackbone", "create_backbone", "get_spec", "images_to_tensor",
           "list_backbones", "register_backbone"]
