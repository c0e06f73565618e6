"""Train a Deep Face Decoder: ``python -m decoders.train --backbone B --dataset D --out RUN``.

The decoder learns template -> target chip (see :mod:`decoders.dfd.losses`) on
identity-disjoint LFW splits (``--dataset lfw``), UTKFace (``utkface``: an
image split, UTKFace has no identities) or both (``both``: all UTKFace images
join LFW's training part; validation and test stay LFW identities).

RUN receives ``config.json`` (the resolved configuration and the command),
``split.json`` (train/val/test identities and the test images, for
evaluation on held-out people), ``log.csv``, ``val.csv``, ``samples/*.png``,
``checkpoints/latest.pt`` (+ ``step_XXXXXXX.pt``) and ``summary.json``.

An existing RUN with results is refused unless ``--resume`` (continue from
its latest checkpoint; settings that define the model must not change) or
``--overwrite`` (its earlier results are removed, but only once every input
has been checked). Multi-process: ``torchrun --nproc_per_node N -m
decoders.train ...`` (gloo on CPU, nccl with ``--device cuda``).

    python -m decoders.train --backbone dlib-resnet29 --dataset lfw --out runs/dfd --steps 400
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from probes.cli import DefaultsHelpFormatter
from probes.errors import FaceprobeError, TrainingError
from probes.outputs import write_json
from probes.training.checkpoints import CheckpointError, load_checkpoint, seed_everything
from probes.training.data import ArrayData
from probes.training.distributed import DistributedContext, init_distributed, shutdown_distributed
from probes.training.runs import RunFolder
from probes.training.trainer import Trainer, TrainerSettings, TrainTask, warmup_cosine

from .dfd.checkpoint import DECODER_KIND
from .dfd.losses import LossConfig, ReconstructionLoss
from .dfd.model import DecoderConfig, FaceDecoder, TemplateError
from .dfd.templates import Targets, cache_dir_option, compute_targets, weights_key

DATASET_CHOICES = ("lfw", "utkface", "both")
RESULT_FILES = ("config.json", "split.json", "log.csv", "val.csv", "summary.json")
RESULT_DIRS = ("checkpoints", "samples")
# Settings that define the model and its data: they must not change on --resume.
FIXED_ON_RESUME = ("backbone", "weights", "random_backbone", "dataset", "image_size", "width", "norm", "standardise",
                   "batch_size",
                   "seed", "split_seed", "fractions", "max_images", "min_images_per_person", "lr",
                   "pixel", "gradient", "perceptual", "identity", "local_pixel", "local_gradient",
                   "local_perceptual", "local_identity", "pixel_kind", "lpips_net")
DEFAULTS = {
    "backbone": "dlib-resnet29", "weights": None, "random_backbone": False, "dataset": "lfw",
    "image_size": 112, "width": 1.0, "norm": "batch", "standardise": False, "batch_size": 32,
    "seed": 0, "split_seed": 0,
    "fractions": [0.8, 0.1, 0.1], "max_images": None, "min_images_per_person": 1, "lr": 1e-3,
    "warmup_steps": 100, "min_lr_ratio": 0.05,
    **{k: v for k, v in LossConfig().to_dict().items() if k != "local_region"},
    "steps": 400, "save_every": 100, "keep_every": 1000, "log_every": 10, "sample_every": 200,
    "validate_every": 100, "val_images": 128, "time_limit_min": None,
}


class DecoderTask(TrainTask):
    """Template -> chip regression with the DFD losses; one Adam optimiser, warmup + cosine lr."""

    kind = DECODER_KIND

    def __init__(self, decoder: FaceDecoder, loss: ReconstructionLoss, config: dict, device: str,
                 total_steps: int, sample_targets: Targets | None = None, val_targets: Targets | None = None):
        super().__init__()
        self.device = torch.device(device)
        self.models["decoder"] = decoder.to(self.device)
        self.loss = loss.to(self.device)
        self._config = config
        optim = config["optim"]
        self.optimizers["decoder"] = torch.optim.Adam(decoder.parameters(), lr=optim["lr"], betas=(0.9, 0.99))
        self.total_steps = total_steps
        self.sample_targets, self.val_targets = sample_targets, val_targets

    def config(self) -> dict:
        return self._config

    def check_resume(self, checkpoint: dict) -> None:
        super().check_resume(checkpoint)
        mine, theirs = self._config["backbone"], checkpoint["config"].get("backbone", {})
        if (mine["name"], mine["weights_key"]) != (theirs.get("name"), theirs.get("weights_key")):
            raise CheckpointError(
                f"{checkpoint['path']} was trained against backbone {theirs.get('name')!r} "
                f"(weights {str(theirs.get('weights_key'))[:16]}...), not {mine['name']!r} "
                f"(weights {mine['weights_key'][:16]}...)")

    def lr_at(self, step: int) -> float:
        o = self._config["optim"]
        return o["lr"] * warmup_cosine(step, self.total_steps, o["warmup_steps"], o["min_lr_ratio"])

    def _targets(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)

    def step(self, batch, step: int) -> dict[str, float]:
        opt = self.optimizers["decoder"]
        lr = self.lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        templates = batch["templates"].to(self.device)
        target = self._targets(batch["images"])
        recon = self.net("decoder")(templates)
        total, terms = self.loss(recon, target, templates)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return {"loss": total.item(), **{k: v.item() for k, v in terms.items()}, "lr": lr}

    @torch.no_grad()
    def reconstruct(self, templates: np.ndarray, batch_size: int = 64) -> torch.Tensor:
        decoder = self.models["decoder"]
        was = decoder.training
        decoder.eval()
        try:
            out = [decoder(torch.as_tensor(np.asarray(templates[i:i + batch_size]), device=self.device))
                   for i in range(0, len(templates), batch_size)]
        finally:
            decoder.train(was)
        return torch.cat(out)

    def sample(self, step: int) -> torch.Tensor | None:
        """Rows: training targets, their reconstructions, validation targets, theirs."""
        rows = []
        for targets in (self.sample_targets, self.val_targets):
            if targets is None or len(targets) == 0:
                continue
            k = min(self.sample_columns, len(targets))
            rows += [self._targets(torch.from_numpy(np.asarray(targets.images[:k]))).cpu(),
                     self.reconstruct(targets.templates[:k]).cpu()]
        return torch.cat(rows) if rows else None

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float] | None:
        if self.val_targets is None or len(self.val_targets) == 0:
            return None
        from probes.verification import pair_scores

        t = self.val_targets
        recon = self.reconstruct(t.templates)
        target = self._targets(torch.from_numpy(np.asarray(t.images)))
        out = {"val_pixel_l1": float((recon - target.to(recon.device)).abs().mean())}
        backbone = self.loss.backbone
        if backbone is not None:
            emb = torch.cat([backbone(recon[i:i + 64], "chip") for i in range(0, len(recon), 64)]).cpu().numpy()
            cos = pair_scores(emb, t.templates, "cosine")
            out["val_identity_cos"] = float(cos.mean())
            if backbone.spec.verification_metric == "euclidean":
                out["val_l2"] = float(-pair_scores(emb, t.templates, "euclidean").mean())
        return out


# --------------------------------------------------------------------------- data


def _load_datasets(cfg: dict, data_root: str | None):
    from probes.datasets import identity_split, load_lfw_people, load_utkface

    parts = {}
    if cfg["dataset"] in ("lfw", "both"):
        lfw = load_lfw_people(data_root, min_images_per_person=cfg["min_images_per_person"],
                              max_images=cfg["max_images"], seed=cfg["split_seed"])
        parts["lfw"] = (lfw, identity_split(lfw, cfg["fractions"], seed=cfg["split_seed"], by="identity"))
    if cfg["dataset"] in ("utkface", "both"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="UTKFace: skipped")
            utk = load_utkface(data_root, max_images=cfg["max_images"], seed=cfg["split_seed"])
        if cfg["dataset"] == "both":
            parts["utkface"] = (utk, (np.arange(len(utk)), np.zeros(0, np.int64), np.zeros(0, np.int64)))
        else:
            parts["utkface"] = (utk, identity_split(utk, cfg["fractions"], seed=cfg["split_seed"], by="image"))
    return parts


def _split_record(parts: dict, cfg: dict) -> dict:
    record = {"fractions": cfg["fractions"], "seed": cfg["split_seed"], "dataset": cfg["dataset"], "parts": {}}
    for name, (ds, split) in parts.items():
        entry = {"layout": ds.layout, "split_by": "identity" if name == "lfw" else
                 ("none (all images train)" if cfg["dataset"] == "both" else "image")}
        ids = ds.labels("identity") if "identity" in ds.attributes else None
        for part, idx in zip(("train", "val", "test"), split):
            entry[part] = {"n_images": len(idx)}
            if ids is not None:
                entry[part]["identities"] = sorted({str(i) for i in ids[idx]})
            if part != "train":
                entry[part]["paths"] = [str(ds.paths[i]) for i in idx]
        record["parts"][name] = entry
    return record


def _concat(targets: list[Targets]) -> Targets:
    if len(targets) == 1:
        return targets[0]
    paths = [p for t in targets for p in t.paths]
    return Targets(np.concatenate([t.templates for t in targets]),
                   np.concatenate([np.asarray(t.images) for t in targets]), paths, "mixed", None,
                   tuple(all(t.cache_hits[i] for t in targets) for i in range(2)))


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m decoders.train", description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--backbone", help=f"target face network (default {DEFAULTS['backbone']})")
    p.add_argument("--weights", help="weights file overriding the backbone's default")
    p.add_argument("--random-backbone", action="store_true", default=None,
                   help="random-init backbone (tests and chance baselines only)")
    p.add_argument("--dataset", choices=DATASET_CHOICES, help="default lfw")
    p.add_argument("--data-root", help="folder holding lfw_home/ and utkface/ (default $FACEPROBE_DATA)")
    p.add_argument("--max-images", type=int, help="seeded subsample of each dataset")
    p.add_argument("--min-images-per-person", type=int)
    p.add_argument("--fractions", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"), help="default 0.8 0.1 0.1")
    p.add_argument("--split-seed", type=int)
    p.add_argument("--seed", type=int, help="weights init and data order (default 0)")
    p.add_argument("--image-size", type=int, help="decoder output side: 64, 112 (default), 128, 224 ...")
    p.add_argument("--width", type=float, help="decoder channel multiplier (default 1)")
    p.add_argument("--norm", choices=("batch", "group", "none"))
    p.add_argument("--standardise", action="store_true", default=None,
                   help="standardise templates with the training templates' per-dimension mean and std "
                        "(default: unit templates rescaled to norm sqrt(d))")
    p.add_argument("--batch-size", type=int, help="per process (default 32)")
    p.add_argument("--lr", type=float)
    p.add_argument("--steps", type=int,
                   help="total optimisation steps (default 400: about 35 minutes of training on 2 CPU cores)")
    p.add_argument("--time-limit-min", type=float, help="stop (and save) after this many minutes of training")
    g = p.add_argument_group("loss weights (0 disables a term)")
    for name in LossConfig.weight_names():
        g.add_argument("--" + name.replace("_", "-"), type=float, dest=name)
    g.add_argument("--pixel-kind", choices=("l1", "l2"))
    g.add_argument("--lpips-net", choices=("alex", "vgg"))
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--cache-dir", help="template cache folder ('none' disables; default $FACEPROBE_HOME/cache)")
    p.add_argument("--save-every", type=int)
    p.add_argument("--keep-every", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--sample-every", type=int)
    p.add_argument("--validate-every", type=int)
    p.add_argument("--val-images", type=int, help="validation images scored in val.csv (default 128)")
    p.add_argument("--no-progress", action="store_true")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out")
    mode.add_argument("--overwrite", action="store_true", help="replace the results in --out")
    return p


def _resolve(args: argparse.Namespace, saved: dict | None) -> dict:
    explicit = {k: v for k, v in vars(args).items() if k in DEFAULTS and v is not None}
    if "fractions" in explicit:
        explicit["fractions"] = list(explicit["fractions"])
    if "time_limit_min" in explicit and explicit["time_limit_min"] <= 0:
        raise TrainingError(f"--time-limit-min must be positive, got {explicit['time_limit_min']}")
    cfg = dict(DEFAULTS)
    if saved is not None:
        cfg.update({k: v for k, v in saved.items() if k in DEFAULTS})
        clash = {k: (saved[k], v) for k, v in explicit.items() if k in FIXED_ON_RESUME and k in saved
                 and saved[k] != v}
        if clash:
            detail = "; ".join(f"--{k.replace('_', '-')} {v!r} (run: {s!r})" for k, (s, v) in clash.items())
            raise TrainingError(f"--resume cannot change settings that define the run: {detail}")
    cfg.update(explicit)
    for key in ("steps", "batch_size", "val_images"):
        if not isinstance(cfg[key], int) or cfg[key] < (0 if key == "val_images" else 1):
            raise TrainingError(f"--{key.replace('_', '-')} must be a positive integer, got {cfg[key]!r}")
    if cfg["max_images"] is not None and cfg["max_images"] <= 0:
        raise TrainingError(f"--max-images must be positive, got {cfg['max_images']}")
    return cfg


def run(argv: Sequence[str] | None = None) -> dict:
    """The CLI as a function: trains and returns the summary dict."""
    args = build_parser().parse_args(argv)
    out = Path(args.out).expanduser()
    RunFolder(out, RESULT_FILES, RESULT_DIRS).check(args.resume, args.overwrite)
    saved = None
    latest = out / "checkpoints" / "latest.pt"
    if args.resume:
        if latest.is_file():
            ckpt = load_checkpoint(latest)
            if ckpt.get("kind") != DECODER_KIND:
                raise CheckpointError(f"{latest} is a {ckpt.get('kind')!r} checkpoint, not a decoder run")
            saved = ckpt["config"]["cli"]
            del ckpt
        elif (out / "config.json").is_file():
            saved = json.loads((out / "config.json").read_text())["cli"]
    cfg = _resolve(args, saved)
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = init_distributed(args.device)
    try:
        return _train(args, cfg, out, ctx)
    finally:
        shutdown_distributed(ctx)


def _train(args, cfg: dict, out: Path, ctx: DistributedContext) -> dict:
    from probes.backbones import create_backbone

    device = ctx.device
    seed_everything(cfg["seed"])  # the random-init backbone (tests) and the decoder's init
    backbone = create_backbone(cfg["backbone"], cfg["weights"], device=device, pretrained=not cfg["random_backbone"])
    loss_cfg = LossConfig.from_dict({k: cfg[k] for k in LossConfig.weight_names() + ("pixel_kind", "lpips_net")})
    dec_cfg = DecoderConfig(embedding_size=backbone.spec.embedding_size, image_size=cfg["image_size"],
                            width=cfg["width"], norm=cfg["norm"], standardise=cfg["standardise"])
    parts = _load_datasets(cfg, args.data_root)
    cache_dir = cache_dir_option(args.cache_dir)
    progress = not args.no_progress and ctx.is_main

    def targets_of(ds):
        return compute_targets(backbone, ds, dec_cfg.image_size, cache_dir=cache_dir, progress=progress)

    # Rank 0 fills the cache; the others then read it.
    all_targets = {}
    for turn in ((0,) if not ctx.enabled else (0, 1)):
        if (turn == 0) == ctx.is_main:
            all_targets = {name: targets_of(ds) for name, (ds, _) in parts.items()}
        ctx.barrier()
    train_parts, val_parts = [], []
    for name, (_ds, (tr, va, _te)) in parts.items():
        if len(tr):
            train_parts.append(all_targets[name].subset(tr))
        if len(va):
            val_parts.append(all_targets[name].subset(va))
    if not train_parts:
        raise TrainingError("the training split is empty; use more images or other --fractions")
    train = _concat(train_parts)
    if len(train) < cfg["batch_size"] * ctx.world_size:
        raise TrainingError(f"the training split has {len(train)} images, fewer than one batch "
                            f"({cfg['batch_size']} x {ctx.world_size} process(es)); use more images or a "
                            "smaller --batch-size")
    val = _concat(val_parts) if val_parts else None
    rng = np.random.default_rng(cfg["seed"])
    show = rng.choice(len(train), size=min(8, len(train)), replace=False)
    sample_targets = train.subset(np.sort(show))
    val_small = (val.subset(np.arange(min(cfg["val_images"], len(val))))
                 if val is not None and cfg["val_images"] else None)

    wkey = weights_key(backbone)
    config = {
        "decoder": dec_cfg.to_dict(), "loss": loss_cfg.to_dict(),
        "backbone": {"name": backbone.spec.name, "weights_id": backbone.weights_id, "weights_key": wkey,
                     "embedding_size": backbone.spec.embedding_size,
                     "verification_metric": backbone.spec.verification_metric, "weights_file": cfg["weights"]},
        "optim": {"lr": cfg["lr"], "warmup_steps": cfg["warmup_steps"], "min_lr_ratio": cfg["min_lr_ratio"],
                  "optimizer": "adam", "betas": [0.9, 0.99]},
        "data": {"dataset": cfg["dataset"], "data_root": str(args.data_root or os.environ.get("FACEPROBE_DATA", "")),
                 "n_train": len(train), "n_val": len(val) if val is not None else 0,
                 "layouts": {n: ds.layout for n, (ds, _) in parts.items()}, "split_file": "split.json"},
        "target_chip": "backbone crop of the dataset layout (+ square padding), resized to image_size; "
                       "fed back to the backbone with layout 'chip'",
        "cli": cfg,
    }
    if args.resume and (out / "checkpoints" / "latest.pt").is_file():
        # Compare the backbone before anything is written.
        ckpt = load_checkpoint(out / "checkpoints" / "latest.pt")
        theirs = ckpt["config"]["backbone"]
        if (theirs["name"], theirs["weights_key"]) != (backbone.spec.name, wkey):
            raise CheckpointError(f"{ckpt['path']} was trained against backbone {theirs['name']!r} "
                                  f"(weights {theirs['weights_key'][:16]}...), not {backbone.spec.name!r} "
                                  f"(weights {wkey[:16]}...)")
        del ckpt
    if ctx.is_main:
        if args.overwrite:
            RunFolder(out, RESULT_FILES, RESULT_DIRS).clear()
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "split.json", _split_record(parts, cfg))
        write_json(out / "config.json", dict(config, command=[sys.executable, "-m", "decoders.train"]
                                              + list(sys.argv[1:]), world_size=ctx.world_size))
    ctx.barrier()

    torch.manual_seed(cfg["seed"])
    decoder = FaceDecoder(dec_cfg).fit_normalisation(train.templates)
    loss = ReconstructionLoss(loss_cfg, backbone if loss_cfg.needs_backbone else None)
    if loss.backbone is None and backbone is not None:
        loss.backbone = backbone.requires_grad_(False).eval()  # for validation only
    task = DecoderTask(decoder, loss, config, device, cfg["steps"], sample_targets, val_small)
    settings = TrainerSettings(steps=cfg["steps"], batch_size=cfg["batch_size"], seed=cfg["seed"],
                               save_every=cfg["save_every"], keep_every=cfg["keep_every"],
                               log_every=cfg["log_every"], sample_every=cfg["sample_every"],
                               validate_every=cfg["validate_every"],
                               time_limit_s=cfg["time_limit_min"] * 60 if cfg["time_limit_min"] else None,
                               progress=progress)
    data = ArrayData(templates=train.templates, images=train.images)
    trainer = Trainer(task, data, out, settings, ctx, resume=args.resume)
    start = time.perf_counter()
    result = trainer.fit()
    summary = {"step": result.step, "epoch": result.epoch, "train_time_s": round(result.elapsed_s, 1),
               "wall_time_this_call_s": round(time.perf_counter() - start, 1), "stopped_early": result.stopped_early,
               "last_losses": result.last_losses, "resumed_from": trainer.resumed_from,
               "checkpoint": str(result.checkpoint), "n_train": len(train), "world_size": ctx.world_size,
               "template_cache_hits": {n: list(t.cache_hits) for n, t in all_targets.items()}}
    if ctx.is_main:
        val_csv = out / "val.csv"
        if val_csv.is_file():
            import pandas as pd

            last = pd.read_csv(val_csv).iloc[-1].to_dict()
            summary["last_validation"] = {k: float(v) for k, v in last.items()}
        write_json(out / "summary.json", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    try:
        summary = run(argv)
    except (FaceprobeError, TemplateError) as exc:
        print(f"decoders.train: error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        losses = ", ".join(f"{k} {v:.4g}" for k, v in summary["last_losses"].items())
        print(f"trained {summary['step']} steps in {summary['train_time_s']} s "
              f"({summary['n_train']} training images); last: {losses}")
        if "last_validation" in summary:
            print("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in summary["last_validation"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
