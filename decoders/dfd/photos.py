"""Uncropped photos, detected and aligned through :func:`probes.align.detect_and_align`, as a data set of chips.

:func:`scan_people` reads a folder holding one sub-folder per person (the sub-folder's name is the
identity); :func:`aligned_photos` finds the largest face of each photo, aligns it onto the backbone's
five-point template and saves the chips as PNG (lossless) in a cache folder keyed by the backbone and the
files, so the decoder's usual path (:func:`decoders.dfd.templates.compute_targets`, layout ``chip``) takes
them. Photos without a detected face are reported (:attr:`AlignedPhotos.missing`); a person none of whose
photos has a face is an error naming them, never silently dropped.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from probes.align import detect_and_align
from probes.datasets import FaceDataset
from probes.errors import DatasetError, preview
from probes.images import IMAGE_SUFFIXES, list_image_files, save_png
from probes.outputs import write_json

from .templates import cache_key, default_cache_dir, files_fingerprint, weights_key

ALIGNED_VERSION = "faceprobe-aligned-photos-1"


@dataclass
class AlignedPhotos:
    """Chips of the photos with a face (``dataset``: layout ``chip``, identities when known), the photo each
    chip came from, and the photos without a detected face."""

    dataset: FaceDataset
    sources: list[Path]
    missing: list[Path]

    def note(self, root: str | Path) -> str | None:
        """One line naming the photos left out for want of a face (None when every photo had one)."""
        if not self.missing:
            return None
        shown = [str(_relative(p, root)) for p in self.missing]
        return f"no face detected in {len(shown)} photo(s), left out: {preview(shown, 10)}"


def _relative(path: Path, root: str | Path) -> Path:
    try:
        return Path(path).relative_to(root)
    except ValueError:
        return Path(path)


def scan_people(root: str | Path) -> tuple[list[Path], list[str]]:
    """(photos, the identity of each) of a folder with one sub-folder of photos per person.

    Raises :class:`DatasetError` naming the folder for a missing folder, photos outside a person's
    sub-folder, no sub-folders, or a sub-folder without photos.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if loose:
        raise DatasetError(f"{root}: photo {loose[0]} lies outside a person's sub-folder; put each person's photos "
                           "in a sub-folder named after them")
    people = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not people:
        raise DatasetError(f"{root}: no sub-folders; give one sub-folder of photos per person")
    paths, ids = [], []
    for person in people:
        photos = sorted(p for p in person.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not photos:
            raise DatasetError(f"{root}: sub-folder {person.name} holds no photos ({', '.join(IMAGE_SUFFIXES)})")
        paths += photos
        ids += [person.name] * len(photos)
    return paths, ids


def aligned_photos(paths: list[Path], backbone, identities: list[str] | None = None, *,
                   cache_dir: str | Path | None | bool = None, name: str = "photos") -> AlignedPhotos:
    """Detect and align the face of each photo in ``paths`` for ``backbone``; the chips as a data set.

    ``cache_dir``: the decoder's target cache folder (None: the default; False: a temporary folder). With
    ``identities`` (one per photo), a person left without any face raises :class:`DatasetError` naming them.
    """
    paths = [Path(p).resolve() for p in paths]
    fields = {"version": ALIGNED_VERSION, "backbone": backbone.spec.name, "weights": weights_key(backbone),
              "template": [list(map(float, row)) for row in backbone.spec.align_template or ()],
              "input_size": list(backbone.spec.input_size), "files": files_fingerprint([str(p) for p in paths]),
              "n": len(paths)}
    if cache_dir is False:
        folder = Path(tempfile.mkdtemp(prefix="faceprobe-aligned-"))
    else:
        folder = Path(default_cache_dir() if cache_dir is None else cache_dir) / "aligned" / cache_key(fields)
    index = folder / "aligned.json"
    record = None
    if index.is_file():
        try:
            record = json.loads(index.read_text())
        except (OSError, ValueError):
            record = None
        if record is not None and (record.get("fields") != fields or not all(
                (folder / chip).is_file() for chip in record["chips"])):
            record = None
    if record is None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="no face detected")  # reported through `missing`
            found = detect_and_align([str(p) for p in paths], backbone, on_missing="skip")
        chips = []
        folder.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(found.index):
            chip = f"{int(i):06d}_{paths[i].stem}.png"
            save_png(found.chips[k], folder / chip)
            chips.append(chip)
        record = {"fields": fields, "index": [int(i) for i in found.index], "chips": chips,
                  "missing": [int(i) for i in found.missing]}
        write_json(index, record)  # written last: a whole entry or none
    kept = record["index"]
    missing = [paths[i] for i in record["missing"]]
    if identities is not None:
        have = {identities[i] for i in kept}
        lost = sorted({identities[i] for i in record["missing"]} - have)
        if lost:
            raise DatasetError(f"no face detected in any photo of {len(lost)} person/people: {preview(lost, 10)} "
                               f"(photos: {preview([str(p) for p in missing if p.parent.name in lost], 5)})")
    labels = {"identity": [identities[i] for i in kept]} if identities is not None else None
    dataset = FaceDataset(name, [folder / c for c in record["chips"]], labels, layout="chip",
                          label_source={"identity": "sub-folder name"} if labels else None)
    return AlignedPhotos(dataset, [paths[i] for i in kept], missing)


def aligned_people(root: str | Path, backbone, cache_dir: str | Path | None | bool = None) -> AlignedPhotos:
    """:func:`aligned_photos` of a folder with one sub-folder of photos per person (:func:`scan_people`)."""
    paths, ids = scan_people(root)
    return aligned_photos(paths, backbone, ids, cache_dir=cache_dir, name=Path(root).name or "photos")


def aligned_folder(root: str | Path, backbone, cache_dir: str | Path | None | bool = None) -> AlignedPhotos:
    """:func:`aligned_photos` of every image under ``root`` (recursive; no identities)."""
    return aligned_photos(list_image_files(root), backbone, cache_dir=cache_dir, name=Path(root).name or "photos")
