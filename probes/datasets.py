"""Face datasets as lists of image paths plus labels.

A :class:`FaceDataset` never holds pixels: it holds paths, a label table
(``identity``, ``age`` in years, ``sex`` 0 = male / 1 = female, ``race``) and a
``layout`` (``"utkface"``, ``"lfw"`` or ``"chip"``) that tells a backbone which
crop to take. Images are read on demand with :func:`probes.images.load_image`.

Where the data live: every loader takes a root argument; without one it reads
``FACEPROBE_DATA`` (the folder holding ``utkface/`` and ``lfw_home/``). LFW
also honours ``FACEPROBE_LFW_HOME`` (scikit-learn's ``data_home``, i.e. the
folder holding ``lfw_home/``; pointing at ``lfw_home`` itself works too).

LFW and scikit-learn: :func:`load_lfw_people` and :func:`load_lfw_pairs` read
the original 250 x 250 JPEGs and the official protocol files themselves, in
scikit-learn's folder layout (``lfw_home/lfw/<Name>/<Name>_NNNN.jpg``,
``lfw_home/pairs*.txt``). scikit-learn's loaders are *not* used to read:
they return 62 x 47 downsampled arrays and write a joblib cache into
``lfw_home/joblib``, which fails on a read-only shared folder. They are called
only when files are missing and ``download_if_missing=True``: then
``fetch_lfw_pairs(subset="test", funneled=False)`` downloads the archive and
protocol files into ``data_home/lfw_home`` (a folder we are writing to anyway,
so its joblib cache is harmless there).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DatasetError, UnknownNameError
from .images import IMAGE_SUFFIXES, load_images, scan_images

DATA_ENV = "FACEPROBE_DATA"
LFW_ENV = "FACEPROBE_LFW_HOME"
LAYOUTS = ("chip", "lfw", "utkface")
LABEL_COLUMNS = ("identity", "age", "sex", "race")
UTKFACE_RACES = ("White", "Black", "Asian", "Indian", "Others")

# The official LFW protocol files (the checksums scikit-learn pins as well).
LFW_PAIR_FILES = {
    "train": ("pairsDevTrain.txt", "1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa"),
    "test": ("pairsDevTest.txt", "7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c"),
    "10_folds": ("pairs.txt", "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592"),
}


# --------------------------------------------------------------------------- records


class FaceDataset:
    """Image paths plus a label table, one row per image.

    ``labels`` is a DataFrame (any of ``identity``, ``age``, ``sex``, ``race``
    and further columns); ``label_source`` says where each column came from
    (published, estimated by a labeller, ...), so estimates stay marked.
    """

    def __init__(self, name: str, paths: Sequence[str | Path], labels: pd.DataFrame | Mapping | None = None,
                 layout: str = "chip", root: str | Path | None = None,
                 label_source: Mapping[str, str] | None = None,
                 skipped: Sequence[tuple[Path, str]] = ()):
        if layout not in LAYOUTS:
            raise UnknownNameError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
        self.name = name
        self.paths = [Path(p) for p in paths]
        table = pd.DataFrame(labels if labels is not None else {}, index=None)
        if len(table.columns) and len(table) != len(self.paths):
            raise DatasetError(f"dataset {name!r}: {len(self.paths)} paths but {len(table)} label rows")
        self.table = table.reset_index(drop=True) if len(table.columns) else pd.DataFrame(index=range(len(self.paths)))
        self.layout = layout
        self.root = Path(root) if root is not None else None
        self.label_source = dict(label_source or {})
        self.skipped = list(skipped)  # (path, reason) of files a scan left out

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (f"FaceDataset({self.name!r}, n={len(self)}, layout={self.layout!r}, "
                f"attributes={list(self.attributes)})")

    @property
    def attributes(self) -> tuple[str, ...]:
        """Label columns with at least one known value."""
        return tuple(c for c in self.table.columns if self.table[c].notna().any())

    def labels(self, attribute: str) -> np.ndarray:
        """The ``attribute`` column as an array (age float; sex/race int when complete, else float with NaN)."""
        if attribute not in self.attributes:
            raise DatasetError(
                f"{self.name} has no {attribute!r} labels (it has: {', '.join(self.attributes) or 'none'}); "
                f"estimate them with a labeller (probes.labellers) and attach them with "
                f"dataset.with_labels({attribute}=values, source='estimated by ...')")
        column = self.table[attribute]
        if attribute == "identity":
            return np.array([None if pd.isna(v) else str(v) for v in column], dtype=object)
        if attribute == "age":
            return column.to_numpy(dtype=np.float64, na_value=np.nan)
        if pd.api.types.is_numeric_dtype(column):
            if column.notna().all() and np.all(np.mod(column.to_numpy(dtype=np.float64), 1) == 0):
                return column.to_numpy(dtype=np.int64)
            return column.to_numpy(dtype=np.float64, na_value=np.nan)
        return column.to_numpy(dtype=object)

    def with_labels(self, source: str = "estimated", **columns) -> FaceDataset:
        """A copy with label columns added or replaced (e.g. ``age=labeller(images)``)."""
        table = self.table.copy()
        sources = dict(self.label_source)
        for key, values in columns.items():
            values = np.asarray(values)
            if values.ndim != 1 or len(values) != len(self):
                raise DatasetError(f"label {key!r} must have one value per image ({len(self)}), "
                                   f"got shape {values.shape}")
            table[key] = values
            sources[key] = source
        return FaceDataset(self.name, self.paths, table, self.layout, self.root, sources, self.skipped)

    def subset(self, indices) -> FaceDataset:
        """A dataset of the images at ``indices`` (integer array or boolean mask), in that order."""
        idx = _as_indices(indices, len(self))
        table = self.table.iloc[idx].reset_index(drop=True)
        return FaceDataset(self.name, [self.paths[i] for i in idx], table, self.layout, self.root,
                           self.label_source)

    def load_images(self, indices=None, size: tuple[int, int] | None = None) -> np.ndarray:
        """Images at ``indices`` (default all) as an N x H x W x 3 uint8 array.

        Images of one dataset must share a size; pass ``size=(H, W)`` to resize
        those of a mixed folder.
        """
        idx = range(len(self)) if indices is None else _as_indices(indices, len(self))
        return load_images([self.paths[i] for i in idx], size=size)


def _as_indices(indices, n: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise DatasetError(f"boolean mask has shape {idx.shape}, dataset has {n} images")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return np.zeros(0, np.int64)
    if not np.issubdtype(idx.dtype, np.integer):
        raise DatasetError(f"indices must be integers or a boolean mask, got {idx.dtype}")
    idx = idx.reshape(-1).astype(np.int64)
    if idx.min() < -n or idx.max() >= n:
        raise DatasetError(f"index out of range for a dataset of {n} images: {idx.min()}..{idx.max()}")
    return np.where(idx < 0, idx + n, idx)


@dataclass
class LFWPairs:
    """LFW verification pairs: two path lists, same/different labels and fold numbers.

    ``fold`` runs 0..9 for ``10_folds``; the DevTrain/DevTest views are a
    single fold 0. Embed each distinct image once::

        images = pairs.dataset()             # FaceDataset of unique_paths()
        emb = embed_dataset(backbone, images)
        d = np.linalg.norm(emb[pairs.index_a] - emb[pairs.index_b], axis=1)
    """

    paths_a: list[Path]
    paths_b: list[Path]
    same: np.ndarray  # bool
    fold: np.ndarray  # int
    subset: str
    root: Path
    index_a: np.ndarray = field(init=False, repr=False)
    index_b: np.ndarray = field(init=False, repr=False)
    _unique: list[Path] = field(init=False, repr=False)

    def __post_init__(self):
        self._unique = sorted(set(self.paths_a) | set(self.paths_b), key=str)
        where = {p: i for i, p in enumerate(self._unique)}
        self.index_a = np.array([where[p] for p in self.paths_a], dtype=np.int64)
        self.index_b = np.array([where[p] for p in self.paths_b], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.same)

    def __repr__(self) -> str:
        return (f"LFWPairs(subset={self.subset!r}, n={len(self)}, same={int(self.same.sum())}, "
                f"folds={len(np.unique(self.fold))}, images={len(self._unique)})")

    def unique_paths(self) -> list[Path]:
        """Distinct images, sorted; ``unique_paths()[index_a[k]] == paths_a[k]``."""
        return list(self._unique)

    def dataset(self) -> FaceDataset:
        """The distinct images as a FaceDataset (identity = LFW folder name, layout ``lfw``)."""
        return FaceDataset(f"lfw-pairs-{self.subset}", self._unique,
                           {"identity": [p.parent.name for p in self._unique]}, layout="lfw",
                           root=self.root, label_source={"identity": "LFW folder name"})


# --------------------------------------------------------------------------- roots


def data_root(root: str | Path | None = None) -> Path:
    """The shared data folder: ``root`` or ``$FACEPROBE_DATA``; a clear error when neither exists."""
    if root is not None:
        where = Path(root).expanduser()
        if not where.is_dir():
            raise DatasetError(f"data root {where} (argument root) does not exist")
        return where
    env = os.environ.get(DATA_ENV)
    if not env:
        raise DatasetError(f"no data root: pass root=... or set {DATA_ENV} to the folder holding "
                           "utkface/ and lfw_home/")
    where = Path(env).expanduser()
    if not where.is_dir():
        raise DatasetError(f"data root {where} (from {DATA_ENV}) does not exist")
    return where


def subsample_indices(n: int, max_images: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of ``max_images`` of ``n`` items (all of them when None or >= n)."""
    if max_images is None or max_images >= n:
        return np.arange(n)
    if max_images <= 0:
        raise DatasetError(f"max_images must be positive, got {max_images}")
    return np.sort(np.random.default_rng(seed).choice(n, size=max_images, replace=False))


# --------------------------------------------------------------------------- UTKFace


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


# --------------------------------------------------------------------------- LFW


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


# --------------------------------------------------------------------------- any folder


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
                scan: bool = False, name: str | None = None) -> FaceDataset:
    """Any folder of images (recursive, sorted), with optional labels.

    ``labels_csv`` has a ``file`` column (path relative to ``root``) and any of
    ``identity``/``age``/``sex``/``race`` (other columns are kept as labels
    too); its rows give the order. Listed files that do not exist raise one
    error listing them; images not in the CSV are ignored with a warning.
    ``scan=True`` opens every image, leaves out unreadable ones (listed in
    ``dataset.skipped``) and carries on.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    table = None
    if labels_csv is None:
        if not found:
            raise DatasetError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
        paths = found
    else:
        csv = Path(labels_csv).expanduser()
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
                               f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        listed = {p.resolve() for p in paths}
        extra = [p for p in found if p.resolve() not in listed]
        if extra:
            warnings.warn(f"{root}: {len(extra)} image(s) not in {csv.name} ignored, e.g. "
                          f"{', '.join(str(p.relative_to(root)) for p in extra[:3])}", stacklevel=2)
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


# --------------------------------------------------------------------------- splits and dispatch


def identity_split(dataset: FaceDataset, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                   by: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic (train, val, test) index arrays, sorted.

    With identities (``by="auto"`` or ``"identity"``) the split is
    identity-disjoint: people are shuffled with ``seed`` and whole people are
    assigned until each part holds about its fraction of the *images*; an
    image without an identity counts as its own person. Without identities
    (UTKFace) ``by="auto"`` splits the images themselves at random with
    ``seed`` -- the same person could then land in two parts. ``by="image"``
    forces that; ``by="identity"`` raises when there are no identities.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise DatasetError(f"fractions must be three non-negative numbers summing to 1, got {fractions.tolist()}")
    if by not in ("auto", "identity", "image"):
        raise UnknownNameError(f"unknown split mode {by!r}; valid: auto, identity, image")
    n = len(dataset)
    rng = np.random.default_rng(seed)
    has_ids = "identity" in dataset.attributes
    if by == "identity" and not has_ids:
        raise DatasetError(f"{dataset.name} has no identity labels for an identity split; use by='image'")
    if by == "image" or not has_ids:
        groups = np.arange(n)
    else:
        ids = dataset.labels("identity")
        ids = np.array([f"\0image{i}" if v is None else v for i, v in enumerate(ids)], dtype=object)
        _, groups = np.unique(ids.astype(str), return_inverse=True)
    n_groups = groups.max() + 1 if n else 0
    order = rng.permutation(n_groups)
    sizes = np.bincount(groups, minlength=n_groups)[order]
    # A person goes to the part in which the midpoint of their images falls.
    mid = (np.cumsum(sizes) - sizes / 2) / max(n, 1)
    part_of_group = np.empty(n_groups, np.int64)
    part_of_group[order] = np.searchsorted(np.cumsum(fractions)[:2], mid, side="right")
    part = part_of_group[groups]
    return tuple(np.flatnonzero(part == k) for k in range(3))  # type: ignore[return-value]


DATASETS = ("utkface", "lfw", "folder")


def load_dataset(name: str, root: str | Path | None = None, **kwargs) -> FaceDataset:
    """Load a dataset by name: ``utkface``, ``lfw`` (people) or ``folder`` (``root`` required)."""
    if name == "utkface":
        return load_utkface(root, **kwargs)
    if name == "lfw":
        return load_lfw_people(root, **kwargs)
    if name == "folder":
        if root is None:
            raise DatasetError("load_dataset('folder') needs root=<image folder>")
        return load_folder(root, **kwargs)
    raise UnknownNameError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
