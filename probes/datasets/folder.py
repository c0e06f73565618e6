"""Any folder of images, with labels from an optional CSV."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DatasetError, preview
from ..images import IMAGE_SUFFIXES, scan_images
from .people import PEOPLE_LAYOUT, load_people
from .records import FaceDataset


def _coerce_sex(column: pd.Series, csv: Path) -> pd.Series:
    words = {"m": 0, "male": 0, "man": 0, "f": 1, "female": 1, "woman": 1}
    out = []
    for value in column:
        if pd.isna(value):
            out.append(np.nan)
        elif isinstance(value, str) and value.strip().lower() in words:
            out.append(words[value.strip().lower()])
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = None
            if number not in (0.0, 1.0):
                raise DatasetError(f"{csv}: column 'sex' has {value!r}; use 0/1 (0 = male, 1 = female) or M/F")
            out.append(number)
    return pd.Series(out, index=column.index, dtype=np.float64)


def load_folder(root: str | Path, labels_csv: str | Path | None = None, layout: str = "chip",
                scan: bool = False, name: str | None = None, cache_dir: str | Path | None = None,
                detector=None) -> FaceDataset:
    """Any folder of images (recursive, sorted), with optional labels; or one sub-folder per person.

    ``labels_csv`` has a ``file`` column (path relative to ``root``) and any of
    ``identity``/``age``/``sex``/``race`` (other columns are kept as labels
    too); its rows give the order. Listed files that do not exist raise one
    error listing them; images not in the CSV are ignored with a warning.
    ``scan=True`` opens every image, leaves out unreadable ones (listed in
    ``dataset.skipped``) and carries on. ``layout`` says how the images are
    cropped (``chip``, ``lfw``, ``utkface``), or is ``"people"``: one
    sub-folder per person of uncropped photos, identity = the sub-folder's
    name, faces found by ``detector`` and aligned into LFW-style frames cached
    in ``cache_dir`` (:func:`probes.datasets.people.load_people`; what was
    left out and why is in ``dataset.skipped``).
    """
    root = Path(root).expanduser()
    if layout == PEOPLE_LAYOUT:
        if labels_csv is not None:
            raise DatasetError(f"layout {PEOPLE_LAYOUT!r} takes identities from the sub-folder names of {root}; "
                               "labels_csv is for a flat folder of crops")
        return load_people(root, cache_dir=cache_dir, detector=detector, name=name)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    table = None
    if labels_csv is None:
        if not found:
            raise DatasetError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
        paths = found
    else:
        paths, table = _read_labels(root, Path(labels_csv).expanduser(), found)
    skipped: list[tuple[Path, str]] = []
    if scan:
        good, skipped = scan_images(paths)
        good_set = set(good)
        keep = np.array([p in good_set for p in paths], bool)
        paths = [p for p, k in zip(paths, keep) if k]
        if table is not None:
            table = table[keep].reset_index(drop=True)
        if not paths:
            raise DatasetError(f"{root}: none of the images is readable ({skipped[0][1]})")
    sources = {c: f"{labels_csv}" for c in (table.columns if table is not None else [])}
    return FaceDataset(name or root.name, paths, table, layout=layout, root=root, label_source=sources,
                       skipped=skipped)


def _read_labels(root: Path, csv: Path, found: list[Path]) -> tuple[list[Path], pd.DataFrame]:
    """The files ``csv`` lists under ``root`` (in its order) and its label table, with known columns typed."""
    if not csv.is_file():
        raise DatasetError(f"label file {csv} does not exist")
    try:
        table = pd.read_csv(csv)
    except Exception as exc:  # pandas raises several parser errors
        raise DatasetError(f"{csv}: not a readable CSV ({exc})") from exc
    if "file" not in table.columns:
        raise DatasetError(f"{csv}: no 'file' column (columns: {', '.join(map(str, table.columns))})")
    files = table.pop("file").astype(str).str.strip()
    dup = sorted(files[files.duplicated()].unique())
    if dup:
        raise DatasetError(f"{csv}: {len(dup)} file(s) listed more than once, e.g. {', '.join(dup[:5])}")
    paths = [root / f for f in files]
    missing = [str(f) for f, p in zip(files, paths) if not p.is_file()]
    if missing:
        raise DatasetError(f"{csv}: {len(missing)} listed file(s) do not exist under {root}: "
                           f"{preview(missing, 10)}")
    listed = {p.resolve() for p in paths}
    extra = [p for p in found if p.resolve() not in listed]
    if extra:
        # stacklevel 3: the warning names the caller of load_folder
        warnings.warn(f"{root}: {len(extra)} image(s) not in {csv.name} ignored, e.g. "
                      f"{', '.join(str(p.relative_to(root)) for p in extra[:3])}", stacklevel=3)
    if "age" in table:
        try:
            table["age"] = pd.to_numeric(table["age"]).astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise DatasetError(f"{csv}: column 'age' must hold numbers (years): {exc}") from None
    if "sex" in table:
        table["sex"] = _coerce_sex(table["sex"], csv)
    if "identity" in table:
        table["identity"] = [None if pd.isna(v) else str(int(v)) if isinstance(v, float) and v.is_integer()
                             else str(v) for v in table["identity"]]
    return paths, table
