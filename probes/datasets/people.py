"""A folder of uncropped photos, one sub-folder per person: faces found, aligned into LFW-style frames, cached.

    root/
      Ada_Lovelace/   001.jpg  holiday.png ...
      Alan_Turing/    a.jpg ...

Identity is the sub-folder's name (images further down belong to it too). Each photo goes through
:func:`probes.align.detect_and_align`: the face detector (:data:`probes.align.DEFAULT_DETECTOR` unless
told otherwise) finds its faces, one is chosen by :data:`probes.align.DEFAULT_SELECT` (the reason is
kept: :attr:`PeopleFolder.why`), the 68-landmark net finds its points and the photo is warped so the five
points sit where an LFW frame has them (:func:`probes.geometry.lfw_frame_template`, 250 x 250). The
frames are cached as PNG (one per photo, keyed by its path, size, modification time and the detector),
so a second load detects nothing; the data set has layout ``"lfw"``, and every command that reads LFW
reads it.

Nothing is dropped silently: files that are not images, unreadable or too small images, photos without a
face, images outside a person's sub-folder, sub-folders without images and sub-folders whose name is not
a usable identity are listed with the reason in ``dataset.skipped`` ((path, reason) pairs), which
:func:`write_skipped` writes as a CSV next to a command's results.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..align import DEFAULT_DETECTOR, DEFAULT_SELECT, DetectionOptions, create_detector, detect_and_align
from ..errors import DatasetError, ImageError
from ..geometry import LFW_FRAME_SIZE, lfw_frame_template
from ..images import IMAGE_SUFFIXES, load_image, save_png
from ..outputs import write_csv, write_json
from ..weights import cache_home
from .records import FaceDataset

PEOPLE_LAYOUT = "people"  # load_folder's layout for one sub-folder per person of uncropped photos
CACHE_VERSION = 1  # bump when the frames change for the same photo and detector
SKIPPED_FILE = "skipped.csv"


def identity_problem(name: str) -> str | None:
    """Why a sub-folder name cannot be an identity, or None when it can."""
    if not name.strip():
        return "a blank name"
    if name != name.strip():
        return "leading or trailing spaces"
    if name.startswith("."):
        return "a hidden name (starts with '.')"
    if not name.isprintable():
        return "unprintable characters"
    return None


def people_cache_dir(cache_dir: str | Path | None) -> Path:
    """Where aligned frames are cached: ``cache_dir``, or ``$FACEPROBE_HOME/aligned``."""
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_home() / "aligned"


def load_people(root: str | Path, cache_dir: str | Path | None = None, detector=None, landmarks=None,
                name: str | None = None, batch_size: int = 16) -> FaceDataset:
    """One sub-folder per person of uncropped photos -> a FaceDataset of aligned LFW-style frames.

    ``detector``: a name in :data:`probes.align.DETECTORS` or a detector object (default
    :data:`probes.align.DEFAULT_DETECTOR`); ``landmarks`` a :class:`~probes.labellers.landmarks.LandmarkDetector`
    (default built on first need). The result's ``paths`` are the cached frames, ``sources`` the photos
    they came from, ``why`` one line per face saying which was chosen and why, ``skipped`` the
    (path, reason) of everything left out. Raises :class:`DatasetError` when ``root`` is missing or no
    face is left.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    photos, identities, skipped = _scan(root)
    if not photos:
        raise DatasetError(f"{root}: no photos in person sub-folders (one sub-folder per person: "
                           f"root/<identity>/<photo>){_skipped_hint(skipped)}")
    cache = people_cache_dir(cache_dir)
    detector_name = detector if isinstance(detector, str) else DEFAULT_DETECTOR if detector is None \
        else f"{type(detector).__name__}:{getattr(detector, 'name', '')}"
    keys = [_cache_key(p, detector_name) for p in photos]
    todo = [i for i, k in enumerate(keys) if not (cache / f"{k}.json").is_file()]
    if todo:
        _align_and_cache([photos[i] for i in todo], [keys[i] for i in todo], cache, detector, landmarks,
                         batch_size)
    paths, ids, sources, why = [], [], [], []
    for photo, identity, key in zip(photos, identities, keys):
        entry = json.loads((cache / f"{key}.json").read_text())
        if entry["frame"] is None:
            skipped.append((photo, entry["reason"]))
            continue
        paths.append(cache / entry["frame"])
        ids.append(identity)
        sources.append(photo)
        why.append(entry["why"])
    if not paths:
        raise DatasetError(f"{root}: no face found in any of its {len(photos)} photo(s){_skipped_hint(skipped)}")
    if skipped:
        # stacklevel 3: the warning names the caller of load_folder
        warnings.warn(f"{root}: {len(skipped)} file(s) or folder(s) left out, e.g. {skipped[0][0]}: "
                      f"{skipped[0][1]} (all listed in dataset.skipped)", stacklevel=3)
    dataset = FaceDataset(name or root.name, paths, {"identity": ids}, layout="lfw", root=root,
                          label_source={"identity": "sub-folder name"}, skipped=skipped)
    dataset.sources = sources
    dataset.why = why
    return dataset


def write_skipped(folder: str | Path, skipped: Sequence[tuple[Path, str]]) -> Path | None:
    """A data set's ``skipped`` (path, reason) pairs as ``folder/skipped.csv`` (columns file, reason), or
    None when nothing was left out (a ``skipped.csv`` of earlier results there is then removed)."""
    path = Path(folder) / SKIPPED_FILE
    if not skipped:
        path.unlink(missing_ok=True)
        return None
    write_csv(path, [{"file": str(p), "reason": reason} for p, reason in skipped])
    return path


def _skipped_hint(skipped: Sequence[tuple[Path, str]]) -> str:
    return f"; left out: {skipped[0][0]}: {skipped[0][1]}" + (f" and {len(skipped) - 1} more" if len(skipped) > 1
                                                               else "") if skipped else ""


def _scan(root: Path) -> tuple[list[Path], list[str], list[tuple[Path, str]]]:
    """The photos under ``root``'s person sub-folders (sorted), their identities, and what was left out."""
    photos: list[Path] = []
    identities: list[str] = []
    skipped: list[tuple[Path, str]] = []
    for entry in sorted(root.iterdir()):
        if entry.is_file():
            reason = ("an image outside any person's sub-folder (root/<identity>/<photo>)"
                      if entry.suffix.lower() in IMAGE_SUFFIXES else "not an image file")
            skipped.append((entry, reason))
            continue
        if not entry.is_dir():
            continue
        files = sorted(p for p in entry.rglob("*") if p.is_file())
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [(p, "not an image file") for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        problem = identity_problem(entry.name)
        if problem:
            skipped += [(p, f"sub-folder name {entry.name!r} is not a valid identity: {problem}") for p in images]
            if not images:
                skipped.append((entry, f"sub-folder name {entry.name!r} is not a valid identity: {problem}"))
            continue
        if not images:
            skipped.append((entry, "empty sub-folder: no image files"))
            continue
        photos += images
        identities += [entry.name] * len(images)
    return photos, identities, skipped


def _cache_key(photo: Path, detector_name: str) -> str:
    stat = photo.stat()
    text = f"{CACHE_VERSION}|{photo.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{detector_name}|{DEFAULT_SELECT}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _align_and_cache(photos: list[Path], keys: list[str], cache: Path, detector, landmarks, batch_size: int) -> None:
    """Detect and align ``photos``; write each one's frame (PNG) and record (JSON) into ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    detector = create_detector(detector or DEFAULT_DETECTOR) if detector is None or isinstance(detector, str) \
        else detector
    for start in range(0, len(photos), batch_size):
        part = list(range(start, min(start + batch_size, len(photos))))
        arrays, readable, records = [], [], {}
        for i in part:
            try:
                arrays.append(load_image(photos[i]))
                readable.append(i)
            except ImageError as exc:
                records[i] = {"frame": None, "reason": f"unreadable: {exc}"}
        if arrays:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="no face detected")  # recorded per photo below
                found = detect_and_align(arrays, lfw_frame_template(), LFW_FRAME_SIZE, detector=detector,
                                         landmarks=landmarks, on_missing="skip",
                                         names=[str(photos[i]) for i in readable],
                                         options=DetectionOptions(batch_size=batch_size))
            for j, k in enumerate(found.index):
                i = readable[k]
                save_png(found.chips[j], cache / f"{keys[i]}.png")
                records[i] = {"frame": f"{keys[i]}.png", "why": found.why(j).split(": ", 1)[1]}
            for k in found.missing:
                records[readable[k]] = {"frame": None, "reason": f"no face found ({_detector_label(detector)})"}
        for i, record in records.items():
            record["photo"] = str(photos[i])
            write_json(cache / f"{keys[i]}.json", record)


def _detector_label(detector) -> str:
    return getattr(detector, "name", type(detector).__name__)
