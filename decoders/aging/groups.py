"""Age groups of the aging GANs, and the contract every aging function meets.

An *aging function* takes faces and a target age group and returns the same
faces at that age. The audit (:mod:`decoders.audit`) accepts anything that
meets :class:`AgingModel`: a trained IPCGAN or Age-cGAN, a user's function, or
a folder of pre-aged images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from probes.errors import FaceprobeError


class AgingError(FaceprobeError, ValueError):
    """Bad input to an aging model or its audit (wrong group, shape, range or dtype)."""


@dataclass(frozen=True)
class AgeGroups:
    """Consecutive age intervals: group ``i`` holds ages in ``[lower[i], lower[i + 1])``.

    Ages under ``lower[0]`` belong to no group (IPCGAN's groups start at 11).
    """

    name: str
    lower: tuple[int, ...]
    labels: tuple[str, ...]

    def __post_init__(self):
        if len(self.lower) != len(self.labels) or len(self.lower) < 2:
            raise AgingError(f"age groups {self.name!r}: need >= 2 groups with one label each")
        if any(b <= a for a, b in zip(self.lower, self.lower[1:])):
            raise AgingError(f"age groups {self.name!r}: lower bounds must increase, got {self.lower}")

    def __len__(self) -> int:
        return len(self.lower)

    def of(self, ages) -> np.ndarray:
        """Group index of each age (years); -1 for ages below the first group or NaN."""
        ages = np.asarray(ages, dtype=np.float64)
        index = np.searchsorted(np.asarray(self.lower, np.float64), ages, side="right") - 1
        index[~np.isfinite(ages)] = -1
        return index.astype(np.int64)

    def check(self, target, argument: str = "target") -> np.ndarray:
        """``target`` (an int or an array of ints) as an int64 array; AgingError names bad values."""
        values = np.atleast_1d(np.asarray(target))
        if values.dtype.kind not in "iu" and not (values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0)):
            raise AgingError(f"{argument} must be integer group indices of {self.name} "
                             f"(0..{len(self) - 1}: {', '.join(self.labels)}), got {values.dtype}")
        values = values.astype(np.int64)
        bad = values[(values < 0) | (values >= len(self))]
        if bad.size:
            raise AgingError(f"{argument} {int(bad[0])} is outside the trained age groups of {self.name}: "
                             f"0..{len(self) - 1} ({', '.join(self.labels)})")
        return values

    def per_face(self, values, n: int, argument: str = "target") -> np.ndarray:
        """:meth:`check`-ed group indices for ``n`` faces: one index is repeated, else exactly ``n`` are needed."""
        values = self.check(values, argument)
        if values.size == 1:
            return np.repeat(values, n)
        if values.size != n:
            raise AgingError(f"{argument} must be one group index or one per image ({n}), got {values.size}")
        return values

    def midpoints(self, oldest: float = 70.0) -> np.ndarray:
        """A representative age per group (the last, open group ends at ``oldest``)."""
        upper = list(self.lower[1:]) + [max(oldest, self.lower[-1] + 1)]
        return np.array([(a + b - 1) / 2 for a, b in zip(self.lower, upper)], dtype=np.float64)

    def to_dict(self) -> dict:
        return {"name": self.name, "lower": list(self.lower), "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, values: dict) -> AgeGroups:
        return cls(str(values["name"]), tuple(int(v) for v in values["lower"]),
                   tuple(str(v) for v in values["labels"]))


# Wang et al. (CVPR 2018): 11-20, 21-30, 31-40, 41-50, 50+ (ages 51 and over in the last group).
IPCGAN_GROUPS = AgeGroups("ipcgan", (11, 21, 31, 41, 51), ("11-20", "21-30", "31-40", "41-50", "50+"))
# Antipov et al. (2017): 0-18, 19-29, 30-39, 40-49, 50-59, 60+.
AGECGAN_GROUPS = AgeGroups("agecgan", (0, 19, 30, 40, 50, 60), ("0-18", "19-29", "30-39", "40-49", "50-59", "60+"))


@runtime_checkable
class AgingModel(Protocol):
    """What the audit needs of an aging function.

    ``age(images, target)``: ``images`` N x H x W x 3 uint8 RGB faces (UTKFace
    layout, ``image_size`` square), ``target`` one group index or N of them;
    returns N x H x W x 3 uint8 RGB of the same size.
    """

    groups: AgeGroups
    image_size: int

    def age(self, images: np.ndarray, target) -> np.ndarray: ...


def check_faces(images, image_size: int | None = None, argument: str = "images") -> np.ndarray:
    """``images`` as an N x H x W x 3 uint8 array; AgingError names what is wrong."""
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise AgingError(f"{argument} must be N x H x W x 3 RGB, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise AgingError(f"{argument} must be uint8 (0..255), got {array.dtype}")
    if image_size is not None and array.shape[1:3] != (image_size, image_size):
        raise AgingError(f"{argument} must be {image_size}x{image_size}, got {array.shape[2]}x{array.shape[1]}")
    return array
