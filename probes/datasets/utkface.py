"""UTKFace: aligned 200 x 200 crops with age, sex and race in their file names."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DatasetError
from ..images import IMAGE_SUFFIXES
from .records import FaceDataset
from .roots import data_root, subsample_indices

UTKFACE_RACES = ("White", "Black", "Asian", "Indian", "Others")


def parse_utkface_name(filename: str) -> tuple[float, int, int, str] | None:
    """``age_gender_race_datetime.jpg.chip.jpg`` -> (age, sex, race, datetime); None if malformed."""
    parts = filename.split(".")[0].split("_")
    if len(parts) != 4:
        return None
    try:
        age, sex, race = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if not (0 <= age <= 130 and sex in (0, 1) and 0 <= race < len(UTKFACE_RACES)):
        return None
    return float(age), sex, race, parts[3]


def load_utkface(root: str | Path | None = None, max_images: int | None = None, seed: int = 0) -> FaceDataset:
    """UTKFace crops with age/sex/race from the file names (layout ``utkface``).

    ``root`` is the data root holding ``utkface/`` or the image folder itself
    (default ``$FACEPROBE_DATA``). Files are sorted by name; malformed names
    are skipped and reported in one warning. ``max_images`` draws a sorted,
    seeded subsample. There are no identities: split with
    :func:`identity_split`, which falls back to an image split here.
    """
    base = data_root(root)
    folder = base / "utkface" if (base / "utkface").is_dir() else base
    names = sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise DatasetError(f"no UTKFace images in {folder}")
    rows, paths, bad = [], [], []
    for name in names:
        parsed = parse_utkface_name(name)
        if parsed is None:
            bad.append(name)
            continue
        rows.append(parsed)
        paths.append(folder / name)
    if bad:
        warnings.warn(f"UTKFace: skipped {len(bad)} file(s) whose name is not "
                      f"age_gender_race_datetime.jpg.chip.jpg, e.g. {', '.join(bad[:3])}", stacklevel=2)
    if not rows:
        raise DatasetError(f"no UTKFace file in {folder} has a parsable name")
    idx = subsample_indices(len(rows), max_images, seed)
    table = pd.DataFrame([rows[i][:3] for i in idx], columns=["age", "sex", "race"])
    table = table.astype({"age": np.float64, "sex": np.int64, "race": np.int64})
    source = "UTKFace file name (published labels, themselves estimated)"
    return FaceDataset("utkface", [paths[i] for i in idx], table, layout="utkface", root=folder,
                       label_source={c: source for c in ("age", "sex", "race")})

