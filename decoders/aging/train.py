"""Train an aging GAN: ``python -m decoders.aging.train ipcgan|agecgan --out RUN [options]``.

Faces come from UTKFace (``--data-root`` or ``$FACEPROBE_DATA``) at the GAN's
size (:func:`decoders.aging.data.load_aging_faces`), split by image into
train / validation (``--val-fraction``). When the GAN has an age loss, an
:class:`~decoders.aging.nets.AgeGroupClassifier` is first trained on the
training faces into ``RUN/age_classifier/`` (or taken from
``--age-classifier CKPT``); its weights also go into every GAN checkpoint.
Then the GAN trains with the shared :class:`~probes.training.Trainer`.

RUN receives ``config.json``, ``log.csv``, ``val.csv``, ``samples/*.png``
(rows: a held-out face, then that face at every target group),
``checkpoints/latest.pt`` (+ ``step_XXXXXXX.pt``), ``age_classifier/`` and
``summary.json``. Load the result with
:func:`decoders.aging.models.load_aging_model`.

Model settings beyond the common flags: ``--set KEY=VALUE`` for any field of
the GAN's config dataclass (e.g. ``--set identity=10 --set g_blocks=4``).
An existing RUN is refused unless ``--resume`` (settings that define the run
must not change) or ``--overwrite``. Which GANs exist: ``decoders.aging.models.MODELS``.

    python -m decoders.aging.train ipcgan --out runs/ipcgan --steps 3000 --time-limit-min 25
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from probes.errors import FaceprobeError, TrainingError
from probes.outputs import write_json
from probes.training.checkpoints import CheckpointError, load_checkpoint, seed_everything
from probes.training.data import ArrayData
from probes.training.distributed import DistributedContext, init_distributed, shutdown_distributed
from probes.training.runs import RunFolder
from probes.training.trainer import Trainer, TrainerSettings

from .models import MODELS, gan_module

RESULT_FILES = ("config.json", "log.csv", "val.csv", "summary.json")
RESULT_DIRS = ("checkpoints", "samples", "age_classifier")
DEFAULTS = {
    "steps": 3000, "batch_size": 8, "max_images": None, "val_fraction": 0.1, "seed": 0,
    "identity_weights": None, "random_identity": False, "age_classifier": None,
    "save_every": 100, "keep_every": 1000, "log_every": 10, "sample_every": 200, "validate_every": 500,
    "time_limit_min": None,
}
# Settings that may change on --resume (everything else defines the run).
FREE_ON_RESUME = ("steps", "save_every", "keep_every", "log_every", "sample_every", "validate_every",
                  "time_limit_min")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m decoders.aging.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=sorted(MODELS), help="which aging GAN")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--data-root", help="folder holding utkface/ (default $FACEPROBE_DATA)")
    p.add_argument("--steps", type=int, help=f"optimisation steps (default {DEFAULTS['steps']})")
    p.add_argument("--time-limit-min", type=float, help="stop (and save) after this many minutes of training")
    p.add_argument("--batch-size", type=int, help=f"default {DEFAULTS['batch_size']}")
    p.add_argument("--image-size", type=int, choices=(64, 128), help="face side in pixels (default 64)")
    p.add_argument("--identity-backbone", help="face model of the identity loss (default dlib-resnet29)")
    p.add_argument("--identity-weights", help="weights file overriding the identity backbone's default")
    p.add_argument("--random-identity", action="store_true", default=None,
                   help="random-init identity backbone (tests only)")
    p.add_argument("--age-classifier", help="checkpoint of a trained age-group classifier (default: train one)")
    p.add_argument("--max-images", type=int, help="seeded subsample of the faces in the GAN's age groups")
    p.add_argument("--val-fraction", type=float, help="held-out faces for samples and validation (default 0.1)")
    p.add_argument("--seed", type=int, help="split, weights init and data order (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="a field of the GAN's config (repeatable)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--cache-dir", help="resized-faces cache (default $FACEPROBE_HOME/cache/aging-faces)")
    for name in ("save_every", "keep_every", "log_every", "sample_every", "validate_every"):
        p.add_argument("--" + name.replace("_", "-"), type=int, help=f"default {DEFAULTS[name]}")
    p.add_argument("--no-progress", action="store_true")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out")
    mode.add_argument("--overwrite", action="store_true", help="replace the results in --out")
    return p


def _parse_overrides(items: list[str], config_cls) -> dict:
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


def _resolve(args, module, saved: dict | None) -> tuple[dict, object]:
    """(run settings, model config): defaults < saved run (on --resume) < command line."""
    explicit = {k: v for k, v in vars(args).items() if k in DEFAULTS and v is not None}
    model_explicit = _parse_overrides(args.overrides, module.Config)
    if args.image_size is not None:
        model_explicit["image_size"] = args.image_size
    if args.identity_backbone is not None:
        model_explicit["identity_backbone"] = args.identity_backbone
    cfg, model = dict(DEFAULTS), module.Config().to_dict()
    if saved is not None:
        cfg.update({k: v for k, v in saved["cli"].items() if k in DEFAULTS})
        model.update(saved["model"])
        clash = [f"--{k.replace('_', '-')} {v!r} (run: {saved['cli'].get(k)!r})" for k, v in explicit.items()
                 if k not in FREE_ON_RESUME and k in saved["cli"] and saved["cli"][k] != v]
        clash += [f"{k}={v!r} (run: {saved['model'].get(k)!r})" for k, v in model_explicit.items()
                  if saved["model"].get(k) != v]
        if clash:
            raise TrainingError("--resume cannot change settings that define the run: " + "; ".join(clash))
    cfg.update(explicit)
    model.update(model_explicit)
    for key in ("steps", "batch_size"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise TrainingError(f"--{key.replace('_', '-')} must be a positive integer, got {cfg[key]!r}")
    if cfg["max_images"] is not None and cfg["max_images"] < 1:
        raise TrainingError(f"--max-images must be positive, got {cfg['max_images']}")
    if not 0 <= cfg["val_fraction"] < 1:
        raise TrainingError(f"--val-fraction must lie in [0, 1), got {cfg['val_fraction']}")
    if cfg["time_limit_min"] is not None and cfg["time_limit_min"] <= 0:
        raise TrainingError(f"--time-limit-min must be positive, got {cfg['time_limit_min']}")
    try:
        config = module.Config.from_dict(model)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"bad {args.model} settings: {exc}") from exc
    return cfg, config


def run(argv: Sequence[str] | None = None) -> dict:
    """The CLI as a function: trains and returns the summary dict."""
    args = build_parser().parse_args(argv)
    module = gan_module(args.model)
    out = Path(args.out).expanduser()
    RunFolder(out, RESULT_FILES, RESULT_DIRS).check(args.resume, args.overwrite)
    saved = None
    latest = out / "checkpoints" / "latest.pt"
    if args.resume and latest.is_file():
        ckpt = load_checkpoint(latest)
        if ckpt.get("kind") != module.KIND:
            raise CheckpointError(f"{latest} is a {ckpt.get('kind')!r} checkpoint, not a {module.KIND!r} run")
        saved = {"cli": ckpt["config"]["cli"], "model": ckpt["config"]["model"]}
        del ckpt
    elif args.resume and (out / "config.json").is_file():
        record = json.loads((out / "config.json").read_text())
        saved = {"cli": record["cli"], "model": record["model"]}
    cfg, config = _resolve(args, module, saved)
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = init_distributed(args.device)  # one process, or one of torchrun's
    try:
        return _train(args, module, cfg, config, out, ctx)
    finally:
        shutdown_distributed(ctx)


def _train(args, module, cfg: dict, config, out: Path, ctx: DistributedContext) -> dict:
    from .data import load_aging_faces
    from .nets import (
        IdentityFeatures,
        age_classifier_scores,
        load_age_classifier,
        train_age_classifier,
    )

    progress = not args.no_progress and ctx.is_main
    device = ctx.device
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda requested but CUDA is not available")
    faces = None
    for turn in ((0,) if not ctx.enabled else (0, 1)):  # rank 0 fills the faces cache, the others read it
        if (turn == 0) == ctx.is_main:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="UTKFace: skipped")
                faces = load_aging_faces(module.GROUPS, config.image_size, args.data_root, cfg["max_images"],
                                         seed=cfg["seed"], cache_dir=args.cache_dir, progress=progress)
        ctx.barrier()
    if cfg["val_fraction"] > 0:
        train, val = faces.split((1 - cfg["val_fraction"], cfg["val_fraction"]), seed=cfg["seed"])
    else:
        train, val = faces, None
    if len(train) < cfg["batch_size"] * ctx.world_size:
        raise TrainingError(f"{len(train)} training faces, fewer than one batch of {cfg['batch_size']} x "
                            f"{ctx.world_size} process(es); use more images or a smaller --batch-size")
    seed_everything(cfg["seed"])  # a random-init identity backbone (tests) is drawn here
    identity = None
    if config.uses_identity:
        identity = IdentityFeatures(config.identity_backbone, pretrained=not cfg["random_identity"],
                                    weights=cfg["identity_weights"], device=device)
    if args.overwrite and ctx.is_main:
        RunFolder(out, RESULT_FILES, RESULT_DIRS).clear()
    ctx.barrier()
    out.mkdir(parents=True, exist_ok=True)
    data_info = {"data_root": str(args.data_root or os.environ.get("FACEPROBE_DATA", "")),
                 "n_train": len(train), "n_val": len(val) if val is not None else 0,
                 "train_counts": train.counts(), "image_size": config.image_size,
                 "resize": "UTKFace 200x200 crops box-averaged to image_size (decoders.aging.data)"}
    record = {"model": config.to_dict(), "cli": cfg, "data": data_info,
              "command": [sys.executable, "-m", "decoders.aging.train"] + list(sys.argv[1:])}
    if ctx.is_main:
        write_json(out / "config.json", record)

    classifier, classifier_info = None, None
    if config.uses_age_classifier:
        if cfg["age_classifier"]:
            classifier = load_age_classifier(cfg["age_classifier"], device)
            if classifier.groups != module.GROUPS:
                raise CheckpointError(f"{cfg['age_classifier']} classifies {classifier.groups.name!r} groups, "
                                      f"{args.model} needs {module.GROUPS.name!r}")
            classifier_info = {"checkpoint": str(Path(cfg["age_classifier"]).absolute())}
            if val is not None:
                classifier_info.update(age_classifier_scores(classifier, val))
        else:
            # Rank 0 trains the classifier (one process); the others load what it saved.
            if ctx.is_main:
                classifier, classifier_info = train_age_classifier(
                    train, out / "age_classifier", val, steps=config.classifier_steps,
                    width=config.classifier_width, seed=cfg["seed"], device=device, progress=progress)
            ctx.barrier()
            if not ctx.is_main:
                classifier = load_age_classifier(out / "age_classifier", device)
                classifier_info = {"checkpoint": str((out / "age_classifier").absolute())}
        classifier_info["config"] = classifier.config.to_dict()

    seed_everything(cfg["seed"])  # the GAN's initial weights do not depend on what ran before
    info = {"cli": cfg, "data": data_info, "age_classifier": classifier_info}
    task = module.build_task(config, train=train, val=val, identity=identity, age_classifier=classifier,
                             device=device, info=info)
    settings = TrainerSettings(steps=cfg["steps"], batch_size=cfg["batch_size"], seed=cfg["seed"],
                               save_every=cfg["save_every"], keep_every=cfg["keep_every"],
                               log_every=cfg["log_every"], sample_every=cfg["sample_every"],
                               validate_every=cfg["validate_every"],
                               time_limit_s=cfg["time_limit_min"] * 60 if cfg["time_limit_min"] else None,
                               progress=progress)
    data = ArrayData(images=train.images, group=train.group, index=torch.arange(len(train)))
    trainer = Trainer(task, data, out, settings, ctx, resume=args.resume)
    start = time.perf_counter()
    result = trainer.fit()
    summary = {"model": args.model, "step": result.step, "epoch": result.epoch,
               "train_time_s": round(result.elapsed_s, 1),
               "wall_time_this_call_s": round(time.perf_counter() - start, 1),
               "stopped_early": result.stopped_early, "last_losses": result.last_losses,
               "resumed_from": trainer.resumed_from, "checkpoint": str(result.checkpoint),
               "n_train": len(train), "identity_backbone": config.identity_backbone,
               "age_classifier": {k: v for k, v in (classifier_info or {}).items() if k != "config"}}
    val_csv = out / "val.csv"
    if val_csv.is_file():
        import pandas as pd

        table = pd.read_csv(val_csv)
        if len(table):
            summary["last_validation"] = {k: float(v) for k, v in table.iloc[-1].to_dict().items()}
    samples = sorted((out / "samples").glob("*.png"))
    summary["last_sample_grid"] = str(samples[-1]) if samples else None
    summary["world_size"] = ctx.world_size
    if ctx.is_main:
        write_json(out / "summary.json", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    try:
        summary = run(argv)
    except FaceprobeError as exc:
        print(f"decoders.aging.train: error: {exc}", file=sys.stderr)
        return 2
    losses = ", ".join(f"{k} {v:.4g}" for k, v in summary["last_losses"].items())
    print(f"trained {summary['model']} {summary['step']} steps in {summary['train_time_s']} s "
          f"({summary['n_train']} training faces); last: {losses}")
    if "last_validation" in summary:
        print("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in summary["last_validation"].items()))
    print(f"checkpoint: {summary['checkpoint']}\nsamples: {summary['last_sample_grid']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
