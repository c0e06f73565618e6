"""Training an aging GAN: :class:`AgingTrainingConfig` and :func:`train_aging_gan`.

Faces come from UTKFace (``data_root`` or ``$FACEPROBE_DATA``) at the GAN's
size (:func:`decoders.aging.data.load_aging_faces`), split by image into
train / validation (``val_fraction``). When the GAN has an age loss, an
:class:`~decoders.aging.classifier.AgeGroupClassifier` is first trained on the
training faces into ``RUN/age_classifier/`` (or taken from the
``age_classifier`` checkpoint); its weights also go into every GAN checkpoint.
Then the GAN trains with the shared :class:`~probes.training.Trainer`.

The run folder receives ``config.json``, ``log.csv``, ``val.csv``, ``samples/*.png``
(rows: a held-out face, then that face at every target group),
``checkpoints/latest.pt`` (+ ``step_XXXXXXX.pt``), ``age_classifier/`` and
``summary.json``. Load the result with :func:`decoders.aging.models.load_aging_model`.

The GAN's own settings are ``overrides`` of its config dataclass's fields (the
command's ``--set KEY=VALUE``, read by :func:`parse_overrides`). A folder with
results is refused unless ``resume`` (settings that define the run must not
change) or ``overwrite``. Which GANs exist: ``decoders.aging.models.MODELS``::

    result = train_aging_gan(AgingTrainingConfig("ipcgan", steps=3000, overrides={"g_blocks": 4}), "runs/ipcgan")
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from probes.config import DictConfig
from probes.errors import TrainingError
from probes.outputs import write_json
from probes.training.checkpoints import CheckpointError, seed_everything
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
from .classifier import age_classifier_scores, load_age_classifier, train_age_classifier
from .data import AgingFaces, load_aging_faces
from .identity import IdentityFeatures
from .models import gan_module

RESULT_FILES = ("config.json", "log.csv", "val.csv", "summary.json")
RESULT_DIRS = ("checkpoints", "samples", "age_classifier")
RUN_SETTINGS = ("steps", "batch_size", "max_images", "val_fraction", "seed", "identity_weights", "random_identity",
                "age_classifier", "save_every", "keep_every", "log_every", "sample_every", "validate_every",
                "time_limit_min")
# Settings that may change on resume (everything else defines the run).
FREE_ON_RESUME = ("steps", "save_every", "keep_every", "log_every", "sample_every", "validate_every",
                  "time_limit_min")
FIXED_ON_RESUME = tuple(k for k in RUN_SETTINGS if k not in FREE_ON_RESUME)


def parse_overrides(items: Sequence[str], config_cls) -> dict:
    """``["KEY=VALUE", ...]`` (``--set``) as values of ``config_cls``'s fields, typed like its defaults."""
    types = {f.name: f.type for f in dataclasses.fields(config_cls)}
    defaults = config_cls().to_dict()
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise TrainingError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(types))}")
        kind = type(defaults[key])
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                value = text.lower() in ("true", "1", "yes")
            else:
                value = kind(text)
        except ValueError:
            raise TrainingError(f"--set {item!r}: {key} must be a {kind.__name__}") from None
        out[key] = value
    return out


@dataclass(frozen=True)
class AgingTrainingConfig(DictConfig):
    """Which GAN, its settings beyond its defaults, and the run's own settings (saved as ``"cli"``)."""

    config_name = "aging training"
    config_error = TrainingError

    model: str  # a key of decoders.aging.models.MODELS
    steps: int = 3000
    batch_size: int = 8
    max_images: int | None = None  # seeded subsample of the faces in the GAN's age groups
    val_fraction: float = 0.1  # held-out faces for samples and validation
    seed: int = 0  # split, weights init and data order
    identity_weights: str | None = None  # weights file overriding the identity backbone's default
    random_identity: bool = False  # random-init identity backbone (tests only)
    age_classifier: str | None = None  # checkpoint of a trained age-group classifier (None: train one)
    save_every: int = 100
    keep_every: int = 1000
    log_every: int = 10
    sample_every: int = 200
    validate_every: int = 500
    time_limit_min: float | None = None  # stop (and save) after this many minutes of training
    overrides: dict = field(default_factory=dict)  # fields of the GAN's config, over its defaults (or the run's)

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            check_positive_int(name, getattr(self, name))
        check_max_images(self.max_images)
        if not 0 <= self.val_fraction < 1:
            raise TrainingError(f"--val-fraction must lie in [0, 1), got {self.val_fraction}")
        check_time_limit(self.time_limit_min)

    def run_settings(self) -> dict:
        return {k: getattr(self, k) for k in RUN_SETTINGS}

    def gan_config(self, saved_model: Mapping | None = None):
        """The GAN's config: its defaults, then a resumed run's ``saved_model`` settings, then the overrides."""
        module = gan_module(self.model)
        values = {**module.Config().to_dict(), **(saved_model or {}), **self.overrides}
        try:
            return module.Config.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise TrainingError(f"bad {self.model} settings: {exc}") from exc

    @classmethod
    def resolve(cls, model: str, given: Mapping, overrides: Mapping,
                saved: Mapping | None = None) -> AgingTrainingConfig:
        """The defaults, overridden by a resumed run's ``saved`` settings, overridden by the ``given`` ones
        (None = not given); a resume may change only :data:`FREE_ON_RESUME`. Checks the GAN's settings."""
        given = {k: v for k, v in given.items() if k in RUN_SETTINGS and v is not None}
        values = {}
        if saved is not None:
            values.update({k: v for k, v in saved["cli"].items() if k in RUN_SETTINGS})
            refuse_changes(_changes(given, overrides, saved))
        config = cls.from_dict({"model": model, **values, **given, "overrides": dict(overrides)})
        config.gan_config(saved["model"] if saved is not None else None)
        return config


@dataclass(frozen=True)
class AgingTrainingResult:
    """A finished (or time-limited) call of :func:`train_aging_gan`: its run folder and ``summary.json``."""

    out: Path
    config: AgingTrainingConfig
    gan_config: object
    summary: dict


def _changes(run_settings: Mapping, overrides: Mapping, saved: Mapping) -> list[str]:
    return changed_settings(run_settings, saved["cli"], FIXED_ON_RESUME) + [
        f"{k}={v!r} (run: {saved['model'].get(k)!r})" for k, v in overrides.items() if saved["model"].get(k) != v]


def saved_run(out: str | Path, model: str) -> dict | None:
    """``{"cli": run settings, "model": GAN settings}`` of the ``model`` run in ``out`` (None when it has none)."""
    kind = gan_module(model).KIND
    saved = saved_run_config(Path(out).expanduser(), kind, f"a {kind!r} run")
    return {"cli": saved["cli"], "model": saved["model"]} if saved is not None else None


def config_for_run(out: str | Path, model: str, given: Mapping, overrides: Mapping, resume: bool = False,
                   overwrite: bool = False) -> AgingTrainingConfig:
    """The config a run in ``out`` trains with: ``given`` settings (None = not given) and GAN ``overrides``
    over, when resuming, the run's own; refuses a folder that cannot take the run first."""
    RunFolder(Path(out).expanduser(), RESULT_FILES, RESULT_DIRS).check(resume, overwrite)
    return AgingTrainingConfig.resolve(model, given, overrides, saved_run(out, model) if resume else None)


def train_aging_gan(config: AgingTrainingConfig, out: str | Path, resume: bool = False, overwrite: bool = False, *,
                    data_root: str | Path | None = None, device: str = "cpu", cache_dir: str | Path | None = None,
                    progress: bool = True, command: Sequence[str] | None = None) -> AgingTrainingResult:
    """Train the GAN ``config.model`` into the run folder ``out`` (``resume``: continue the run there).

    ``command``: the command line the run records (default this process's, as ``python -m
    decoders.aging.train ...``).

    ``data_root`` holds ``utkface/`` (default ``$FACEPROBE_DATA``); ``cache_dir`` holds the resized faces
    (default ``$FACEPROBE_HOME/cache/aging-faces``). Every process of a ``torchrun`` job calls this.
    """
    if resume and overwrite:
        raise TrainingError("resume and overwrite exclude each other")
    out = Path(out).expanduser()
    RunFolder(out, RESULT_FILES, RESULT_DIRS).check(resume, overwrite)
    saved = saved_run(out, config.model) if resume else None
    if saved is not None:
        refuse_changes(_changes(config.run_settings(), config.overrides, saved))
    gan = config.gan_config(saved["model"] if saved is not None else None)
    ctx = init_distributed(device)  # one process, or one of torchrun's
    try:
        inputs = RunInputs(data_root, cache_dir, progress and ctx.is_main)
        summary = _train(config, gan, out, ctx, inputs, resume, overwrite,
                         list(command) if command is not None else command_record("decoders.aging.train"))
    finally:
        shutdown_distributed(ctx)
    return AgingTrainingResult(out, config, gan, summary)


def _train(config: AgingTrainingConfig, gan, out: Path, ctx: DistributedContext, inputs: RunInputs, resume: bool,
           overwrite: bool, command: list[str]) -> dict:
    module = gan_module(config.model)
    if str(ctx.device).startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda requested but CUDA is not available")
    train, val = _load_faces(config, module.GROUPS, gan.image_size, inputs, ctx)
    seed_everything(config.seed)  # a random-init identity backbone (tests) is drawn here
    identity = None
    if gan.uses_identity:
        identity = IdentityFeatures(gan.identity_backbone, pretrained=not config.random_identity,
                                    weights=config.identity_weights, device=ctx.device)
    if overwrite and ctx.is_main:
        RunFolder(out, RESULT_FILES, RESULT_DIRS).clear()
    ctx.barrier()
    out.mkdir(parents=True, exist_ok=True)
    settings = config.run_settings()
    data_info = {"data_root": data_root_record(inputs.data_root),
                 "n_train": len(train), "n_val": len(val) if val is not None else 0,
                 "train_counts": train.counts(), "image_size": gan.image_size,
                 "resize": "UTKFace 200x200 crops box-averaged to image_size (decoders.aging.data)",
                 # the held-out faces by file name: what the audit judges this run on
                 "val_paths": sorted(Path(p).name for p in val.paths) if val is not None else []}
    if ctx.is_main:
        write_json(out / "config.json", {"model": gan.to_dict(), "cli": settings, "data": data_info,
                                         "command": command})
    classifier, classifier_info = _age_classifier(config, gan, (train, val), out, ctx, inputs.progress)

    seed_everything(config.seed)  # the GAN's initial weights do not depend on what ran before
    info = {"cli": settings, "data": data_info, "age_classifier": classifier_info}
    task = module.build_task(gan, train=train, val=val, identity=identity, age_classifier=classifier,
                             device=ctx.device, info=info)
    data = ArrayData(images=train.images, group=train.group, index=torch.arange(len(train)))
    trainer = Trainer(task, data, out, trainer_settings(config, inputs.progress), ctx, resume=resume)
    start = time.perf_counter()
    result = trainer.fit()
    summary = {"model": config.model, "step": result.step, "epoch": result.epoch,
               "train_time_s": round(result.elapsed_s, 1),
               "wall_time_this_call_s": round(time.perf_counter() - start, 1),
               "stopped_early": result.stopped_early, "last_losses": result.last_losses,
               "resumed_from": trainer.resumed_from, "checkpoint": str(result.checkpoint),
               "n_train": len(train), "identity_backbone": gan.identity_backbone,
               "age_classifier": {k: v for k, v in (classifier_info or {}).items() if k != "config"}}
    last = last_validation(out)
    if last is not None:
        summary["last_validation"] = last
    samples = sorted((out / "samples").glob("*.png"))
    summary["last_sample_grid"] = str(samples[-1]) if samples else None
    summary["world_size"] = ctx.world_size
    if ctx.is_main:
        write_json(out / "summary.json", summary)
    return summary


def _load_faces(config: AgingTrainingConfig, groups, image_size: int, inputs: RunInputs,
                ctx: DistributedContext) -> tuple[AgingFaces, AgingFaces | None]:
    """(training, validation) faces; rank 0 fills the faces cache, the others read it."""
    faces = None
    for turn in ((0,) if not ctx.enabled else (0, 1)):
        if (turn == 0) == ctx.is_main:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="UTKFace: skipped")
                faces = load_aging_faces(groups, image_size, inputs.data_root, config.max_images,
                                         seed=config.seed, cache_dir=inputs.cache_dir, progress=inputs.progress)
        ctx.barrier()
    if config.val_fraction > 0:
        train, val = faces.split((1 - config.val_fraction, config.val_fraction), seed=config.seed)
    else:
        train, val = faces, None
    if len(train) < config.batch_size * ctx.world_size:
        raise TrainingError(f"{len(train)} training faces, fewer than one batch of {config.batch_size} x "
                            f"{ctx.world_size} process(es); use more images or a smaller --batch-size")
    return train, val


def _age_classifier(config: AgingTrainingConfig, gan, train_val: tuple[AgingFaces, AgingFaces | None], out: Path,
                    ctx: DistributedContext, progress: bool):
    """(classifier, its record) for a GAN with an age loss: the given checkpoint, or one trained here."""
    if not gan.uses_age_classifier:
        return None, None
    train, val = train_val
    groups = gan_module(config.model).GROUPS
    if config.age_classifier:
        classifier = load_age_classifier(config.age_classifier, ctx.device)
        if classifier.groups != groups:
            raise CheckpointError(f"{config.age_classifier} classifies {classifier.groups.name!r} groups, "
                                  f"{config.model} needs {groups.name!r}")
        info = {"checkpoint": str(Path(config.age_classifier).absolute())}
        if val is not None:
            info.update(age_classifier_scores(classifier, val))
    else:
        # Rank 0 trains the classifier (one process); the others load what it saved.
        if ctx.is_main:
            classifier, info = train_age_classifier(
                train, out / "age_classifier", val, steps=gan.classifier_steps, width=gan.classifier_width,
                seed=config.seed, device=ctx.device, progress=progress)
        ctx.barrier()
        if not ctx.is_main:
            classifier = load_age_classifier(out / "age_classifier", ctx.device)
            info = {"checkpoint": str((out / "age_classifier").absolute())}
    info["config"] = classifier.config.to_dict()
    return classifier, info
