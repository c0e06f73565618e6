"""Reading face images with one clear error per bad file.

Every loader returns an H x W x 3 uint8 RGB array. Conversions are explicit
and documented: grayscale is replicated to three channels (the shared LFW is
grayscale), RGBA is composited over black, 16-bit images are scaled to 8 bit.
With ``strict=True`` each of those raises :class:`ImageError` instead, for
users who want their pipeline to refuse anything but 8-bit RGB.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError
from .outputs import atomic_write_bytes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def load_image(path: str | Path, strict: bool = False, min_side: int = 16) -> np.ndarray:
    """Load ``path`` as H x W x 3 uint8 RGB.

    Raises :class:`ImageError` naming the file when it is missing, corrupt or
    truncated, smaller than ``min_side`` pixels, or (``strict``) not 8-bit RGB.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()  # decode now so a truncated file fails here, not later
            mode = img.mode
            if strict and mode != "RGB":
                raise ImageError(f"{path}: image mode {mode!r} is not 8-bit RGB (strict mode)")
            array = _to_rgb8(img, path)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from exc
    if min(array.shape[:2]) < min_side:
        raise ImageError(f"{path}: image is {array.shape[1]}x{array.shape[0]}, smaller than {min_side} px")
    return array


def _to_rgb8(img: Image.Image, path: Path) -> np.ndarray:
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        raw = np.asarray(img).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or raw.max() > 255 else 255.0
        gray = np.clip(raw / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        raise ImageError(f"{path}: floating-point images (mode 'F') are not supported; save as 8-bit RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        return np.clip(rgba[..., :3] * alpha + 0.5, 0, 255).astype(np.uint8)  # over black
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def scan_images(paths: Iterable[str | Path], strict: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Check that every path opens; return (good paths, [(bad path, reason)]).

    A scan never stops at the first bad file: it lists them and carries on.
    """
    good, bad = [], []
    for path in paths:
        try:
            load_image(path, strict=strict)
            good.append(Path(path))
        except ImageError as exc:
            bad.append((Path(path), str(exc)))
    if bad:
        warnings.warn(f"{len(bad)} unreadable image(s) skipped, e.g. {bad[0][1]}", stacklevel=2)
    return good, bad


def load_images(paths: Sequence[str | Path], size: tuple[int, int] | None = None,
                strict: bool = False) -> np.ndarray:
    """Load several images into one N x H x W x 3 uint8 array (resized to ``size`` = (H, W) if given)."""
    arrays = []
    for path in paths:
        array = load_image(path, strict=strict)
        if size is not None and array.shape[:2] != tuple(size):
            array = np.asarray(Image.fromarray(array).resize((size[1], size[0]), Image.BILINEAR))
        arrays.append(array)
    if not arrays:
        return np.zeros((0, *(size or (0, 0)), 3), np.uint8)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ImageError(f"images differ in size ({sorted(shapes)[:3]}); pass size=(H, W) to resize them")
    return np.stack(arrays)


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); error if none or missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: image folder does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ImageError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    return files


def to_uint8(images) -> np.ndarray:
    """N x 3 x H x W float tensor/array in [0, 1] (or N x H x W x 3 uint8) -> N x H x W x 3 uint8."""
    if hasattr(images, "detach"):  # a torch tensor (torch is not imported for this)
        images = images.detach().float().cpu().numpy()
    images = np.asarray(images)
    if images.dtype == np.uint8:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"uint8 images must be N x H x W x 3, got {images.shape}")
        return images
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"float images must be N x 3 x H x W in [0, 1], got {images.shape}")
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)


def png_bytes(image: np.ndarray) -> bytes:
    """An H x W x 3 uint8 image as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(image: np.ndarray) -> str:
    """An H x W x 3 uint8 image as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write one H x W x 3 uint8 image as PNG (atomically)."""
    path = Path(path)
    data = png_bytes(image)
    atomic_write_bytes(path, lambda h: h.write(data))
    return path
