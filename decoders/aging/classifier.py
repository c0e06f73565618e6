"""The age-group classifier that the GANs' age loss uses, frozen.

:class:`AgeGroupClassifier` is a small CNN that tells the age group of a 64 x 64
face. :func:`train_age_classifier` trains it on
:class:`~decoders.aging.data.AgingFaces` with the shared
:class:`~probes.training.Trainer` (:class:`AgeClassifierTask`). The audit
measures age with *other* estimators (the face-api / HSE labellers), not with
this one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from probes.config import DictConfig
from probes.nn import evaluating
from probes.training.checkpoints import CheckpointError, load_checkpoint, seed_everything
from probes.training.data import ArrayData
from probes.training.trainer import Trainer, TrainerSettings, TrainTask, warmup_cosine

from .blocks import images_to_unit, optimise, unit_batches
from .checks import check_kind, require_positive_ints
from .data import AgingFaces
from .groups import AgeGroups, AgingError

AGE_CLASSIFIER_KIND = "age-group-classifier"


@dataclass(frozen=True)
class AgeClassifierConfig(DictConfig):
    """Architecture of :class:`AgeGroupClassifier` (saved with its weights); ``from_dict`` ignores unknown keys."""

    ignore_unknown = True

    groups: dict = field(default_factory=dict)  # AgeGroups.to_dict()
    width: int = 16
    input_size: int = 64  # faces of any size are area-resized to this first

    def __post_init__(self):
        require_positive_ints("age classifier", self, ("width",))
        if not isinstance(self.input_size, int) or self.input_size < 16 or self.input_size % 16:
            raise AgingError(f"age classifier input_size must be a multiple of 16 >= 16, got {self.input_size!r}")


class AgeGroupClassifier(nn.Module):
    """Small CNN: N x 3 x S x S faces in [0, 1] (UTKFace layout) -> N x G age-group logits."""

    def __init__(self, groups: AgeGroups, width: int = 16, input_size: int = 64):
        super().__init__()
        self.groups = groups
        self.config = AgeClassifierConfig(groups.to_dict(), width, input_size)
        layers, c_in = [], 3
        for i in range(4):  # input_size -> input_size / 16
            c = width * 2 ** i
            layers += [nn.Conv2d(c_in, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(c_in, len(groups)))
        self.register_buffer("_mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, config: AgeClassifierConfig | dict) -> AgeGroupClassifier:
        if isinstance(config, dict):
            config = AgeClassifierConfig.from_dict(config)
        return cls(AgeGroups.from_dict(config.groups), config.width, config.input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.input_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=x.shape[-1] > s)
        h = self.features((x - self._mean) * 2.0)
        return self.head(h.mean(dim=(2, 3)))

    @torch.no_grad()
    def predict(self, images, batch_size: int = 256) -> np.ndarray:
        """Group index of N x S x S x 3 uint8 faces (or an N x 3 x S x S [0, 1] tensor)."""
        device = next(self.parameters()).device
        with evaluating(self):
            out = [self(chunk).argmax(1).cpu() for chunk in unit_batches(images, batch_size, device)]
        return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


# --------------------------------------------------------------------------- training


def _augment(x: torch.Tensor, shift: int = 4) -> torch.Tensor:
    """Random horizontal flips and up-to-``shift``-pixel translations (replicate padding)."""
    n, _, h, w = x.shape
    flip = torch.rand(n, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if shift:
        padded = F.pad(x, (shift,) * 4, mode="replicate")
        dy = torch.randint(0, 2 * shift + 1, (n,)).tolist()
        dx = torch.randint(0, 2 * shift + 1, (n,)).tolist()
        x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    return x


class AgeClassifierTask(TrainTask):
    """Class-balanced cross entropy with flip/shift augmentation; AdamW, cosine learning rate."""

    kind = AGE_CLASSIFIER_KIND

    def __init__(self, classifier: AgeGroupClassifier, train_groups: np.ndarray, total_steps: int,
                 lr: float = 2e-3, device: str = "cpu", val: AgingFaces | None = None):
        super().__init__()
        self.device = torch.device(device)
        self.models["classifier"] = classifier.to(self.device)
        self.optimizers["classifier"] = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=1e-4)
        counts = np.bincount(np.asarray(train_groups), minlength=len(classifier.groups)).astype(np.float64)
        # Inverse-frequency weights: UTKFace's groups are unbalanced (many 50+, few 41-50).
        weights = counts.sum() / np.maximum(counts, 1) / len(counts)
        self.class_weights = torch.tensor(weights, dtype=torch.float32, device=self.device)
        self.lr, self.total_steps, self.val = lr, total_steps, val
        self._config = {"classifier": classifier.config.to_dict(), "lr": lr, "total_steps": total_steps,
                        "class_weights": [float(w) for w in weights], "augment": "hflip + 4 px shift"}

    def config(self) -> dict:
        return self._config

    def step(self, batch, step: int) -> dict[str, float]:
        lr = self.lr * warmup_cosine(step, self.total_steps)
        opt = self.optimizers["classifier"]
        for group in opt.param_groups:
            group["lr"] = lr
        x = _augment(images_to_unit(batch["images"], self.device))
        y = batch["group"].to(self.device)
        logits = self.net("classifier")(x)
        loss = F.cross_entropy(logits, y, weight=self.class_weights)
        optimise(opt, loss)
        return {"loss": loss.item(), "accuracy": (logits.argmax(1) == y).float().mean().item(), "lr": lr}

    def validate(self, step: int) -> dict[str, float] | None:
        if self.val is None or len(self.val) == 0:
            return None
        return age_classifier_scores(self.models["classifier"], self.val)


def age_classifier_scores(classifier: AgeGroupClassifier, faces: AgingFaces) -> dict[str, float]:
    """Accuracy, balanced accuracy and mean |group error| of ``classifier`` on ``faces``."""
    pred = classifier.predict(faces.images)
    true = np.asarray(faces.group)
    recalls = [float((pred[true == g] == g).mean()) for g in range(len(classifier.groups)) if (true == g).any()]
    return {"val_accuracy": float((pred == true).mean()), "val_balanced_accuracy": float(np.mean(recalls)),
            "val_mean_abs_group_error": float(np.abs(pred - true).mean())}


@dataclass(frozen=True)
class AgeClassifierTraining:
    """How :func:`train_age_classifier` trains: steps, batch size, peak learning rate, the
    classifier's width, the seed (weights and data order) and an optional time limit."""

    steps: int = 400
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 16
    seed: int = 0
    time_limit_s: float | None = None


def train_age_classifier(train: AgingFaces, out_dir: str | Path, val: AgingFaces | None = None,
                         training: AgeClassifierTraining | None = None, *, device: str = "cpu",
                         progress: bool = True, **settings) -> tuple[AgeGroupClassifier, dict]:
    """Train (or finish training) an :class:`AgeGroupClassifier` on ``train`` into ``out_dir``.

    ``training`` (default :class:`AgeClassifierTraining`); keyword ``settings``
    replace its fields (``steps=30, width=4``). Resumes from
    ``out_dir/checkpoints/latest.pt`` when it exists, so calling it again on a
    finished run only loads the result. Returns the frozen classifier (eval
    mode) and a summary dict (checkpoint path, steps, validation scores on ``val``).
    """
    run = dataclasses.replace(training or AgeClassifierTraining(), **settings)
    seed_everything(run.seed)
    classifier = AgeGroupClassifier(train.groups, run.width, 64)
    task = AgeClassifierTask(classifier, train.group, run.steps, run.lr, device, val)
    trainer_settings = TrainerSettings(
        steps=run.steps, batch_size=min(run.batch_size, len(train)), seed=run.seed,
        save_every=max(1, min(500, run.steps)), keep_every=0, log_every=max(1, min(50, run.steps)), sample_every=0,
        validate_every=0, time_limit_s=run.time_limit_s, progress=progress)
    data = ArrayData(images=train.images, group=train.group)
    result = Trainer(task, data, out_dir, trainer_settings, resume=True).fit()
    classifier.requires_grad_(False).eval()
    info = {"checkpoint": str(result.checkpoint), "steps": result.step, "n_train": len(train),
            "train_time_s": round(result.elapsed_s, 1)}
    if val is not None and len(val):
        info.update(age_classifier_scores(classifier, val))
    return classifier, info


# --------------------------------------------------------------------------- loading


def load_age_classifier(checkpoint: str | Path, device: str = "cpu") -> AgeGroupClassifier:
    """A trained :class:`AgeGroupClassifier` (frozen, eval mode) from its checkpoint or run folder."""
    state = load_checkpoint(checkpoint)
    check_kind(state, AGE_CLASSIFIER_KIND, f"an {AGE_CLASSIFIER_KIND!r}")
    return age_classifier_from_state(state["config"]["classifier"], state["models"]["classifier"],
                                     state["path"], device)


def age_classifier_from_state(config: dict, weights: dict, source: str, device: str = "cpu") -> AgeGroupClassifier:
    """Rebuild a frozen classifier from its config dict and state dict; CheckpointError names ``source``."""
    try:
        classifier = AgeGroupClassifier.from_config(config)
        classifier.load_state_dict(weights)
    except (KeyError, TypeError, RuntimeError, AgingError) as exc:
        raise CheckpointError(f"{source}: age classifier weights do not fit its config: {exc}") from exc
    return classifier.to(device).requires_grad_(False).eval()
