"""Training a Deep Face Decoder: :class:`DecoderTrainingConfig` and :func:`train_decoder`.

The decoder learns template -> target chip (see :mod:`decoders.dfd.losses`) on
identity-disjoint LFW splits (``dataset="lfw"``), UTKFace (``"utkface"``: an
image split, UTKFace has no identities) or both (``"both"``: all UTKFace images
join LFW's training part; validation and test stay LFW identities).

The run folder receives ``config.json`` (the resolved configuration and the command),
``split.json`` (train/val/test identities and the test images, for evaluation on
held-out people), ``log.csv``, ``val.csv``, ``samples/*.png``,
``checkpoints/latest.pt`` (+ ``step_XXXXXXX.pt``) and ``summary.json``.

A folder with results is refused unless ``resume`` (continue from its latest
checkpoint; settings that define the model must not change) or ``overwrite`` (its
earlier results are removed, but only once every input has been checked). Under
``torchrun`` each process trains its share (gloo on CPU, nccl on CUDA)::

    result = train_decoder(DecoderTrainingConfig(dataset="lfw", steps=400), "runs/dfd")
    result.summary["last_losses"]
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from probes.backbones import FaceBackbone, create_backbone
from probes.config import DictConfig, known_fields
from probes.errors import TrainingError
from probes.outputs import write_json
from probes.training.checkpoints import load_checkpoint, seed_everything
from probes.training.data import ArrayData
from probes.training.distributed import DistributedContext, init_distributed, shutdown_distributed
from probes.training.runs import RunFolder
from probes.training.trainer import Trainer

from ..run_settings import (
    RunInputs,
    changed_settings,
    check_max_images,
    check_positive_int,
    check_time_limit,
    command_record,
    data_root_record,
    last_validation,
    refuse_changes,
    saved_run_config,
    trainer_settings,
)
from .checkpoint import DECODER_KIND
from .losses import LossConfig, ReconstructionLoss
from .model import DecoderConfig, FaceDecoder
from .splits import dataset_parts, split_record, training_parts
from .task import DecoderTask, check_same_backbone
from .templates import Targets, compute_targets, weights_key

RESULT_FILES = ("config.json", "split.json", "log.csv", "val.csv", "summary.json")
RESULT_DIRS = ("checkpoints", "samples")
# Settings that define the model and its data: they must not change on resume.
FIXED_ON_RESUME = ("backbone", "weights", "random_backbone", "dataset", "image_size", "width", "norm", "standardise",
                   "batch_size",
                   "seed", "split_seed", "fractions", "max_images", "min_images_per_person", "lr",
                   "pixel", "gradient", "perceptual", "identity", "local_pixel", "local_gradient",
                   "local_perceptual", "local_identity", "pixel_kind", "lpips_net")
LOSS_SETTINGS = LossConfig.weight_names() + ("pixel_kind", "lpips_net")


@dataclass(frozen=True)
class DecoderTrainingConfig(DictConfig):
    """Everything that defines a decoder training run (saved as ``"cli"`` in its config and checkpoints)."""

    config_name = "decoder training"
    config_error = TrainingError

    backbone: str = "dlib-resnet29"  # the target face network
    weights: str | None = None  # a weights file overriding the backbone's default
    random_backbone: bool = False  # random-init backbone (tests and chance baselines only)
    dataset: str = "lfw"  # lfw, utkface or both
    image_size: int = 112  # decoder output side
    width: float = 1.0  # decoder channel multiplier
    norm: str = "batch"
    standardise: bool = False  # standardise templates (default: unit templates rescaled to norm sqrt(d))
    batch_size: int = 32  # per process
    seed: int = 0  # weights init and data order
    split_seed: int = 0
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train, val, test
    max_images: int | None = None  # seeded subsample of each dataset
    min_images_per_person: int = 1
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    pixel: float = LossConfig.pixel
    gradient: float = LossConfig.gradient
    perceptual: float = LossConfig.perceptual
    identity: float = LossConfig.identity
    local_pixel: float = LossConfig.local_pixel
    local_gradient: float = LossConfig.local_gradient
    local_perceptual: float = LossConfig.local_perceptual
    local_identity: float = LossConfig.local_identity
    pixel_kind: str = LossConfig.pixel_kind
    lpips_net: str = LossConfig.lpips_net
    steps: int = 400
    save_every: int = 100
    keep_every: int = 1000
    log_every: int = 10
    sample_every: int = 200
    validate_every: int = 100
    val_images: int = 128  # validation images scored in val.csv
    time_limit_min: float | None = None  # stop (and save) after this many minutes of training

    def __post_init__(self):
        for name in ("steps", "batch_size", "val_images"):
            check_positive_int(name, getattr(self, name), 0 if name == "val_images" else 1)
        check_max_images(self.max_images)
        check_time_limit(self.time_limit_min)

    @classmethod
    def resolve(cls, given: Mapping, saved: Mapping | None = None) -> DecoderTrainingConfig:
        """The defaults, overridden by a resumed run's ``saved`` settings, overridden by the ``given`` ones
        (None = not given); a resume may not change :data:`FIXED_ON_RESUME`."""
        given = {k: v for k, v in known_fields(cls, given).items() if v is not None}
        if "fractions" in given:
            given["fractions"] = list(given["fractions"])
        check_time_limit(given.get("time_limit_min"))
        values = {}
        if saved is not None:
            values.update(known_fields(cls, saved))
            refuse_changes(changed_settings(given, saved, FIXED_ON_RESUME))
        return cls.from_dict({**values, **given})

    def loss_config(self) -> LossConfig:
        return LossConfig.from_dict({k: getattr(self, k) for k in LOSS_SETTINGS})

    def decoder_config(self, embedding_size: int) -> DecoderConfig:
        return DecoderConfig(embedding_size=embedding_size, image_size=self.image_size, width=self.width,
                             norm=self.norm, standardise=self.standardise)


@dataclass(frozen=True)
class DecoderTrainingResult:
    """A finished (or time-limited) call of :func:`train_decoder`: its run folder and ``summary.json``."""

    out: Path
    config: DecoderTrainingConfig
    summary: dict


def saved_settings(out: str | Path) -> dict | None:
    """The settings of the decoder run in ``out`` (None when it has none yet)."""
    saved = saved_run_config(Path(out).expanduser(), DECODER_KIND, "a decoder run")
    return saved["cli"] if saved is not None else None


def config_for_run(out: str | Path, given: Mapping, resume: bool = False,
                   overwrite: bool = False) -> DecoderTrainingConfig:
    """The config a run in ``out`` trains with: ``given`` settings (None = not given) over, when resuming,
    the run's own settings; refuses a folder that cannot take the run first."""
    RunFolder(Path(out).expanduser(), RESULT_FILES, RESULT_DIRS).check(resume, overwrite)
    return DecoderTrainingConfig.resolve(given, saved_settings(out) if resume else None)


def train_decoder(config: DecoderTrainingConfig, out: str | Path, resume: bool = False, overwrite: bool = False, *,
                  data_root: str | Path | None = None, device: str = "cpu", cache_dir: str | Path | None | bool = None,
                  progress: bool = True) -> DecoderTrainingResult:
    """Train a decoder into the run folder ``out`` (``resume``: continue the run there).

    ``data_root`` holds ``lfw_home/`` and ``utkface/`` (default ``$FACEPROBE_DATA``); ``cache_dir`` is
    the template cache (None: the default folder, False: none). Every process of a ``torchrun`` job calls this.
    """
    if resume and overwrite:
        raise TrainingError("resume and overwrite exclude each other")
    out = Path(out).expanduser()
    RunFolder(out, RESULT_FILES, RESULT_DIRS).check(resume, overwrite)
    if resume:
        refuse_changes(changed_settings(config.to_dict(), saved_settings(out) or {}, FIXED_ON_RESUME))
    ctx = init_distributed(device)
    try:
        summary = _train(config, out, ctx, RunInputs(data_root, cache_dir, progress and ctx.is_main), resume, overwrite)
    finally:
        shutdown_distributed(ctx)
    return DecoderTrainingResult(out, config, summary)


def _train(config: DecoderTrainingConfig, out: Path, ctx: DistributedContext, inputs: RunInputs, resume: bool,
           overwrite: bool) -> dict:
    seed_everything(config.seed)  # the random-init backbone (tests) and the decoder's init
    backbone = create_backbone(config.backbone, config.weights, device=ctx.device,
                               pretrained=not config.random_backbone)
    loss_cfg = config.loss_config()
    dec_cfg = config.decoder_config(backbone.spec.embedding_size)
    parts = dataset_parts(config, inputs.data_root)
    all_targets = _compute_all_targets(backbone, parts, dec_cfg.image_size, inputs, ctx)
    train, val = training_parts(parts, all_targets, config.batch_size, ctx.world_size)
    rng = np.random.default_rng(config.seed)
    show = rng.choice(len(train), size=min(8, len(train)), replace=False)
    sample_targets = train.subset(np.sort(show))
    val_small = (val.subset(np.arange(min(config.val_images, len(val))))
                 if val is not None and config.val_images else None)
    record = _run_record(config, backbone, dec_cfg, loss_cfg, parts, (train, val), inputs.data_root)
    latest = out / "checkpoints" / "latest.pt"
    if resume and latest.is_file():
        check_same_backbone(load_checkpoint(latest), record["backbone"])  # before anything is written
    if ctx.is_main:
        if overwrite:
            RunFolder(out, RESULT_FILES, RESULT_DIRS).clear()
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "split.json", split_record(parts, config))
        write_json(out / "config.json", dict(record, command=command_record("decoders.train"),
                                              world_size=ctx.world_size))
    ctx.barrier()

    torch.manual_seed(config.seed)
    decoder = FaceDecoder(dec_cfg).fit_normalisation(train.templates)
    loss = ReconstructionLoss(loss_cfg, backbone if loss_cfg.needs_backbone else None)
    if loss.backbone is None and backbone is not None:
        loss.backbone = backbone.requires_grad_(False).eval()  # for validation only
    task = DecoderTask(decoder, loss, record, ctx.device, config.steps, sample_targets, val_small)
    settings = trainer_settings(config, inputs.progress)
    data = ArrayData(templates=train.templates, images=train.images)
    trainer = Trainer(task, data, out, settings, ctx, resume=resume)
    start = time.perf_counter()
    result = trainer.fit()
    summary = {"step": result.step, "epoch": result.epoch, "train_time_s": round(result.elapsed_s, 1),
               "wall_time_this_call_s": round(time.perf_counter() - start, 1), "stopped_early": result.stopped_early,
               "last_losses": result.last_losses, "resumed_from": trainer.resumed_from,
               "checkpoint": str(result.checkpoint), "n_train": len(train), "world_size": ctx.world_size,
               "template_cache_hits": {n: list(t.cache_hits) for n, t in all_targets.items()}}
    if ctx.is_main:
        last = last_validation(out)
        if last is not None:
            summary["last_validation"] = last
        write_json(out / "summary.json", summary)
    return summary


def _compute_all_targets(backbone: FaceBackbone, parts: dict, image_size: int, inputs: RunInputs,
                         ctx: DistributedContext) -> dict[str, Targets]:
    """Every dataset's targets; rank 0 fills the cache, the others then read it."""
    all_targets = {}
    for turn in ((0,) if not ctx.enabled else (0, 1)):
        if (turn == 0) == ctx.is_main:
            all_targets = {name: compute_targets(backbone, ds, image_size, cache_dir=inputs.cache_dir,
                                                 progress=inputs.progress)
                           for name, (ds, _) in parts.items()}
        ctx.barrier()
    return all_targets


def _run_record(config: DecoderTrainingConfig, backbone: FaceBackbone, dec_cfg: DecoderConfig, loss_cfg: LossConfig,
                parts: dict, train_val: tuple[Targets, Targets | None], data_root) -> dict:
    """The run's configuration as ``config.json`` and every checkpoint hold it."""
    train, val = train_val
    return {
        "decoder": dec_cfg.to_dict(), "loss": loss_cfg.to_dict(),
        "backbone": {"name": backbone.spec.name, "weights_id": backbone.weights_id,
                     "weights_key": weights_key(backbone), "embedding_size": backbone.spec.embedding_size,
                     "verification_metric": backbone.spec.verification_metric, "weights_file": config.weights},
        "optim": {"lr": config.lr, "warmup_steps": config.warmup_steps, "min_lr_ratio": config.min_lr_ratio,
                  "optimizer": "adam", "betas": [0.9, 0.99]},
        "data": {"dataset": config.dataset, "data_root": data_root_record(data_root),
                 "n_train": len(train), "n_val": len(val) if val is not None else 0,
                 "layouts": {n: ds.layout for n, (ds, _) in parts.items()}, "split_file": "split.json"},
        "target_chip": "backbone crop of the dataset layout (+ square padding), resized to image_size; "
                       "fed back to the backbone with layout 'chip'",
        "cli": config.to_dict(),
    }

