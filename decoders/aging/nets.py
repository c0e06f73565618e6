"""Building blocks shared by the aging GANs (IPCGAN, Age-cGAN).

- condition maps: a target age group as G constant one-hot planes;
- spectrally normalised convolutions / linear layers (:func:`sn_conv2d`, :func:`sn_linear`);
- least-squares GAN losses (:func:`lsgan_loss`, :func:`lsgan_d_loss`, :func:`lsgan_g_loss`);
- a generator EMA (:func:`ema_copy`, :func:`update_ema`): a frozen copy whose weights
  follow the trained generator; keep it in ``task.models`` so the trainer checkpoints it;
- :class:`AgeGroupClassifier`: a small CNN that tells the age group of a 64 x 64
  face, trained on :class:`~decoders.aging.data.AgingFaces` with the shared
  :class:`~probes.training.Trainer` (:func:`train_age_classifier`); the GANs'
  age loss uses it frozen. The audit measures age with *other* estimators
  (the face-api / HSE labellers), not with this one;
- :class:`IdentityFeatures`: a frozen face-recognition backbone fed GAN-sized
  UTKFace-layout faces the way the audit measures them (bicubic up to the
  200 x 200 UTKFace frame, then ``backbone(x, "utkface")``), differentiable in
  its input; :class:`EmbeddingCache` keeps the embeddings of fixed training inputs.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from probes.backbones import create_backbone
from probes.nn import evaluating
from probes.training.checkpoints import CheckpointError, load_checkpoint, seed_everything
from probes.training.data import ArrayData
from probes.training.trainer import Trainer, TrainerSettings, TrainTask, warmup_cosine

from .data import UTKFACE_FRAME, AgingFaces
from .groups import AgeGroups, AgingError

AGE_CLASSIFIER_KIND = "age-group-classifier"


# --------------------------------------------------------------------------- conditions


def condition_maps(target: torch.Tensor, n_groups: int, size: int | tuple[int, int]) -> torch.Tensor:
    """N group indices -> N x n_groups x H x W one-hot planes (plane ``target[i]`` all ones)."""
    h, w = (size, size) if isinstance(size, int) else size
    onehot = F.one_hot(target.long(), n_groups).to(torch.float32)
    return onehot[:, :, None, None].expand(-1, -1, h, w)


def images_to_unit(images: torch.Tensor, device=None) -> torch.Tensor:
    """N x S x S x 3 uint8 tensor -> N x 3 x S x S float in [0, 1] (on ``device``)."""
    return images.to(device).permute(0, 3, 1, 2).float().div_(255.0)


def unit_to_uint8(x: torch.Tensor) -> np.ndarray:
    """N x 3 x S x S in [0, 1] -> N x S x S x 3 uint8 (rounded, clamped)."""
    return x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# --------------------------------------------------------------------------- layers


def sn_conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
              bias: bool = True, spectral: bool = True) -> nn.Module:
    """A Conv2d, spectrally normalised (Miyato et al. 2018) unless ``spectral=False``."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
    return spectral_norm(conv) if spectral else conv


def sn_linear(in_features: int, out_features: int, bias: bool = True, spectral: bool = True) -> nn.Module:
    """A Linear layer, spectrally normalised unless ``spectral=False``."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    return spectral_norm(layer) if spectral else layer


# --------------------------------------------------------------------------- losses


def lsgan_loss(prediction: torch.Tensor, target: float) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al. 2017): mean of (prediction - target)^2."""
    return (prediction.float() - target).pow(2).mean()


def lsgan_d_loss(real: torch.Tensor, *fakes: torch.Tensor) -> torch.Tensor:
    """Discriminator: 1/2 [(D(real) - 1)^2 + mean over ``fakes`` of D(fake)^2].

    Several fake terms (e.g. generated faces and real faces shown with the
    wrong age condition) share the fake half equally.
    """
    if not fakes:
        raise ValueError("lsgan_d_loss needs at least one fake prediction")
    return 0.5 * (lsgan_loss(real, 1.0) + sum(lsgan_loss(f, 0.0) for f in fakes) / len(fakes))


def lsgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """Generator: 1/2 (D(G(x)) - 1)^2."""
    return 0.5 * lsgan_loss(fake, 1.0)


# --------------------------------------------------------------------------- EMA


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen deep copy of ``model`` (eval mode, no gradients) to average its weights into."""
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    return ema.eval()


def ema_decay_at(step: int, decay: float) -> float:
    """The decay used after ``step`` updates: ramps up as (1 + step) / (10 + step) so that
    short runs are not dominated by the initial weights, capped at ``decay``."""
    return min(float(decay), (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for parameters; buffers are copied.

    ``model`` may be wrapped in DistributedDataParallel (its ``.module`` is used).
    """
    model = getattr(model, "module", model)
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


# --------------------------------------------------------------------------- age classifier


@dataclass(frozen=True)
class AgeClassifierConfig:
    """Architecture of :class:`AgeGroupClassifier` (saved with its weights)."""

    groups: dict = field(default_factory=dict)  # AgeGroups.to_dict()
    width: int = 16
    input_size: int = 64  # faces of any size are area-resized to this first

    def __post_init__(self):
        if not isinstance(self.width, int) or self.width < 1:
            raise AgingError(f"age classifier width must be a positive integer, got {self.width!r}")
        if not isinstance(self.input_size, int) or self.input_size < 16 or self.input_size % 16:
            raise AgingError(f"age classifier input_size must be a multiple of 16 >= 16, got {self.input_size!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AgeClassifierConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


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

        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        device = next(self.parameters()).device
        out = []
        with evaluating(self):
            for i in range(0, len(x), batch_size):
                chunk = x[i:i + batch_size]
                chunk = images_to_unit(chunk, device) if chunk.dtype == torch.uint8 else chunk.to(device)
                out.append(self(chunk).argmax(1).cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


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


def train_age_classifier(train: AgingFaces, out_dir: str | Path, val: AgingFaces | None = None, *,
                         steps: int = 400, batch_size: int = 64, lr: float = 2e-3, width: int = 16,
                         seed: int = 0, device: str = "cpu", time_limit_s: float | None = None,
                         progress: bool = True) -> tuple[AgeGroupClassifier, dict]:
    """Train (or finish training) an :class:`AgeGroupClassifier` on ``train`` into ``out_dir``.

    Resumes from ``out_dir/checkpoints/latest.pt`` when it exists, so calling
    it again on a finished run only loads the result. Returns the frozen
    classifier (eval mode) and a summary dict (checkpoint path, steps,
    validation scores on ``val``).
    """

    seed_everything(seed)
    classifier = AgeGroupClassifier(train.groups, width, 64)
    task = AgeClassifierTask(classifier, train.group, steps, lr, device, val)
    settings = TrainerSettings(steps=steps, batch_size=min(batch_size, len(train)), seed=seed,
                               save_every=max(1, min(500, steps)), keep_every=0, log_every=max(1, min(50, steps)),
                               sample_every=0, validate_every=0, time_limit_s=time_limit_s, progress=progress)
    data = ArrayData(images=train.images, group=train.group)
    trainer = Trainer(task, data, out_dir, settings, resume=True)
    result = trainer.fit()
    classifier.requires_grad_(False).eval()
    info = {"checkpoint": str(result.checkpoint), "steps": result.step, "n_train": len(train),
            "train_time_s": round(result.elapsed_s, 1)}
    if val is not None and len(val):
        info.update(age_classifier_scores(classifier, val))
    return classifier, info


def load_age_classifier(checkpoint: str | Path, device: str = "cpu") -> AgeGroupClassifier:
    """A trained :class:`AgeGroupClassifier` (frozen, eval mode) from its checkpoint or run folder."""
    state = load_checkpoint(checkpoint)
    if state.get("kind") != AGE_CLASSIFIER_KIND:
        raise CheckpointError(f"{state['path']} holds a {state.get('kind')!r} run, not an {AGE_CLASSIFIER_KIND!r}")
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


# --------------------------------------------------------------------------- identity


class IdentityFeatures(nn.Module):
    """Face embeddings of GAN-sized UTKFace-layout faces, differentiable in the faces.

    ``forward(x)``: N x 3 x S x S in [0, 1] -> bicubic to ``frame`` x ``frame``
    (UTKFace's 200 x 200), clamped to [0, 1], -> ``backbone(x, layout)``:
    exactly how the audit measures a GAN's output (it resizes uint8 faces the
    same way with :func:`decoders.aging.data.resize_faces`). The backbone is
    frozen and stays in eval mode.

    ``backbone``: a registry name (``"dlib-resnet29"``, ``"mobileface"`` ...),
    a :class:`probes.backbones.FaceBackbone`, or any module called as
    ``module(x, layout)`` (tests use tiny stand-ins).
    """

    def __init__(self, backbone: str | nn.Module = "dlib-resnet29", *, pretrained: bool = True,
                 weights: str | Path | None = None, device: str | torch.device = "cpu",
                 layout: str = "utkface", frame: int = UTKFACE_FRAME):
        super().__init__()
        if isinstance(backbone, str):

            backbone = create_backbone(backbone, weights, device=device, pretrained=pretrained)
        self.backbone = backbone.to(device).requires_grad_(False).eval()
        spec = getattr(backbone, "spec", None)
        self.name = spec.name if spec is not None else getattr(backbone, "name", type(backbone).__name__)
        self.weights_id = str(getattr(backbone, "weights_id", "unknown"))
        self.layout, self.frame = layout, int(frame)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: batch-norm statistics never change
        return self

    def describe(self) -> dict:
        """What a checkpoint records about the face model the GAN was trained against."""
        return {"name": self.name, "weights_id": self.weights_id, "layout": self.layout, "frame": self.frame,
                "distance": "1 - cosine"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.frame, self.frame):
            x = F.interpolate(x, size=(self.frame, self.frame), mode="bicubic", align_corners=False,
                              antialias=x.shape[-1] > self.frame).clamp(0, 1)
        return self.backbone(x, self.layout)

    @torch.no_grad()
    def embed(self, images, batch_size: int = 64) -> torch.Tensor:
        """Embeddings of N x S x S x 3 uint8 faces (or an N x 3 x S x S [0, 1] tensor), float32 on CPU."""
        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        device = next(self.backbone.parameters()).device
        out = []
        for i in range(0, len(x), batch_size):
            chunk = x[i:i + batch_size]
            chunk = images_to_unit(chunk, device) if chunk.dtype == torch.uint8 else chunk.to(device)
            out.append(self(chunk).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)

    @staticmethod
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-face 1 - cosine similarity (0 = same direction, 2 = opposite)."""
        return 1 - F.cosine_similarity(a.float(), b.float().to(a.device), dim=1, eps=1e-8)


class EmbeddingCache:
    """Embeddings of the fixed training inputs, filled lazily the first time each face is seen.

    Its state (values and which are known) goes into the checkpoint through the
    task's ``extra_state``, so a resumed run computes exactly what an
    uninterrupted one would.
    """

    def __init__(self, n: int, dim: int | None = None):
        self.n = int(n)
        self.values = torch.zeros(self.n, dim or 0)
        self.known = torch.zeros(self.n, dtype=torch.bool)

    def lookup(self, index: torch.Tensor, inputs: torch.Tensor, features: IdentityFeatures) -> torch.Tensor:
        """Embeddings of training faces ``index`` whose [0, 1] images are ``inputs`` (N x 3 x S x S)."""
        index = index.long().cpu()
        missing = ~self.known[index]
        if missing.any():
            with torch.no_grad():
                emb = features(inputs[missing.to(inputs.device)]).float().cpu()
            if self.values.shape[1] != emb.shape[1]:
                self.values = torch.zeros(self.n, emb.shape[1])
            self.values[index[missing]] = emb
            self.known[index[missing]] = True
        return self.values[index].to(inputs.device)

    def state_dict(self) -> dict:
        return {"values": self.values.clone(), "known": self.known.clone()}

    def load_state_dict(self, state: dict) -> None:
        values, known = state["values"], state["known"].to(torch.bool)
        if len(known) != self.n:
            raise CheckpointError(f"identity cache holds {len(known)} faces, the training data has {self.n}")
        self.values, self.known = values.float().clone(), known.clone()


@contextmanager
def frozen(module: nn.Module):
    """``module`` with ``requires_grad`` off inside the block (restored after, even on error).

    The generator's adversarial loss goes through the plain discriminator, not its
    DDP wrapper: its weights get no gradient, so no synchronisation is expected.
    """
    module.requires_grad_(False)
    try:
        yield module
    finally:
        module.requires_grad_(True)


def optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One update: clear gradients, back-propagate ``loss``, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class ConditionalNorm(nn.Module):
    """A normalisation without affine whose scale and shift are picked by the age group.

    ``norm`` is e.g. ``nn.InstanceNorm2d(c)`` or ``nn.BatchNorm2d(c, affine=False)``;
    ``conditional=False`` keeps one (unconditional) scale and shift.
    """

    def __init__(self, norm: nn.Module, channels: int, n_groups: int, conditional: bool = True):
        super().__init__()
        self.norm = norm
        rows = n_groups if conditional else 1
        self.scale = nn.Parameter(torch.ones(rows, channels))
        self.shift = nn.Parameter(torch.zeros(rows, channels))
        self.conditional = conditional

    def forward(self, x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        index = group.long() if self.conditional else torch.zeros_like(group, dtype=torch.long)
        return self.norm(x) * self.scale[index][:, :, None, None] + self.shift[index][:, :, None, None]
