"""Genovese et al. (ICIP 2019) on our IPCGAN: does an aging generator share filters with other generators?

:class:`CommonFiltersStudy` trains four generators of one architecture (the IPCGAN
config of the aging run), each in a folder under ``out`` and resumable:

``aging/``     IPCGAN aging on UTKFace from scratch (or an existing run, whose config, seed and
               age classifier are reused: ``aging_run``);
``pretrain/``  denoises random crops of scikit-image's sample images (no faces);
``lfw/``       denoises LFW faces: the architecture trained for another task on other images (a);
``finetuned/`` IPCGAN aging started from ``pretrain/``'s generator, with the aging run's config, data,
               age classifier, seed and validation schedule (b).

It then compares them with :class:`probes.filters.FilterComparison` on held-out UTKFace faces, fed
with one fixed target group (:class:`FixedGroup`). The seeds differ per generator (aging: the run's
seed, lfw: +1, pretrain: +2) so no two start from the same weights. The result
(:class:`~decoders.aging.common_filters_result.CommonFiltersResult`) saves ``compare/<pair>/``,
``summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from probes.filters import FilterComparison, Network
from probes.training.checkpoints import load_checkpoint, seed_everything
from probes.training.data import ArrayData
from probes.training.runs import read_log
from probes.training.trainer import Trainer, TrainerSettings

from . import ipcgan
from .classifier import load_age_classifier, train_age_classifier
from .common_filters_result import COMPARED_PAIRS, CommonFiltersResult, steps_to_match
from .data import AgingFaces, load_aging_faces
from .denoise import lfw_faces, skimage_crops, train_denoiser
from .identity import IdentityFeatures
from .ipcgan import ConditionalInstanceNorm, IPCGANConfig, build_generator


@dataclass
class CommonFiltersConfig:
    """The study's settings: the aging run (``aging_run``, or ``model`` fields of a new one), the
    training of the other generators, and the comparison."""

    aging_run: str | None = None  # an existing IPCGAN run folder used as the from-scratch generator
    model: dict = field(default_factory=dict)  # IPCGANConfig fields of a new aging run
    steps_aging: int = 3000  # of a new aging run; fine-tuning takes as many as the aging run made
    steps_pretrain: int = 2000
    steps_lfw: int = 2000
    n_pretrain: int = 4000  # scikit-image crops
    n_lfw: int = 4000  # LFW images
    max_images: int | None = None  # UTKFace faces for a new aging run (None: all)
    batch_size: int = 8
    validate_every: int = 250
    n_images: int = 300  # held-out faces for CKA
    n_baseline: int = 5
    threshold: float = 0.5
    compare_group: int = 2  # the target group the generators are fed for CKA
    tolerance: float = 0.02  # "comparable quality" margin on the validation metrics
    seed: int = 0
    time_limit_min: float | None = None  # per training stage (run again to continue)
    data_root: str | None = None
    progress: bool = True

    def trainer_settings(self, steps: int, seed: int, batch_size: int | None = None,
                         validate_every: int | None = None) -> TrainerSettings:
        return TrainerSettings(steps=steps, batch_size=batch_size or self.batch_size, seed=seed,
                               save_every=max(10, min(100, steps // 20)), keep_every=0, log_every=10,
                               sample_every=max(10, steps // 5),
                               validate_every=self.validate_every if validate_every is None else validate_every,
                               time_limit_s=self.time_limit_min * 60 if self.time_limit_min else None,
                               progress=self.progress)


@dataclass
class AgingRun:
    """The aging run the other generators share: its folder, model config, run settings and age classifier."""

    folder: Path
    config: IPCGANConfig
    settings: dict  # seed, val_fraction, max_images, batch_size, validate_every (a run's "cli" record)
    classifier_dir: Path | None

    @classmethod
    def existing(cls, folder: str | Path) -> AgingRun:
        """A run of ``python -m decoders.aging.train ipcgan``, from its ``config.json``."""
        folder = Path(folder)
        record = json.loads((folder / "config.json").read_text())
        return cls(folder, IPCGANConfig.from_dict(record["model"]), dict(record["cli"]), folder / "age_classifier")

    @property
    def steps(self) -> int:
        """Steps the run made (a time-limited run stops early: fine-tuning gets as many)."""
        return int(load_checkpoint(self.folder / "checkpoints" / "latest.pt")["step"])

    def faces(self, data_root, progress: bool) -> list[AgingFaces]:
        """(train, validation) faces of the run, split as it split them."""
        seed, fraction = self.settings["seed"], self.settings["val_fraction"]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="UTKFace: skipped")
            faces = load_aging_faces(ipcgan.GROUPS, self.config.image_size, data_root,
                                     self.settings.get("max_images"), seed=seed, progress=progress)
        return faces.split((1 - fraction, fraction), seed=seed)


def generator_state(run: Path, name: str = "generator") -> dict:
    """The weights of model ``name`` in run folder ``run``'s latest checkpoint."""
    return load_checkpoint(run / "checkpoints" / "latest.pt")["models"][name]


class FixedGroup(nn.Module):
    """A conditional generator as :mod:`probes.filters` sees it: images in, one fixed target group."""

    def __init__(self, generator: nn.Module, image_size: int, group: int):
        super().__init__()
        self.generator, self.image_size, self.group = generator, image_size, group

    def forward_images(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
        return self.generator(x, torch.full((len(x),), self.group, dtype=torch.long))

    def reset_parameters(self) -> None:
        # the random twin: convolutions re-drawn, conditional norms back to scale 1 / shift 0
        for module in self.generator.modules():
            if isinstance(module, ConditionalInstanceNorm):
                nn.init.ones_(module.scale)
                nn.init.zeros_(module.shift)
            elif isinstance(module, nn.Conv2d):
                module.reset_parameters()


def fixed_group_generator(config: IPCGANConfig, state: dict, group: int) -> FixedGroup:
    generator = build_generator(config)
    generator.load_state_dict(state)
    return FixedGroup(generator.eval(), config.image_size, group)


def load_fixed_group_generator(run: str, group: int = 2) -> FixedGroup:
    """The generator of an IPCGAN run (its EMA copy) or of a denoising run, fed one target group.

    For the command line: ``python -m probes.filters
    decoders.aging.common_filters:load_fixed_group_generator=RUN_A
    decoders.aging.common_filters:load_fixed_group_generator=RUN_B``
    """
    state = load_checkpoint(Path(run) / "checkpoints" / "latest.pt" if Path(run).is_dir() else run)
    models = state["models"]
    return fixed_group_generator(IPCGANConfig.from_dict(state["config"]["model"]),
                                 models["g_ema" if "g_ema" in models else "generator"], group)


class CommonFiltersStudy:
    """Train the four generators (resumable) and compare their filters; see the module docstring."""

    def __init__(self, config: CommonFiltersConfig):
        self.config = config

    def run(self, out: str | Path) -> CommonFiltersResult:
        cfg, out = self.config, Path(out)
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        aging = self._aging_run(out)
        steps_aging = aging.steps
        seed = int(aging.settings["seed"])
        size = aging.config.image_size
        pretrain = train_denoiser(out / "pretrain", skimage_crops(cfg.n_pretrain, size, seed + 2), aging.config,
                                  cfg.trainer_settings(cfg.steps_pretrain, seed + 2))
        train_denoiser(out / "lfw", lfw_faces(cfg.n_lfw, size, seed + 1, cfg.data_root), aging.config,
                       cfg.trainer_settings(cfg.steps_lfw, seed + 1))
        # fine-tuning: same config, classifier, seed and number of steps as the from-scratch run
        self._train_aging(out / "finetuned", aging, steps_aging, init=pretrain.state_dict())
        comparisons, n_images = self._compare(out, aging)
        scratch, tuned = read_log(aging.folder / "val.csv"), read_log(out / "finetuned" / "val.csv")
        speed = steps_to_match(scratch, tuned, cfg.tolerance) if len(scratch) and len(tuned) else {}
        return CommonFiltersResult(
            comparisons=comparisons, model=aging.config.to_dict(),
            aging_run=str(aging.folder), steps_aging=steps_aging, steps_pretrain=cfg.steps_pretrain,
            steps_lfw=cfg.steps_lfw, n_images=n_images, speed=speed, scratch=scratch, tuned=tuned,
            seconds=round(time.perf_counter() - start, 1))

    def _aging_run(self, out: Path) -> AgingRun:
        """The existing aging run, or a new one trained from scratch into ``out/aging``."""
        cfg = self.config
        if cfg.aging_run:
            return AgingRun.existing(cfg.aging_run)
        config = IPCGANConfig.from_dict({**IPCGANConfig().to_dict(), **cfg.model})
        settings = {"seed": cfg.seed, "val_fraction": 0.1, "max_images": cfg.max_images,
                    "batch_size": cfg.batch_size, "validate_every": cfg.validate_every}
        aging = AgingRun(out / "aging", config, settings, None)
        self._train_aging(aging.folder, aging, cfg.steps_aging)
        aging.classifier_dir = aging.folder / "age_classifier" if config.uses_age_classifier else None
        return aging

    def _train_aging(self, out: Path, aging: AgingRun, steps: int, init: dict | None = None) -> nn.Module:
        """An IPCGAN run like ``python -m decoders.aging.train ipcgan``, optionally starting from ``init``."""
        config, settings, progress = aging.config, aging.settings, self.config.progress
        train, val = aging.faces(self.config.data_root, progress)
        seed_everything(settings["seed"])
        identity = IdentityFeatures(config.identity_backbone) if config.uses_identity else None
        classifier = None
        if config.uses_age_classifier:
            if aging.classifier_dir is not None:
                classifier = load_age_classifier(aging.classifier_dir)
            else:
                classifier, _ = train_age_classifier(train, out / "age_classifier", val, steps=config.classifier_steps,
                                                     width=config.classifier_width, seed=settings["seed"],
                                                     progress=progress)
        seed_everything(settings["seed"])
        info = {"cli": settings, "init": "pretrain/ generator" if init is not None else "random"}
        task = ipcgan.build_task(config, train=train, val=val, identity=identity, age_classifier=classifier, info=info)
        if init is not None:
            for name in ("generator", "g_ema"):
                task.models[name].load_state_dict(init)
        data = ArrayData(images=train.images, group=train.group, index=torch.arange(len(train)))
        schedule = self.config.trainer_settings(steps, settings["seed"], settings.get("batch_size"),
                                                settings.get("validate_every"))
        Trainer(task, data, out, schedule, resume=True).fit()
        return task.models["g_ema"].eval()

    def _compare(self, out: Path, aging: AgingRun) -> tuple[dict, int]:
        """({(a, b): FilterResult}, number of held-out faces) for :data:`COMPARED_PAIRS`."""
        cfg, config, seed = self.config, aging.config, int(aging.settings["seed"])
        seed_everything(seed)  # the aging run's initial weights (build_task draws them first, under this seed)
        states = {"aging": generator_state(aging.folder, "g_ema"),
                  "finetuned": generator_state(out / "finetuned", "g_ema"),
                  "pretrain": generator_state(out / "pretrain"), "lfw": generator_state(out / "lfw"),
                  "aging_init": build_generator(config).state_dict()}
        nets = {name: fixed_group_generator(config, state, cfg.compare_group) for name, state in states.items()}
        held_out = aging.faces(cfg.data_root, progress=False)[1]
        pick = np.random.default_rng(seed).permutation(len(held_out))[:cfg.n_images]
        faces = held_out.images[np.sort(pick)]
        comparison = FilterComparison(threshold=cfg.threshold, n_baseline=cfg.n_baseline, random_state=cfg.seed,
                                      progress=cfg.progress)
        results = {(a, b): comparison.compare(Network(nets[a], a), Network(nets[b], b), images=faces)
                   for a, b in COMPARED_PAIRS}
        return results, len(pick)
