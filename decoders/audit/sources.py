"""Where the aged faces come from: a GAN checkpoint, a Python callable, or a folder of images.

:class:`AgingSource` is what the command names; :func:`load_generator` resolves ``--generator``
(a checkpoint path, ``module:function`` or a reference name); :class:`FolderAging` serves
pre-aged images listed in a CSV; :func:`check_output` refuses outputs of the wrong shape,
dtype or range with the generator and the target named.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probes.errors import FaceprobeError
from probes.images import load_image
from probes.resolve import is_object_spec, parse_object_spec, resolve_object

from ..aging.groups import (
    AGECGAN_GROUPS,
    IPCGAN_GROUPS,
    AgeGroups,
    AgingError,
    AgingModel,
)
from ..aging.models import load_aging_model
from ..aging.shipped import GENERATORS
from .references import REFERENCES, FunctionAging

GROUPS = {"ipcgan": IPCGAN_GROUPS, "agecgan": AGECGAN_GROUPS}
# What the built-in references (identity, collapsed) run at unless --groups / --image-size say otherwise.
REFERENCE_DEFAULTS = {"groups": "ipcgan", "image_size": 64}


class AuditError(FaceprobeError, ValueError):
    """Arguments or inputs the aging audit cannot use."""


def groups_by_name(name: str | AgeGroups | None, argument: str = "--groups") -> AgeGroups | None:
    """``ipcgan`` / ``agecgan`` (or an AgeGroups) -> AgeGroups; None stays None."""
    if name is None or isinstance(name, AgeGroups):
        return name
    try:
        return GROUPS[str(name).lower()]
    except KeyError:
        raise AuditError(f"{argument} {name!r} is unknown; choose from {', '.join(GROUPS)}") from None


def check_model(model, source: str, groups: AgeGroups | None = None) -> AgingModel:
    """``model`` if it meets the AgingModel contract (and has ``groups`` when given); else AgingError."""
    if not isinstance(model, AgingModel):
        missing = [a for a in ("groups", "image_size", "age") if not hasattr(model, a)]
        raise AgingError(f"{source} gave a {type(model).__name__}, not an aging model: it lacks "
                         f"{', '.join(missing)} (an AgingModel has groups, image_size and age(images, target))")
    if not isinstance(model.groups, AgeGroups):
        raise AgingError(f"{source}: groups must be an AgeGroups, got {type(model.groups).__name__}")
    if not isinstance(model.image_size, (int, np.integer)) or model.image_size < 16:
        raise AgingError(f"{source}: image_size must be an integer >= 16, got {model.image_size!r}")
    if groups is not None and model.groups != groups:
        raise AgingError(f"{source} was trained on the {model.groups.name} groups ({', '.join(model.groups.labels)}), "
                         f"not the {groups.name} groups asked for with --groups")
    return model


@dataclass(frozen=True)
class AgingSource:
    """What to audit: exactly one of ``generator`` (a checkpoint, ``module:function`` or a reference name,
    see :func:`load_generator`) and ``aged_folder`` with ``aged_csv`` (:class:`FolderAging`).

    ``groups`` and ``image_size`` are needed by plain functions and folders; ``name`` names a folder;
    ``inversion_steps`` overrides the optimisation steps of GANs that invert faces (Age-cGAN).
    """

    generator: str | None = None
    aged_folder: str | Path | None = None
    aged_csv: str | Path | None = None
    groups: str | AgeGroups | None = None
    image_size: int | None = None
    name: str | None = None
    inversion_steps: int | None = None
    device: str = "cpu"

    def load(self) -> AgingModel:
        """The aging model (AuditError names the flag at fault; a checkpoint's own errors pass through)."""
        if bool(self.generator) == bool(self.aged_folder):
            raise AuditError("give exactly one of --generator and --aged-folder")
        if bool(self.aged_folder) != bool(self.aged_csv):
            raise AuditError("--aged-folder and --aged-csv go together")
        groups = groups_by_name(self.groups)
        if self.aged_folder:
            model = FolderAging(self.aged_folder, self.aged_csv, groups, self.image_size, name=self.name)
        else:
            model = load_generator(self.generator, groups, self.image_size, device=self.device)
        if self.inversion_steps is not None:
            set_inversion_steps(model, self.inversion_steps)
        return model


def set_inversion_steps(model, steps: int) -> None:
    """Set the optimisation steps per face of a GAN that inverts faces (its ``inversion`` dataclass)."""
    inversion = getattr(model, "inversion", None)
    if inversion is None or not dataclasses.is_dataclass(inversion) or not hasattr(inversion, "steps"):
        raise AuditError(f"--inversion-steps: {getattr(model, 'name', type(model).__name__)} has no inversion "
                         "settings (only GANs that invert faces by optimisation, e.g. Age-cGAN)")
    if steps < 0:
        raise AuditError(f"--inversion-steps must be >= 0, got {steps}")
    model.inversion = dataclasses.replace(inversion, steps=steps)


def target_indices(values: Sequence[str] | None, groups: AgeGroups, argument: str = "--targets") -> list[int] | None:
    """Target groups given as text (each value an index or a label of ``groups``, or comma-separated ones)
    as group indices; None when none are given."""
    if not values:
        return None
    out = []
    for value in values:
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            if item in groups.labels:
                out.append(groups.labels.index(item))
                continue
            try:
                number = int(item)
            except ValueError:
                raise AuditError(f"{argument} {item!r} is neither a group index nor a label of {groups.name} "
                                 f"({', '.join(groups.labels)})") from None
            out.append(number)
    return groups.check(out, argument=argument).tolist()


def chosen_targets(values: Sequence[str] | None, model: AgingModel) -> list[int] | None:
    """:func:`target_indices` of the model's groups; without any, a folder's targets listed for every source,
    else None (every group)."""
    targets = target_indices(values, model.groups)
    if isinstance(model, FolderAging) and targets is None:
        targets = model.targets()
        if not targets:
            raise AuditError(f"--aged-csv {model.csv_as_given}: no target group is listed for every source")
    return targets


def load_generator(spec: str, groups: str | AgeGroups | None = None, image_size: int | None = None,
                   device: str = "cpu") -> AgingModel:
    """The aging model ``spec`` names.

    - the name of a shipped generator (``ipcgan-utkface``; :data:`decoders.aging.shipped.GENERATORS`);
    - an existing file or folder: a GAN checkpoint or shipped ``.safetensors`` file, read by
      ``decoders.aging.models.load_aging_model`` (its errors, e.g.
      :class:`~probes.training.checkpoints.CheckpointError`, pass through);
    - ``module:attribute``: an AgingModel instance, a factory returning one (or
      returning an aging function), or an aging function ``(images, target)
      -> images`` (then ``groups`` and ``image_size`` are required);
    - ``identity`` / ``collapsed``: a reference of :mod:`.references` (``groups`` default
      :data:`REFERENCE_DEFAULTS`' IPCGAN groups, ``image_size`` 64; see :func:`.references.reference_model`).
    """
    groups = groups_by_name(groups)
    if spec in GENERATORS:
        return check_model(load_aging_model(spec, device=device), f"--generator {spec}", groups)
    path = Path(str(spec)).expanduser()
    if path.exists():
        try:
            model = load_aging_model(path, device=device)
        except TypeError:  # a loader without a device argument
            model = load_aging_model(path)
        return check_model(model, f"--generator {spec}", groups)
    if spec in REFERENCES:
        groups = groups if groups is not None else GROUPS[REFERENCE_DEFAULTS["groups"]]
        size = _need_size(spec, groups, REFERENCE_DEFAULTS["image_size"] if image_size is None else image_size)
        return FunctionAging(REFERENCES[spec], groups, size, name=spec)
    if not is_object_spec(str(spec)):
        raise AuditError(f"--generator {spec!r} is neither a shipped generator ("
                         f"{', '.join(GENERATORS.names()) or 'none shipped'}), an existing checkpoint, "
                         f"module:function, nor a reference ({', '.join(REFERENCES)})")
    parsed = parse_object_spec(str(spec), AuditError, what="--generator")
    if parsed.arg is not None:
        raise AuditError(f"--generator {spec!r}: an aging model takes no '=argument'")
    obj = resolve_object(parsed, AuditError, what="--generator")
    attribute = parsed.attribute
    source = f"--generator {spec}"
    if isinstance(obj, AgingModel) and not inspect.isclass(obj):
        return check_model(obj, source, groups)
    if not callable(obj):
        raise AuditError(f"{source} is a {type(obj).__name__}, neither an aging model nor a callable")
    if _required_positional(obj) >= 2:
        return FunctionAging(obj, groups, _need_size(spec, groups, image_size), name=attribute)
    if _required_positional(obj) != 0:
        raise AuditError(f"{source} must be an aging function (images, target) or a factory taking no "
                         f"argument; it takes {_required_positional(obj)} required argument(s)")
    made = obj()
    if isinstance(made, AgingModel):
        return check_model(made, source, groups)
    if callable(made):
        return FunctionAging(made, groups, _need_size(spec, groups, image_size), name=attribute)
    raise AuditError(f"{source}() returned a {type(made).__name__}, neither an aging model nor an aging function")


def _need_size(spec: str, groups: AgeGroups | None, image_size: int | None) -> int:
    if groups is None:
        raise AuditError(f"--generator {spec} is a plain aging function: pass --groups ({', '.join(GROUPS)}) "
                         "to say which age groups its targets index")
    if image_size is None:
        raise AuditError(f"--generator {spec} is a plain aging function: pass --image-size (the square size "
                         "it takes and returns, e.g. 64)")
    if int(image_size) < 16:
        raise AuditError(f"--image-size must be >= 16, got {image_size}")
    return int(image_size)


def _required_positional(function) -> int:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return 2  # builtins without a signature: treat as an aging function
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        return 2
    return sum(1 for p in signature.parameters.values() if p.kind in kinds and p.default is inspect.Parameter.empty)


# --------------------------------------------------------------------------- a folder of aged images


OUTPUT_COLUMNS = ("output", "output_file", "file")


class FolderAging:
    """Pre-aged images listed in a CSV: columns ``source``, ``target_group``, ``output`` (or ``output_file``).

    ``source`` names the UTKFace input (its file name is what is matched),
    ``target_group`` is a group index or label of ``groups``, ``output`` an
    image path relative to ``folder``. The audit asks it for outputs by source
    path (:meth:`age_paths`); every image must be ``image_size`` square.
    """

    def __init__(self, folder: str | Path, csv_path: str | Path, groups: AgeGroups, image_size: int | None = None,
                 name: str | None = None):
        self.folder = Path(folder).expanduser()
        self.csv_path = Path(csv_path).expanduser()
        self.csv_as_given = str(csv_path)  # as the user named it, for records
        if not self.folder.is_dir():
            raise AuditError(f"--aged-folder {self.folder} is not a folder")
        if not self.csv_path.is_file():
            raise AuditError(f"--aged-csv {self.csv_path} does not exist")
        if groups is None:
            raise AuditError("--aged-folder needs --groups (ipcgan or agecgan): which groups target_group indexes")
        self.groups = groups
        self.name = name or f"folder {self.folder.name}"
        self.identity_backbone = None
        self.table: dict[str, dict[int, Path]] = {}
        with open(self.csv_path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            out_col = next((c for c in OUTPUT_COLUMNS if c in columns), None)
            if "source" not in columns or "target_group" not in columns or out_col is None:
                raise AuditError(f"--aged-csv {self.csv_path} must have columns source, target_group and output "
                                 f"(or output_file); it has {', '.join(columns) or 'none'}")
            missing = []
            for line, row in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                target = self._target(row["target_group"], line)
                key = Path(row["source"]).name
                if not key:
                    raise AuditError(f"--aged-csv {self.csv_path} line {line}: empty source")
                path = self.folder / row[out_col]
                if not path.is_file():
                    missing.append(f"{row[out_col]} (line {line})")
                if target in self.table.setdefault(key, {}):
                    raise AuditError(f"--aged-csv {self.csv_path} line {line}: a second output for source "
                                     f"{key} at target {self.groups.labels[target]}")
                self.table[key][target] = path
        if missing:
            raise AuditError(f"--aged-csv {self.csv_path} lists {len(missing)} output file(s) absent from "
                             f"{self.folder}: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if not self.table:
            raise AuditError(f"--aged-csv {self.csv_path} lists no outputs")
        if image_size is None:
            first = next(iter(next(iter(self.table.values())).values()))
            image = load_image(first)
            if image.shape[0] != image.shape[1]:
                raise AuditError(f"{first}: aged images must be square, got {image.shape[1]}x{image.shape[0]}")
            image_size = image.shape[0]
        self.image_size = int(image_size)

    def _target(self, value: str, line: int) -> int:
        if value in self.groups.labels:
            return self.groups.labels.index(value)
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is None or number != int(number):
            raise AuditError(f"--aged-csv {self.csv_path} line {line}: target_group {value!r} is neither a group "
                             f"index nor a label of {self.groups.name} ({', '.join(self.groups.labels)})")
        return int(self.groups.check(int(number), argument=f"--aged-csv line {line}: target_group")[0])

    def sources(self) -> set[str]:
        return set(self.table)

    def targets(self) -> list[int]:
        """Targets listed for every source."""
        common = set.intersection(*(set(t) for t in self.table.values()))
        return sorted(common)

    def age_paths(self, paths, target: int) -> np.ndarray:
        """The listed outputs of sources ``paths`` at ``target`` (N x S x S x 3 uint8)."""
        target = int(self.groups.check(target)[0])
        out = []
        for p in paths:
            key = Path(p).name
            file = self.table.get(key, {}).get(target)
            if file is None:
                raise AuditError(f"--aged-csv {self.csv_path} has no output for source {key} at target "
                                 f"{self.groups.labels[target]}")
            image = load_image(file)
            if image.shape[:2] != (self.image_size, self.image_size):
                raise AgingError(f"{file}: aged images must be {self.image_size}x{self.image_size}, got "
                                 f"{image.shape[1]}x{image.shape[0]}")
            out.append(image)
        return np.stack(out) if out else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)

    def age(self, images, target) -> np.ndarray:
        raise AgingError(f"{self.name} holds pre-aged images of listed sources only; the audit asks for them by "
                         "source path (age_paths)")


# --------------------------------------------------------------------------- checks


def check_output(output, expected_shape: tuple[int, ...], source: str, target_label: str) -> np.ndarray:
    """An aging output as uint8 N x S x S x 3 of ``expected_shape``; AgingError names what is wrong."""
    where = f"{source} for target {target_label}"
    if type(output).__module__.startswith("torch"):
        raise AgingError(f"{where} returned a torch {type(output).__name__}; aging functions return numpy "
                         "uint8 arrays N x H x W x 3")
    try:
        array = np.asarray(output)
    except Exception as exc:
        raise AgingError(f"{where} returned a {type(output).__name__}, not an image array: {exc}") from exc
    if array.dtype != np.uint8:
        if array.dtype.kind in "fiub" and array.size:
            finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
            span = (f" with values in [{finite.min():.3g}, {finite.max():.3g}]" if finite.size else
                    " with no finite value")
        else:
            span = ""
        hint = (" (values in [0, 1] or [-1, 1]? convert with ((x + 1) * 127.5 or x * 255).round().astype(uint8))"
                if array.dtype.kind == "f" else "")
        raise AgingError(f"{where} returned {array.dtype}{span}; aging functions must return uint8 0..255{hint}")
    if array.shape != tuple(expected_shape):
        raise AgingError(f"{where} returned shape {array.shape} for inputs of shape {tuple(expected_shape)}; "
                         "outputs must be N x H x W x 3, the inputs' shape")
    return array
