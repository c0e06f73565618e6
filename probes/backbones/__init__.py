"""Face-recognition backbones: a registry of specs, one factory, and models you bring.

The registry (:mod:`.registry`) imports no network; each built-in network registers its spec when its
module is imported below, as timm's model files do. :func:`wrap_backbone` makes any ``nn.Module`` a
:class:`FaceBackbone`; :func:`create_backbone` also takes ``module:function``, ``file.py:function``
and ``.onnx`` references (:mod:`.external`).
"""

from ..geometry import images_to_tensor
from .external import wrap_backbone
from .registry import BackboneSpec, FaceBackbone, create_backbone, get_spec, list_backbones, register_backbone

__all__ = ["BackboneSpec", "FaceBackbone", "create_backbone", "get_spec", "images_to_tensor",
           "list_backbones", "register_backbone", "wrap_backbone"]

# The built-in networks register themselves on import.
from . import arcface, dlib_resnet, hse, small_facenet, vggface  # noqa: E402,F401
