"""Train a face-recognition network with an identity loss, keeping a checkpoint every few steps.

What it is for: the curve "expressivity vs training step"
(:mod:`probes.expressivity.over_training`) needs the checkpoints of a
network trained on real faces. :func:`train_identity_network` trains a
backbone of the registry from random weights (by default ``small-facenet``)
as a closed-set classifier of the training people -- softmax cross-entropy
over a CosFace head (cosine logits with an additive margin) or a plain
linear head -- through the shared :class:`~probes.training.Trainer` (data
order, logs, resume and atomic checkpoints are the Trainer's). The initial
weights are kept as ``step_0000000.pt``, then one ``step_XXXXXXX.pt`` every
``keep_every`` steps; :func:`load_identity_checkpoints` gives them back as
``(step, FaceBackbone)`` pairs.

Faces are fed as uint8 chips already cropped to the backbone's input
(:func:`face_chips` crops and resizes with the backbone's own preprocessing
path), so a step never decodes a JPEG. Training augments with random
horizontal flips only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..backbones import create_backbone
from ..backbones.registry import BackboneSpec, FaceBackbone, get_spec
from ..config import DictConfig
from ..datasets import FaceDataset
from ..errors import FaceprobeError, ImageError, TrainingError, preview
from ..geometry import images_to_tensor
from ..nn import evaluating
from ..weight_files import load_named_tensors
from ..weights import sha256_of
from .checkpoints import CheckpointError, load_checkpoint, seed_everything
from .data import ArrayData
from .distributed import DistributedContext
from .trainer import Trainer, TrainerSettings, TrainResult, TrainTask, warmup_cosine

IDENTITY_KIND = "face-identity"
HEADS = ("cosine", "linear")


# --------------------------------------------------------------------------- heads


class CosineHead(nn.Module):
    """CosFace logits (Wang et al., CVPR 2018): ``scale * (cos(e, w_j) - margin * [j == y])``.

    Without ``labels`` (evaluation) no margin is taken off.
    """

    def __init__(self, embedding_size: int, n_classes: int, scale: float = 16.0, margin: float = 0.2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, embedding_size) * 0.01)
        self.scale, self.margin = float(scale), float(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cos = F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).t()
        if labels is not None and self.margin:
            cos = cos - self.margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.scale * cos


class LinearHead(nn.Module):
    """A plain softmax classifier over the embeddings (labels are ignored)."""

    def __init__(self, embedding_size: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(embedding_size, n_classes)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(embeddings)


def make_head(kind: str, embedding_size: int, n_classes: int, scale: float = 16.0, margin: float = 0.2) -> nn.Module:
    if kind == "cosine":
        return CosineHead(embedding_size, n_classes, scale, margin)
    if kind == "linear":
        return LinearHead(embedding_size, n_classes)
    raise TrainingError(f"unknown head {kind!r}; choose from {', '.join(HEADS)}")


# --------------------------------------------------------------------------- task


@dataclass(frozen=True)
class IdentityTrainingConfig(DictConfig):
    """How a registry network is trained from random weights to tell people apart.

    ``head``: ``cosine`` (CosFace: ``scale``, ``margin``) or ``linear``; SGD with Nesterov momentum,
    ``warmup_steps`` of linear warmup then cosine decay to 1% of ``lr``; ``flip``: random horizontal
    flips. A checkpoint is kept every ``keep_every`` steps; validation accuracy is logged every
    ``validate_every`` steps (None: ``keep_every``).
    """

    config_name = "identity training"
    config_error = TrainingError

    backbone: str = "small-facenet"
    steps: int = 1000
    batch_size: int = 64
    keep_every: int = 100
    seed: int = 0
    head: str = "cosine"
    scale: float = 16.0
    margin: float = 0.2
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 50
    flip: bool = True
    log_every: int = 10
    validate_every: int | None = None
    time_limit_s: float | None = None
    device: str = "cpu"


class IdentityTask(TrainTask):
    """Identity classification of uint8 chips: SGD with momentum, linear warmup then cosine decay."""

    kind = IDENTITY_KIND

    def __init__(self, backbone: FaceBackbone, classes: Sequence[str], config: IdentityTrainingConfig,
                 validation: tuple[np.ndarray, np.ndarray] | None = None):
        """``classes``: the people's names, in label order; ``validation``: (uint8 chips, label codes)."""
        super().__init__()
        n_classes = len(classes)
        if n_classes < 2:
            raise TrainingError(f"identity training needs at least 2 people, got {n_classes}")
        c = config
        self.device = torch.device(c.device)
        self.backbone = backbone.to(self.device)
        self.models["backbone"] = backbone.net  # the registry's state-dict keys, so checkpoints load as backbones
        self.models["head"] = make_head(c.head, backbone.spec.embedding_size, n_classes, c.scale, c.margin) \
            .to(self.device)
        params = [p for m in self.models.values() for p in m.parameters()]
        self.optimizers["sgd"] = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay,
                                                 nesterov=True)
        self.total_steps, self.flip = int(c.steps), bool(c.flip)
        self.val_images, self.val_labels = validation if validation is not None else (None, None)
        spec = backbone.spec
        self._config = {
            "backbone": {"name": spec.name, "input_size": list(spec.input_size),
                         "embedding_size": spec.embedding_size},
            "n_classes": int(n_classes), "classes": [str(name) for name in classes],
            "head": {"kind": c.head, "scale": float(c.scale), "margin": float(c.margin)},
            "optim": {"lr": float(c.lr), "momentum": float(c.momentum), "weight_decay": float(c.weight_decay),
                      "warmup_steps": int(c.warmup_steps), "schedule": "linear warmup, cosine to 1% of lr"},
            "flip": self.flip,
        }

    def config(self) -> dict:
        return self._config

    def check_resume(self, checkpoint: dict) -> None:
        super().check_resume(checkpoint)
        theirs = checkpoint.get("config", {})
        for key in ("backbone", "n_classes", "head"):
            if theirs.get(key) != self._config[key]:
                raise CheckpointError(f"{checkpoint.get('path')}: trained with {key} {theirs.get(key)!r}, "
                                      f"this run has {self._config[key]!r}")

    def lr_at(self, step: int) -> float:
        o = self._config["optim"]
        return o["lr"] * warmup_cosine(step, self.total_steps, o["warmup_steps"], min_ratio=0.01)

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        return self.backbone.preprocess(x, "chip")

    def step(self, batch, step: int) -> dict[str, float]:
        opt = self.optimizers["sgd"]
        lr = self.lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        x = self._inputs(batch["images"])
        if self.flip:  # drawn on the CPU generator, whose state the Trainer checkpoints
            mirror = (torch.rand(len(x)) < 0.5).to(self.device).view(-1, 1, 1, 1)
            x = torch.where(mirror, x.flip(-1), x)
        labels = batch["labels"].to(self.device, non_blocking=True).long()
        embeddings = self.net("backbone")(x)
        loss = F.cross_entropy(self.net("head")(embeddings, labels), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            accuracy = (self.models["head"](embeddings.detach()).argmax(1) == labels).float().mean()
        return {"loss": loss.item(), "accuracy": accuracy.item(), "lr": lr}

    @torch.no_grad()
    def logits(self, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """Margin-free class scores of uint8 chips (evaluation mode)."""
        net, head = self.models["backbone"], self.models["head"]
        with evaluating(net), evaluating(head):
            out = [head(net(self._inputs(torch.from_numpy(np.asarray(images[i:i + batch_size])))))
                   for i in range(0, len(images), batch_size)]
        return torch.cat(out)

    def validate(self, step: int) -> dict[str, float] | None:
        if self.val_images is None or len(self.val_images) == 0:
            return None
        logits = self.logits(self.val_images).cpu()
        labels = torch.as_tensor(np.asarray(self.val_labels), dtype=torch.long)
        return {"val_loss": float(F.cross_entropy(logits, labels)),
                "val_accuracy": float((logits.argmax(1) == labels).float().mean())}


# --------------------------------------------------------------------------- data


def face_chips(images, backbone: FaceBackbone | BackboneSpec, layout: str | None = None, batch_size: int = 256,
               progress: bool = True) -> np.ndarray:
    """uint8 chips (N x H x W x 3 at the backbone's input size) of a FaceDataset or an image array.

    Crop and resize are the backbone's own (:meth:`FaceBackbone.preprocess`
    with the normalisation left out), so ``backbone(chips, "chip")`` sees what
    ``backbone(images, layout)`` sees, up to uint8 rounding.
    """
    spec = backbone.spec if isinstance(backbone, FaceBackbone) else backbone
    cropper = FaceBackbone(dataclasses.replace(spec, mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0),
                                               colour_order="RGB"), nn.Identity(), "crop-only")
    if isinstance(images, FaceDataset):
        n, layout = len(images), layout or images.layout

        def batch(start, stop):
            return images.load_images(np.arange(start, stop))
    else:
        if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ImageError("images must be a FaceDataset or an N x H x W x 3 uint8 array, got "
                             f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
        n, layout = len(images), layout or "chip"

        def batch(start, stop):
            return images[start:stop]
    out = np.empty((n, *spec.input_size, 3), np.uint8)
    with torch.no_grad():
        for start in tqdm(range(0, n, batch_size), desc=f"chips for {spec.name}", unit="batch", disable=not progress):
            stop = min(n, start + batch_size)
            x = images_to_tensor(batch(start, stop))
            cropper.check_size(tuple(x.shape[-2:]), layout)
            chips = cropper.preprocess(x, layout).mul_(255.0).round_().clamp_(0, 255)
            out[start:stop] = chips.to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def split_per_identity(identities, eval_fraction: float = 0.3, max_eval_per_person: int | None = None,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, eval) image indices with every person in both parts (the same people, other images).

    Each person with two or more images gives ``round(eval_fraction * n)``
    of them (at least 1, at most ``n - 1`` and ``max_eval_per_person``) to the
    evaluation part, drawn with ``seed``; people with one image train only.
    """
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    ids = pd.Series(np.asarray(identities, dtype=object)).astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    evaluate = np.zeros(len(ids), bool)
    for person in sorted(set(ids)):
        members = np.flatnonzero(ids == person)
        if len(members) < 2:
            continue
        k = min(len(members) - 1, max(1, round(eval_fraction * len(members))))
        if max_eval_per_person is not None:
            k = min(k, max_eval_per_person)
        evaluate[rng.choice(members, k, replace=False)] = True
    return np.flatnonzero(~evaluate), np.flatnonzero(evaluate)


# --------------------------------------------------------------------------- training


def train_identity_network(images: np.ndarray, identities, out_dir: str | Path,
                           config: IdentityTrainingConfig | None = None, *, validation=None,
                           ctx: DistributedContext | None = None, resume: bool = False, progress: bool = True,
                           **settings) -> TrainResult:
    """Train registry network ``config.backbone`` from random weights to tell ``identities`` apart.

    ``images``: uint8 chips at the backbone's input size (see :func:`face_chips`); ``identities``: one
    name (or id) per image. ``validation``: optional (chips, identities) of the training people, whose
    accuracy is logged to ``val.csv``. ``settings`` override fields of ``config`` (e.g. ``steps=2``;
    ``val_images=``/``val_identities=`` are accepted for ``validation``). ``out_dir`` receives the
    Trainer's files; the initial weights are saved as ``checkpoints/step_0000000.pt`` first.
    """
    if "val_images" in settings or "val_identities" in settings:
        validation = (settings.pop("val_images", None), settings.pop("val_identities", None))
    config = dataclasses.replace(config or IdentityTrainingConfig(), **settings)
    codes, classes = _identity_codes(images, identities, config.backbone)
    val_labels = _validation_labels(validation, classes, config.backbone)
    ctx = ctx or DistributedContext(device=config.device)
    config = dataclasses.replace(config, device=str(ctx.device))
    seed_everything(config.seed)  # the initial weights are the run's first randomness
    net = create_backbone(config.backbone, pretrained=False, device=ctx.device)
    task = IdentityTask(net, list(classes), config, (validation[0], val_labels) if val_labels is not None else None)
    c = config
    schedule = TrainerSettings(steps=c.steps, batch_size=c.batch_size, seed=c.seed, save_every=c.keep_every,
                               keep_every=c.keep_every, log_every=c.log_every, sample_every=0,
                               validate_every=c.keep_every if c.validate_every is None else c.validate_every,
                               time_limit_s=c.time_limit_s, progress=progress)
    data = ArrayData(images=images, labels=codes.astype(np.int64))
    trainer = Trainer(task, data, out_dir, schedule, ctx=ctx, resume=resume)
    if trainer.step == 0:
        trainer.save()  # step 0: the random initialisation, the curve's first point
    return trainer.fit()


def _check_chips(name: str, array, backbone: str) -> None:
    spec = get_spec(backbone)
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 4 \
            or tuple(array.shape[1:]) != (*spec.input_size, 3):
        raise TrainingError(f"{name} must be uint8 chips of shape N x {spec.input_size[0]} x "
                            f"{spec.input_size[1]} x 3 for {backbone!r} (make them with face_chips), got "
                            f"{getattr(array, 'dtype', type(array).__name__)} {getattr(array, 'shape', '')}")


def _identity_codes(images: np.ndarray, identities, backbone: str):
    """(label codes, sorted class names) of the training chips' identities, after checking the chips."""
    _check_chips("images", images, backbone)
    ids = pd.Series(np.asarray(identities, dtype=object)).astype(str)
    if len(ids) != len(images):
        raise TrainingError(f"{len(images)} images but {len(ids)} identities")
    return pd.factorize(ids, sort=True)


def _validation_labels(validation, classes, backbone: str) -> np.ndarray | None:
    """Label codes of the validation chips' people (who must all be training people), or None."""
    if validation is None or validation[0] is None:
        return None
    val_images, val_identities = validation
    _check_chips("val_images", val_images, backbone)
    if val_identities is None or len(val_identities) != len(val_images):
        raise TrainingError("val_images need one entry of val_identities each")
    where = {name: i for i, name in enumerate(classes)}
    val_ids = pd.Series(np.asarray(val_identities, dtype=object)).astype(str)
    unknown = sorted(set(val_ids) - set(where))
    if unknown:
        raise TrainingError(f"validation people absent from training: {preview(unknown, 5, None)}; "
                            "closed-set accuracy needs the same people")
    return np.array([where[v] for v in val_ids], np.int64)


# --------------------------------------------------------------------------- checkpoints back as backbones


def checkpoint_steps(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of a run's kept checkpoints (``checkpoints/step_XXXXXXX.pt``), by step."""
    run_dir = Path(run_dir)
    folder = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
    found = []
    for path in sorted(folder.glob("step_*.pt")):
        try:
            found.append((int(path.stem.split("_", 1)[1]), path))
        except ValueError:
            continue
    if not found:
        raise CheckpointError(f"no step_XXXXXXX.pt checkpoints in {folder}")
    return found


def load_identity_backbone(checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[int, FaceBackbone]:
    """``(step, backbone in eval mode)`` from one checkpoint of :func:`train_identity_network`.

    ``weights_id`` is the file's sha256, so feature caches tell checkpoints apart.
    """
    state = load_checkpoint(checkpoint, map_location="cpu")
    if state.get("kind") != IDENTITY_KIND:
        raise CheckpointError(f"{state['path']} holds a {state.get('kind')!r} run, not a {IDENTITY_KIND!r} one")
    name = state["config"]["backbone"]["name"]
    spec = get_spec(name)
    net = spec.builder()
    try:
        load_named_tensors(net, state["models"]["backbone"], state["path"])
    except (KeyError, FaceprobeError) as exc:
        raise CheckpointError(f"{state['path']}: backbone weights do not fit {name!r}: {exc}") from exc
    backbone = FaceBackbone(spec, net, sha256_of(state["path"])).to(device)
    return int(state["step"]), backbone.eval()


def load_identity_checkpoints(run_dir: str | Path, steps: Sequence[int] | None = None,
                              device: str | torch.device = "cpu") -> list[tuple[int, FaceBackbone]]:
    """Every kept checkpoint of a run (or those at ``steps``) as ``(step, FaceBackbone)`` pairs."""
    found = dict(checkpoint_steps(run_dir))
    if steps is not None:
        missing = sorted(set(steps) - set(found))
        if missing:
            raise CheckpointError(f"no checkpoint for step(s) {missing} in {run_dir}; kept steps: {sorted(found)}")
        found = {s: found[s] for s in sorted(set(steps))}
    return [load_identity_backbone(path, device) for _, path in sorted(found.items())]
