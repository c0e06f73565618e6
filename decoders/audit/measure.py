"""Generating aged faces and reading them: the face models and labellers, one measurement frame.

Every face and every aged output is measured in one frame: GAN-sized images
are brought up (bicubic, :func:`decoders.aging.data.resize_faces`) to
UTKFace's 200 x 200 frame and read with the ``utkface`` layout. Face models
refuse faces under half their input size, and a 64 px face upsampled is not
the 200 px original: so the real inputs are the GAN-sized images (UTKFace
area-averaged down to the GAN's size by :func:`~decoders.aging.data.load_aging_faces`)
brought up the same way, and real and generated faces are measured alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from probes.backbones import FaceBackbone, create_backbone
from probes.errors import DatasetError
from probes.labellers import Labeller, create_labeller

from ..aging.data import AgingFaces, resize_faces
from ..aging.groups import AgeGroups
from .config import DEFAULT_TRAIN_BACKBONE, AuditConfig
from .sources import AuditError, check_output

LAYOUT = "utkface"
ROLES = ("train", "independent")
ROLE_TITLES = {"train": "GAN's training face model", "independent": "independent face model"}


@dataclass
class Measured:
    """What the face models and labellers read from a batch of faces (all length N)."""

    embeddings: dict[str, np.ndarray]  # role -> N x D
    age: np.ndarray
    p_male: np.ndarray
    sex: np.ndarray
    yaw: np.ndarray
    training_age: np.ndarray | None = None  # the GAN's training age reader's reading, when there is one


@dataclass
class FaceReaders:
    """The face models (by role: ``train``, ``independent``) and labellers that read every image.

    ``age`` is the judge; ``training_age`` the age network the GAN was trained against (None: none
    known), ``training_is_judge`` whether that is the judge's own network (then no independent judgement).
    """

    nets: dict[str, FaceBackbone]
    age: Labeller
    pose: Labeller | None
    training_age: Labeller | None = None
    training_is_judge: bool = False


@dataclass
class AgedFaces:
    """The audited faces, their outputs at every target, and what the readers measured on both."""

    faces: AgingFaces
    targets: list[int]
    outputs: dict[int, np.ndarray]  # target -> N x S x S x 3 uint8
    real: Measured
    measured: dict[int, Measured]  # target -> the outputs' measurements


def load_readers(config: AuditConfig, model) -> FaceReaders:
    """The two face models (the training one defaults to the model's ``identity_backbone``) and the labellers."""
    train = config.train_backbone or getattr(model, "identity_backbone", None) or DEFAULT_TRAIN_BACKBONE
    nets = {"train": load_backbone(train, "train", config.device),
            "independent": load_backbone(config.independent_backbone, "independent", config.device)}
    if nets["train"].name == nets["independent"].name:
        raise AuditError(f"the independent face model must differ from the GAN's training model "
                         f"({nets['train'].name}); choose another --independent-backbone")
    judge = load_labeller(config.age_labeller, config.device)
    return FaceReaders(nets, judge, load_labeller(config.pose_labeller, config.device),
                       *training_reader(config, model, judge))


def training_reader(config: AuditConfig, model, judge: Labeller) -> tuple[Labeller | None, bool]:
    """The age network the GAN was trained against (the setting, else the model's ``training_age_reader``),
    and whether it is the judge's own network (same name and weights)."""
    spec = config.training_age_reader or getattr(model, "training_age_reader", None)
    if spec is None:
        return None, False
    if not isinstance(spec, str) and not callable(getattr(spec, "predict", None)):
        raise AuditError(f"training_age_reader must be a labeller name or a labeller, got {type(spec).__name__}")
    if isinstance(spec, str) and spec == judge.name:
        return judge, True
    reader = load_labeller(spec, config.device)
    same = reader is judge or (reader.name == judge.name
                               and getattr(reader, "weights_id", None) == getattr(judge, "weights_id", None))
    return reader, same


def load_backbone(spec, role: str, device: str) -> FaceBackbone:
    """A face model by name (or as given), on ``device``, frozen and in eval mode."""
    if spec is None:
        raise AuditError(f"no {ROLE_TITLES[role]} given")
    net = create_backbone(spec, device=device) if isinstance(spec, str) else spec
    return net.to(device).requires_grad_(False).eval()


def load_labeller(spec, device: str) -> Labeller | None:
    """A labeller by name (or as given); None stays None (the measurement is skipped)."""
    if spec is None:
        return None
    return create_labeller(spec, device=device) if isinstance(spec, str) else spec


def measure_images(images: np.ndarray, readers: FaceReaders, config: AuditConfig, bar=None) -> Measured:
    """Upsample to the measurement frame batch by batch; embed, estimate age/sex and yaw."""
    emb = {role: [] for role in readers.nets}
    age, p_male, sex, yaw, training = [], [], [], [], []
    batch_size = config.batch_size
    for start in range(0, len(images), batch_size):
        up = resize_faces(np.ascontiguousarray(images[start:start + batch_size]), config.measure_size)
        for role, net in readers.nets.items():
            emb[role].append(net.embed(up, LAYOUT, batch_size=batch_size))
        labels = readers.age.predict(up, LAYOUT, batch_size=batch_size)
        age.append(np.asarray(labels["age"], np.float64))
        p_male.append(np.asarray(labels["p_male"], np.float64))
        sex.append(np.asarray(labels["sex"], np.int64))
        if readers.training_age is not None:  # the judge's own network is not run twice
            read = labels if readers.training_is_judge else readers.training_age.predict(up, LAYOUT, batch_size)
            training.append(np.asarray(read["age"], np.float64))
        yaw.append(np.asarray(readers.pose.predict(up, LAYOUT, batch_size=batch_size)["yaw"], np.float64)
                   if readers.pose is not None else np.full(len(up), np.nan))
        if bar is not None:
            bar.update(len(up))
    return Measured({r: np.concatenate(v) for r, v in emb.items()}, np.concatenate(age),
                    np.concatenate(p_male), np.concatenate(sex), np.concatenate(yaw),
                    np.concatenate(training) if readers.training_age is not None else None)


def prepare_faces(faces: AgingFaces, groups: AgeGroups, size: int) -> tuple[AgingFaces, list[str]]:
    """``faces`` regrouped by the model's age groups and resized to its image size, with notes on what changed."""
    notes = []
    if not isinstance(faces, AgingFaces):
        raise AuditError(f"faces must be an AgingFaces (decoders.aging.data.load_aging_faces), got "
                         f"{type(faces).__name__}")
    if len(faces) == 0:
        raise DatasetError("no faces to audit: the face set is empty")
    if not np.isfinite(faces.ages).all():
        raise DatasetError(f"{int((~np.isfinite(faces.ages)).sum())} face(s) have no age label; the audit "
                           "needs labelled faces (UTKFace file names age_sex_race_...)")
    if faces.groups != groups:
        group = groups.of(faces.ages)
        keep = np.flatnonzero(group >= 0)
        if len(keep) == 0:
            raise DatasetError(f"no face falls in the model's age groups {groups.labels}")
        notes.append(f"faces were grouped by {faces.groups.name}; regrouped by the model's {groups.name} groups "
                     f"({len(faces) - len(keep)} face(s) outside them dropped)")
        faces = faces.subset(keep)
        faces = AgingFaces(faces.images, faces.ages, faces.sex, faces.race, group[keep], groups, faces.paths)
    if faces.image_size != size:
        notes.append(f"faces were {faces.image_size} px; resized to the model's {size} px")
        faces = AgingFaces(resize_faces(faces.images, size), faces.ages, faces.sex, faces.race, faces.group,
                           faces.groups, faces.paths)
    return faces, notes


def is_invertible(model) -> bool:
    """Whether ``model`` inverts faces to a latent (``invert``) and draws them at a group (``generate``)."""
    return callable(getattr(model, "invert", None)) and callable(getattr(model, "generate", None))


def accepts_source_groups(model, method: str = "age") -> bool:
    """Whether ``model.<method>`` takes a ``source_groups`` keyword (the inputs' own age groups)."""
    try:
        return "source_groups" in inspect.signature(getattr(model, method)).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def generate_outputs(model, faces: AgingFaces, targets: Sequence[int], source: str, batch_size: int, bar=None
                     ) -> dict[int, np.ndarray]:
    """Every face at every target, checked batch by batch (shape, dtype, range).

    Models with ``invert`` and ``generate`` (Age-cGAN) are inverted once
    per face and drawn at each target from the same latent, as ``age``
    would do target by target.
    """
    labels = model.groups.labels
    by_path = hasattr(model, "age_paths")
    invertible = not by_path and is_invertible(model)
    pass_groups = accepts_source_groups(model, "invert" if invertible else "age")
    outputs = {t: np.empty_like(faces.images) for t in targets}
    # No torch.no_grad() here: a model may optimise per face (Age-cGAN's inversion needs gradients).
    for start in range(0, len(faces), batch_size):
        stop = min(len(faces), start + batch_size)
        batch = faces.images[start:stop]
        # Age-cGAN-style models condition on the input's own age group: pass the label's group.
        extra = {"source_groups": faces.group[start:stop]} if pass_groups else {}
        z = model.invert(np.array(batch), **extra) if invertible else None
        for t in targets:
            if by_path:
                result = model.age_paths(faces.paths[start:stop], t)
            elif invertible:
                result = model.generate(z, t)
            else:
                result = model.age(np.array(batch), t, **extra)
            outputs[t][start:stop] = check_output(result, batch.shape, source, labels[t])
            if bar is not None:
                bar.update(stop - start)
    return outputs
