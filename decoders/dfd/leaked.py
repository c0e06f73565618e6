"""Leaked templates: the attack's real scenario, where only templates and whose they are reach the attacker.

``--templates FILE.npy`` holds N x d templates; ``--identities FILE.csv`` has one row per template, in
order, with the columns ``identity`` (whose template it is) and ``enrolment`` (that person's enrolment
image paths, separated by ``;``, relative to the CSV's folder or absolute; may be empty: that template
then gives type-I only). :func:`read_leak` reads and checks both; :meth:`Leak.enrolment` gives the
enrolment images as a data set and the (template, enrolment image) pairs the type-II attack scores.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probes.datasets import FaceDataset
from probes.errors import DatasetError

from .inputs import load_templates_file

COLUMNS = ("identity", "enrolment")
SEPARATOR = ";"


@dataclass
class Leak:
    """Leaked templates (N x d), each one's identity and its person's enrolment images."""

    templates: np.ndarray
    identities: list[str]
    enrolment_paths: list[list[Path]]
    templates_file: str
    identities_file: str

    def __len__(self) -> int:
        return len(self.identities)

    def subset(self, indices) -> Leak:
        idx = [int(i) for i in indices]
        return Leak(self.templates[idx], [self.identities[i] for i in idx], [self.enrolment_paths[i] for i in idx],
                    self.templates_file, self.identities_file)

    def names(self) -> list[str]:
        """A name per template for files and tables (``template_00003``, its row in the templates file)."""
        return [f"template_{i:05d}" for i in range(len(self))]

    def enrolment(self, layout: str, max_refs: int | None = None,
                  seed: int = 0) -> tuple[FaceDataset | None, np.ndarray]:
        """(the enrolment images as one data set with identities, or None when there are none; K x 2 pairs
        (template index, enrolment image index), at most ``max_refs`` per template, a seeded choice)."""
        unique: dict[Path, str] = {}
        for person, paths in zip(self.identities, self.enrolment_paths):
            for p in paths:
                unique.setdefault(p, person)
        if not unique:
            return None, np.zeros((0, 2), np.int64)
        index = {p: k for k, p in enumerate(unique)}
        rng = np.random.default_rng(seed)
        pairs = []
        for t, paths in enumerate(self.enrolment_paths):
            refs = sorted({index[p] for p in paths})
            if max_refs is not None and len(refs) > max_refs:
                refs = sorted(rng.choice(refs, max_refs, replace=False).tolist())
            pairs += [(t, j) for j in refs]
        dataset = FaceDataset("enrolment", list(unique), {"identity": list(unique.values())}, layout=layout,
                              label_source={"identity": f"{self.identities_file} (identity column)"})
        return dataset, np.asarray(pairs, np.int64).reshape(-1, 2)


def read_leak(templates_file: str | Path, identities_file: str | Path, embedding_size: int) -> Leak:
    """The templates of ``templates_file`` (checked against the decoder's ``embedding_size``) and the rows of
    ``identities_file``; a one-line :class:`DatasetError` naming the file and row for anything that does not
    fit (row count, missing columns or identity, a missing image, an image enrolled for two people)."""
    templates = load_templates_file(templates_file, embedding_size)
    path = Path(identities_file).expanduser()
    if not path.is_file():
        raise DatasetError(f"identities CSV {path} does not exist")
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"identities CSV {path} is not readable: {exc}") from exc
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise DatasetError(f"identities CSV {path} needs the columns {', '.join(COLUMNS)} (missing: "
                           f"{', '.join(missing)}; found: {', '.join(columns) or 'none'})")
    if len(rows) != len(templates):
        raise DatasetError(f"identities CSV {path} has {len(rows)} rows but {templates_file} holds {len(templates)} "
                           "templates: give one row per template, in the same order")
    identities, enrolment, owner = [], [], {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        person = row["identity"]
        if not person:
            raise DatasetError(f"identities CSV {path} line {line}: empty identity")
        paths = []
        for given in filter(None, (p.strip() for p in row["enrolment"].split(SEPARATOR))):
            image = Path(given).expanduser()
            image = (image if image.is_absolute() else path.parent / image).resolve()
            if not image.is_file():
                raise DatasetError(f"identities CSV {path} line {line}: enrolment image {given} does not exist")
            if owner.setdefault(image, person) != person:
                raise DatasetError(f"identities CSV {path} line {line}: enrolment image {given} is listed for both "
                                   f"{owner[image]!r} and {person!r}")
            paths.append(image)
        identities.append(person)
        enrolment.append(paths)
    return Leak(templates, identities, enrolment, str(templates_file), str(path))
