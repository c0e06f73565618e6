"""LFW: the original 250 x 250 frames by person, and the official verification pairs.

The images and protocol files are read here in scikit-learn's folder layout
(``lfw_home/lfw/<Name>/<Name>_NNNN.jpg``, ``lfw_home/pairs*.txt``); scikit-learn
is called only to download missing files (see :mod:`probes.datasets`).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import DatasetError, UnknownNameError
from ..images import IMAGE_SUFFIXES
from .records import FaceDataset, LFWPairs
from .roots import DATA_ENV, LFW_ENV, subsample_indices

# The official LFW protocol files (the checksums scikit-learn pins as well).
LFW_PAIR_FILES = {
    "train": ("pairsDevTrain.txt", "1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa"),
    "test": ("pairsDevTest.txt", "7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c"),
    "10_folds": ("pairs.txt", "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592"),
}



def lfw_home(data_home: str | Path | None = None, download_if_missing: bool = False,
             need: Iterable[str] = ("lfw",)) -> Path:
    """The ``lfw_home`` folder, checked to hold ``need`` (``lfw`` and/or pair file names).

    ``data_home`` (argument, else ``$FACEPROBE_LFW_HOME``, else
    ``$FACEPROBE_DATA``) is scikit-learn's data home, the folder that holds
    ``lfw_home/``; the ``lfw_home`` folder itself is accepted too. Missing
    files are downloaded through scikit-learn only if ``download_if_missing``.
    """
    if data_home is not None:
        home, origin = Path(data_home).expanduser(), "argument data_home"
    elif os.environ.get(LFW_ENV):
        home, origin = Path(os.environ[LFW_ENV]).expanduser(), LFW_ENV
    elif os.environ.get(DATA_ENV):
        home, origin = Path(os.environ[DATA_ENV]).expanduser(), DATA_ENV
    elif download_if_missing:
        from sklearn.datasets import get_data_home
        home, origin = Path(get_data_home()), "scikit-learn's default data home"
    else:
        raise DatasetError(
            f"no LFW data home: pass data_home=<folder holding lfw_home/> or set {LFW_ENV} (or {DATA_ENV}); "
            "or pass download_if_missing=True to let scikit-learn download LFW (about 200 MB)")
    if (home / "lfw_home").is_dir() or not ((home / "lfw").is_dir() or home.name == "lfw_home"):
        folder = home / "lfw_home"
    else:
        folder = home  # the caller pointed at lfw_home itself
    need = tuple(need)
    missing = [folder / n for n in need if not (folder / n).exists()]
    if missing and download_if_missing:
        _download_lfw(folder.parent)
        missing = [folder / n for n in need if not (folder / n).exists()]
    if missing:
        raise DatasetError(
            f"LFW is incomplete at {folder} (data home from {origin}): missing "
            f"{', '.join(str(m) for m in missing)}; point data_home/{LFW_ENV} at the folder holding "
            "lfw_home/, or pass download_if_missing=True")
    return folder


def _download_lfw(home: Path) -> None:
    # scikit-learn does the download and checksum checks; its joblib cache
    # lands in home/lfw_home/joblib, which is writable since we download there.
    from sklearn.datasets import fetch_lfw_pairs

    try:
        fetch_lfw_pairs(subset="test", data_home=str(home), funneled=False, download_if_missing=True)
    except Exception as exc:  # network, disk or archive errors of any kind
        raise DatasetError(f"downloading LFW into {home / 'lfw_home'} with scikit-learn failed: {exc}") from exc


def load_lfw_people(data_home: str | Path | None = None, min_images_per_person: int = 1,
                    max_images: int | None = None, seed: int = 0,
                    download_if_missing: bool = False) -> FaceDataset:
    """LFW images (original 250 x 250, not funneled) with identity = folder name (layout ``lfw``).

    People with fewer than ``min_images_per_person`` images are dropped first;
    ``max_images`` then draws a sorted, seeded subsample of images (which may
    leave some people with fewer images).
    """
    folder = lfw_home(data_home, download_if_missing, need=("lfw",)) / "lfw"
    paths, ids = [], []
    for person in sorted(e.name for e in os.scandir(folder) if e.is_dir()):
        files = sorted(e.name for e in os.scandir(folder / person)
                       if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
        if len(files) >= max(1, min_images_per_person):
            paths += [folder / person / f for f in files]
            ids += [person] * len(files)
    if not paths:
        raise DatasetError(f"no LFW person in {folder} has {min_images_per_person} or more images")
    idx = subsample_indices(len(paths), max_images, seed)
    return FaceDataset("lfw", [paths[i] for i in idx], {"identity": [ids[i] for i in idx]}, layout="lfw",
                       root=folder.parent, label_source={"identity": "LFW folder name"})


def load_lfw_pairs(data_home: str | Path | None = None, subset: str = "10_folds",
                   download_if_missing: bool = False, check_official: bool = True) -> LFWPairs:
    """LFW verification pairs: ``10_folds`` (pairs.txt), ``train`` (DevTrain) or ``test`` (DevTest).

    Every referenced image must exist (``<Name>/<Name>_NNNN.jpg``, 1-based).
    A protocol file that differs from the official one is read but warned about.
    """
    if subset not in LFW_PAIR_FILES:
        raise UnknownNameError(f"unknown LFW pairs subset {subset!r}; valid: {', '.join(LFW_PAIR_FILES)}")
    filename, official = LFW_PAIR_FILES[subset]
    home = lfw_home(data_home, download_if_missing, need=("lfw", filename))
    path = home / filename
    if check_official:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != official:
            warnings.warn(f"{path} is not the official LFW {filename} (sha256 {digest[:12]}...); "
                          "results will not compare with published ones", stacklevel=2)
    pairs_a, pairs_b, same, fold = parse_lfw_pairs_file(path)
    folder = home / "lfw"
    paths_a = [folder / n / f"{n}_{i:04d}.jpg" for n, i in pairs_a]
    paths_b = [folder / n / f"{n}_{i:04d}.jpg" for n, i in pairs_b]
    missing = sorted({str(p) for p in paths_a + paths_b if not p.is_file()})
    if missing:
        raise DatasetError(f"{path} names {len(missing)} image(s) absent from {folder}, e.g. "
                           f"{', '.join(missing[:3])}")
    return LFWPairs(paths_a, paths_b, same, fold, subset, home)


def parse_lfw_pairs_file(path: str | Path) -> tuple[list, list, np.ndarray, np.ndarray]:
    """Parse an LFW pairs file into ([(name, i)], [(name, j)], same, fold).

    Header ``N`` (one fold) or ``F<TAB>N`` (F folds); each fold is N matched
    lines ``name i j`` then N mismatched lines ``name1 i name2 j``.
    """
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise DatasetError(f"{path}: empty LFW pairs file")
    try:
        header = [int(v) for v in lines[0].split()]
    except ValueError:
        raise DatasetError(f"{path}: header {lines[0]!r} is not 'N' or 'folds<TAB>N'") from None
    n_folds, per = (1, header[0]) if len(header) == 1 else tuple(header) if len(header) == 2 else (0, 0)
    if n_folds <= 0 or per <= 0:
        raise DatasetError(f"{path}: header {lines[0]!r} is not 'N' or 'folds<TAB>N'")
    body = lines[1:]
    if len(body) != n_folds * 2 * per:
        raise DatasetError(f"{path}: header promises {n_folds} x 2 x {per} pairs, file has {len(body)} lines")
    a, b, same, fold = [], [], np.zeros(len(body), bool), np.zeros(len(body), np.int64)
    for k, line in enumerate(body):
        fields = line.split("\t") if "\t" in line else line.split()
        matched = (k % (2 * per)) < per
        try:
            if matched and len(fields) == 3:
                a.append((fields[0], int(fields[1])))
                b.append((fields[0], int(fields[2])))
            elif not matched and len(fields) == 4:
                a.append((fields[0], int(fields[1])))
                b.append((fields[2], int(fields[3])))
            else:
                raise ValueError
        except ValueError:
            kind = "matched 'name i j'" if matched else "mismatched 'name1 i name2 j'"
            raise DatasetError(f"{path}, line {k + 2}: {line!r} is not a {kind} pair") from None
        same[k], fold[k] = matched, k // (2 * per)
    return a, b, same, fold

