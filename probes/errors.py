"""Exceptions raised by faceprobe.

Every error names the file, argument or layer at fault, so a user can act on
the message without reading a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class FaceprobeError(Exception):
    """Base class of every error faceprobe raises on purpose."""


class WeightFileError(FaceprobeError):
    """A weight file is missing, truncated, of the wrong hash, keys or shapes."""


class FetchError(FaceprobeError):
    """Obtaining a weight package failed (no npm/pip, network, bad archive)."""


class ImageError(FaceprobeError, ValueError):
    """An image file cannot be used (corrupt, wrong mode, too small, not a face)."""


class DatasetError(FaceprobeError, ValueError):
    """A dataset root or label file is missing or unusable."""


class UnknownNameError(FaceprobeError, KeyError):
    """An unknown backbone, labeller or layer name; the message lists valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NoFaceError(ImageError):
    """No face was detected in an image; the message names it (index or path), ``missing`` lists all."""

    def __init__(self, message: str, missing=()):
        super().__init__(message)
        self.missing = list(missing)


class TrainingError(FaceprobeError):
    """A training run that cannot start or go on (bad settings, output folder, diverged loss)."""


class RunFailure(FaceprobeError):
    """A command ran but its check or computation failed (exit code 1, not a usage error's 2)."""


def preview(items: Sequence, limit: int, sep: str | None = ", ") -> str:
    """The first ``limit`` of ``items`` for a message, followed by `` ...`` when there are more: joined by
    ``sep`` (each item as ``str``), or as the sliced sequence itself when ``sep`` is None (``['a', 'b'] ...``)."""
    shown = items[:limit]
    text = str(shown) if sep is None else sep.join(map(str, shown))
    return text + (" ..." if len(items) > limit else "")


def lookup(table: Mapping, name, what: str, known: str = "registered"):
    """``table[name]``, or an :class:`UnknownNameError` naming ``what`` and listing the known names."""
    try:
        return table[name]
    except (KeyError, TypeError):
        listed = ", ".join(sorted(table)) or "none"
        raise UnknownNameError(f"unknown {what} {name!r}; {known}: {listed}") from None


def register(table: dict, name: str, value, what: str):
    """Add ``value`` under ``name`` to a registry ``table``; a second registration is refused."""
    if name in table:
        raise ValueError(f"{what} {name!r} is already registered")
    table[name] = value
    return value
