"""Reference aging functions: baselines for the audit and known answers for its tests.

- :func:`identity` returns its input: perfect identity preservation, no aging
  at all, every target drawn the same (the audit should flag it as ignoring
  the target).
- :func:`collapsed` returns one fixed face whatever the input: no identity
  kept, no diversity (the audit should flag it as collapsed).

Both take ``(images, target)`` like any aging function; :func:`reference_model`
wraps one into an :class:`~decoders.aging.groups.AgingModel`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..aging.groups import AgeGroups, AgingError, check_faces


class FunctionAging:
    """An aging function ``(images, target) -> images`` with its age groups and image size.

    Meets :class:`~decoders.aging.groups.AgingModel`. ``identity_backbone``
    names the face model the function was trained against (None: unknown).
    """

    def __init__(self, function: Callable, groups: AgeGroups, image_size: int, name: str | None = None,
                 identity_backbone: str | None = None):
        if not callable(function):
            raise AgingError(f"aging function {function!r} is not callable")
        self.function = function
        self.groups = groups
        self.image_size = int(image_size)
        self.name = name or getattr(function, "__name__", type(function).__name__)
        self.identity_backbone = identity_backbone

    def age(self, images: np.ndarray, target) -> np.ndarray:
        return self.function(images, target)

    def __repr__(self) -> str:
        return f"FunctionAging({self.name!r}, groups={self.groups.name!r}, image_size={self.image_size})"


def identity(images: np.ndarray, target) -> np.ndarray:
    """The input unchanged (a copy), whatever the target."""
    return np.array(check_faces(images), copy=True)


def synthetic_face(size: int = 64) -> np.ndarray:
    """A fixed, drawn face (size x size x 3 uint8): skin oval, eyes, brows, nose, mouth on grey."""
    from PIL import Image, ImageDraw, ImageFilter

    s = 4 * size  # draw large, then shrink: smooth edges

    def box(x0, y0, x1, y1):
        return [x0 * s, y0 * s, x1 * s, y1 * s]

    image = Image.new("RGB", (s, s), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    draw.ellipse(box(0.2, 0.1, 0.8, 0.95), fill=(214, 170, 140))
    draw.chord(box(0.18, 0.02, 0.82, 0.5), 180, 360, fill=(70, 50, 40))  # hair
    for cx in (0.37, 0.63):
        draw.ellipse(box(cx - 0.07, 0.42, cx + 0.07, 0.49), fill=(245, 245, 245))
        draw.ellipse(box(cx - 0.03, 0.425, cx + 0.03, 0.485), fill=(60, 40, 30))
        draw.line(box(cx - 0.08, 0.37, cx + 0.08, 0.36), fill=(80, 60, 50), width=max(1, s // 60))
    draw.polygon([(0.5 * s, 0.48 * s), (0.45 * s, 0.64 * s), (0.55 * s, 0.64 * s)], fill=(195, 150, 122))
    draw.chord(box(0.38, 0.68, 0.62, 0.8), 0, 180, fill=(160, 70, 70))
    image = image.filter(ImageFilter.GaussianBlur(s / 120)).resize((size, size), Image.LANCZOS)
    return np.asarray(image, np.uint8)


def collapsed(images: np.ndarray, target) -> np.ndarray:
    """One fixed face (:func:`synthetic_face`) for every input and target: a collapsed generator."""
    images = check_faces(images)
    if images.shape[1] != images.shape[2]:
        raise AgingError(f"collapsed: images must be square, got {images.shape[2]}x{images.shape[1]}")
    return np.ascontiguousarray(np.broadcast_to(synthetic_face(images.shape[1]), images.shape))


class CollapsedAging:
    """Returns ``face`` (one H x W x 3 uint8 image) for every input: a fully collapsed generator.

    ``reference_model("collapsed", ..., faces=inputs)`` uses the pixel mean of
    the audited inputs, the blurry average face collapsed GANs tend to draw.
    """

    def __init__(self, groups: AgeGroups, image_size: int, face: np.ndarray | None = None, name: str = "collapsed"):
        self.groups = groups
        self.image_size = int(image_size)
        face = synthetic_face(self.image_size) if face is None else np.asarray(face)
        if face.shape != (self.image_size, self.image_size, 3) or face.dtype != np.uint8:
            raise AgingError(f"the collapsed face must be a {self.image_size}x{self.image_size}x3 uint8 image, "
                             f"got {face.dtype} {face.shape}")
        self.face = face
        self.name = name
        self.identity_backbone = None

    def age(self, images: np.ndarray, target) -> np.ndarray:
        images = check_faces(images, self.image_size)
        return np.ascontiguousarray(np.broadcast_to(self.face, images.shape))


REFERENCES: dict[str, Callable] = {"identity": identity, "collapsed": collapsed}


def reference_model(name: str, groups: AgeGroups, image_size: int, faces: np.ndarray | None = None):
    """The reference ``name`` (``identity`` or ``collapsed``) as an AgingModel.

    ``faces`` (N x S x S x 3 uint8): for ``collapsed``, the fixed face is their
    pixel mean; without them it is :func:`synthetic_face`.
    """
    if name not in REFERENCES:
        raise AgingError(f"unknown reference aging function {name!r}; known: {', '.join(REFERENCES)}")
    if name == "collapsed":
        face = None
        if faces is not None and len(faces):
            face = np.asarray(faces, np.float64).mean(0).round().clip(0, 255).astype(np.uint8)
        return CollapsedAging(groups, image_size, face, name="collapsed (mean input face)" if face is not None
                              else "collapsed (drawn face)")
    return FunctionAging(REFERENCES[name], groups, image_size, name=name)
