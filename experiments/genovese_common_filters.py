"""Genovese et al. (ICIP 2019) on our IPCGAN: does an aging generator share filters with other generators?

    python experiments/genovese_common_filters.py --out runs/genovese [--steps-aging 3000] [--aging-run RUN]

Four generators of one architecture (:class:`decoders.aging.ipcgan.IPCGANGenerator`,
the config of the aging run), each in a folder under ``--out``:

``pretrain/``  denoises random crops of scikit-image's sample images (no faces: the astronaut, camera
               man and ``lfw_subset`` are left out) -- general-purpose pretraining;
``lfw/``       denoises LFW faces: the same architecture trained for another task on other images (a);
``aging/``     IPCGAN aging on UTKFace from scratch (or ``--aging-run RUN``, an existing run of
               ``python -m decoders.aging.train ipcgan``, whose config, seed and age classifier are reused);
``finetuned/`` IPCGAN aging started from ``pretrain/``'s generator, with the aging run's config, data,
               age classifier, seed and validation schedule (b).

Each is trained with the shared :class:`probes.training.Trainer` (resumable: run the command again to
continue). Then :class:`probes.filters.FilterComparison` compares aging vs lfw, aging vs pretrain,
aging vs finetuned, finetuned vs pretrain, and aging vs its own initial weights (how far training
moved the filters), on ``--n-images`` held-out UTKFace faces; every number sits beside the chance
interval of independently initialised generators. ``compare/<pair>/`` gets the usual filters.csv,
cka.csv and heatmaps; ``summary.json`` and ``summary.md`` answer the two questions:

1. does the aging generator share more filters than chance with (a) and with the pretrained one?
2. does fine-tuning reach the from-scratch generator's aging quality (validation age-classifier
   accuracy on the target group, identity cosine to the input) in fewer steps?

The generators are conditional (face + target group); for the comparison they are fed UTKFace faces
with one fixed target group (``--compare-group``). The seeds differ per generator (aging: the run's
seed, lfw: +1, pretrain: +2) so no two start from the same weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from decoders.aging import ipcgan
from decoders.aging.blocks import images_to_unit
from decoders.aging.classifier import load_age_classifier, train_age_classifier
from decoders.aging.data import load_aging_faces, resize_faces
from decoders.aging.identity import IdentityFeatures
from decoders.aging.ipcgan import ConditionalInstanceNorm, IPCGANConfig, build_generator
from probes.datasets import load_lfw_people
from probes.filters import FilterComparison, Network
from probes.training.checkpoints import load_checkpoint, seed_everything
from probes.training.data import ArrayData
from probes.training.runs import read_log
from probes.training.trainer import Trainer, TrainerSettings, TrainTask

# scikit-image sample images without people (astronaut, camera and lfw_subset show faces)
SKIMAGE_IMAGES = ("coffee", "chelsea", "coins", "hubble_deep_field", "immunohistochemistry", "moon", "page",
                  "rocket", "text", "retina", "grass", "gravel", "brick", "clock", "colorwheel")


# --------------------------------------------------------------------------- data


def skimage_crops(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` random square crops (side 1/8 to 1/2 of the shorter image side) resized to ``size``."""
    import skimage.data
    from skimage.color import gray2rgb

    images = []
    for name in SKIMAGE_IMAGES:
        image = getattr(skimage.data, name)()
        image = gray2rgb(image) if image.ndim == 2 else image[..., :3]
        images.append(np.ascontiguousarray(image.astype(np.uint8)))
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        image = images[rng.integers(len(images))]
        short = min(image.shape[:2])
        side = int(rng.integers(max(size, short // 8), max(size, short // 2) + 1))
        y, x = rng.integers(0, image.shape[0] - side + 1), rng.integers(0, image.shape[1] - side + 1)
        crop = image[y:y + side, x:x + side]
        crops.append(resize_faces(crop[None], size)[0] if side != size else crop)
    out = np.stack(crops)
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    return out


def lfw_faces(n: int, size: int, seed: int, root) -> np.ndarray:
    """``n`` LFW images, the central 150 x 150 of each 250 x 250 frame (the face), resized to ``size``."""
    people = load_lfw_people(root, max_images=n, seed=seed, min_images_per_person=1)
    images = people.load_images()
    return resize_faces(np.ascontiguousarray(images[:, 50:200, 50:200]), size)


# --------------------------------------------------------------------------- training


class DenoiseTask(TrainTask):
    """The aging generator's architecture trained to remove Gaussian noise (L1), with random target groups."""

    kind = "ipcgan-denoise"

    def __init__(self, config: IPCGANConfig, noise: float = 0.1, sample_images: np.ndarray | None = None):
        super().__init__()
        self.cfg, self.noise, self.n_groups = config, noise, len(ipcgan.GROUPS)
        self.models["generator"] = build_generator(config)
        self.optimizers["generator"] = torch.optim.Adam(self.models["generator"].parameters(), lr=config.lr_g,
                                                        betas=(config.beta1, config.beta2))
        self.sample_images = sample_images
        self.sample_columns = 3

    def config(self) -> dict:
        return {"model": self.cfg.to_dict(), "noise": self.noise, "task": "denoise"}

    def step(self, batch, step: int) -> dict[str, float]:
        x = images_to_unit(batch["images"])
        noisy = (x + self.noise * torch.randn_like(x)).clamp(0, 1)
        target = torch.randint(0, self.n_groups, (len(x),))
        loss = F.l1_loss(self.net("generator")(noisy, target), x)
        opt = self.optimizers["generator"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"l1": loss.item(), "noisy_l1": F.l1_loss(noisy, x).item()}

    @torch.no_grad()
    def sample(self, step: int) -> torch.Tensor | None:
        if self.sample_images is None:
            return None
        x = images_to_unit(torch.from_numpy(self.sample_images))
        noisy = (x + self.noise * torch.randn_like(x)).clamp(0, 1)
        out = self.models["generator"].eval()(noisy, torch.zeros(len(x), dtype=torch.long))
        self.models["generator"].train()
        return torch.stack([x, noisy, out], 1).flatten(0, 1)


def settings(args, steps: int, seed: int, batch_size: int | None = None,
             validate_every: int | None = None) -> TrainerSettings:
    limit = args.time_limit_min * 60 if args.time_limit_min else None
    return TrainerSettings(steps=steps, batch_size=batch_size or args.batch_size, seed=seed,
                           save_every=max(10, min(100, steps // 20)), keep_every=0, log_every=10,
                           sample_every=max(10, steps // 5),
                           validate_every=args.validate_every if validate_every is None else validate_every,
                           time_limit_s=limit, progress=not args.no_progress)


def train_denoiser(out: Path, images: np.ndarray, config: IPCGANConfig, steps: int, seed: int, args) -> nn.Module:
    seed_everything(seed)
    task = DenoiseTask(config, sample_images=images[:6])
    Trainer(task, ArrayData(images=images), out, settings(args, steps, seed), resume=True).fit()
    return task.models["generator"].eval()


def train_aging(out: Path, config: IPCGANConfig, cli: dict, classifier_dir: Path | None, steps: int, args,
                init: dict | None = None) -> nn.Module:
    """An IPCGAN run like ``python -m decoders.aging.train ipcgan``, optionally starting from ``init`` weights."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="UTKFace: skipped")
        faces = load_aging_faces(ipcgan.GROUPS, config.image_size, args.data_root, cli.get("max_images"),
                                 seed=cli["seed"], progress=not args.no_progress)
    train, val = faces.split((1 - cli["val_fraction"], cli["val_fraction"]), seed=cli["seed"])
    seed_everything(cli["seed"])
    identity = IdentityFeatures(config.identity_backbone) if config.uses_identity else None
    classifier = None
    if config.uses_age_classifier:
        if classifier_dir is not None:
            classifier = load_age_classifier(classifier_dir)
        else:
            classifier, _ = train_age_classifier(train, out / "age_classifier", val, steps=config.classifier_steps,
                                                 width=config.classifier_width, seed=cli["seed"],
                                                 progress=not args.no_progress)
    seed_everything(cli["seed"])
    task = ipcgan.build_task(config, train=train, val=val, identity=identity, age_classifier=classifier,
                             info={"cli": cli, "init": "pretrain/ generator" if init is not None else "random"})
    if init is not None:
        for name in ("generator", "g_ema"):
            task.models[name].load_state_dict(init)
    data = ArrayData(images=train.images, group=train.group, index=torch.arange(len(train)))
    run = settings(args, steps, cli["seed"], cli.get("batch_size"), cli.get("validate_every"))
    Trainer(task, data, out, run, resume=True).fit()
    return task.models["g_ema"].eval()


def generator_of(run: Path, name: str = "generator") -> dict:
    return load_checkpoint(run / "checkpoints" / "latest.pt")["models"][name]


# --------------------------------------------------------------------------- comparison


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


def load_generator(run: str, group: int = 2) -> FixedGroup:
    """The generator of an IPCGAN run (its EMA copy) or of a denoising run here, fed one target group.

    For the command line: ``python -m probes.filters
    experiments.genovese_common_filters:load_generator=RUN_A experiments.genovese_common_filters:load_generator=RUN_B``
    """
    state = load_checkpoint(Path(run) / "checkpoints" / "latest.pt" if Path(run).is_dir() else run)
    config = IPCGANConfig.from_dict(state["config"]["model"])
    generator = build_generator(config)
    generator.load_state_dict(state["models"]["g_ema" if "g_ema" in state["models"] else "generator"])
    return FixedGroup(generator.eval(), config.image_size, group)


def compare_all(nets: dict[str, nn.Module], faces: np.ndarray, out: Path, args) -> pd.DataFrame:
    comparison = FilterComparison(threshold=args.threshold, n_baseline=args.n_baseline, random_state=args.seed,
                                  progress=not args.no_progress)
    rows = []
    for a, b in (("aging", "lfw"), ("aging", "pretrain"), ("aging", "finetuned"), ("finetuned", "pretrain"),
                 ("aging", "aging_init")):
        result = comparison.compare(Network(nets[a], a), Network(nets[b], b), images=faces)
        result.save(out / "compare" / f"{a}-vs-{b}", overwrite=True)
        table = result.table
        rows.append({"a": a, "b": b, "layers": len(table),
                     "layers_more_than_chance": int((table.verdict == "more than chance").sum()),
                     "expected_by_chance_alone": round(len(table) * (1 - comparison.level) / 2, 2),
                     "layers_below_chance": int((table.verdict == "below chance").sum()),
                     "matched_mean": float(table.matched_mean.mean()), "chance_mean": float(table.chance_mean.mean()),
                     "frac_above": float(table.frac_above.mean()), "chance_frac": float(table.chance_frac.mean()),
                     "cka_mean": float(table.cka.mean()), "cka_chance_mean": float(table.cka_chance.mean()),
                     "cka_more_than_chance": int((table.cka_verdict == "more than chance").sum())})
        print(f"{a} vs {b}: {rows[-1]['layers_more_than_chance']}/{len(table)} layers share more filters than "
              f"chance; matched |cos| {rows[-1]['matched_mean']:.3f} vs chance {rows[-1]['chance_mean']:.3f}; "
              f"CKA {rows[-1]['cka_mean']:.3f} vs chance {rows[-1]['cka_chance_mean']:.3f}")
    return pd.DataFrame(rows)


def steps_to_match(scratch: pd.DataFrame, tuned: pd.DataFrame, tolerance: float) -> dict:
    """First validation step at which fine-tuning reaches from-scratch's final age accuracy and identity."""
    final = scratch.iloc[-1]
    out = {"scratch_final_step": int(final.step), "scratch_final_age_acc": float(final.val_age_acc),
           "scratch_final_identity_cos": float(final.val_identity_cos), "tolerance": tolerance}
    for name, table in (("scratch", scratch), ("finetuned", tuned)):
        ok = table[(table.val_age_acc >= final.val_age_acc - tolerance)
                   & (table.val_identity_cos >= final.val_identity_cos - tolerance)]
        out[f"{name}_first_step_reaching_it"] = int(ok.step.iloc[0]) if len(ok) else None
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/genovese")
    p.add_argument("--data-root", default=None, help="folder holding utkface/ and lfw_home/ (default $FACEPROBE_DATA)")
    p.add_argument("--aging-run", default=None,
                   help="an existing IPCGAN run to use as the from-scratch aging generator")
    p.add_argument("--steps-aging", type=int, default=3000,
                   help="from-scratch and fine-tuned aging steps (with --aging-run: that run's own step count)")
    p.add_argument("--steps-pretrain", type=int, default=2000)
    p.add_argument("--steps-lfw", type=int, default=2000)
    p.add_argument("--n-pretrain", type=int, default=4000, help="scikit-image crops")
    p.add_argument("--n-lfw", type=int, default=4000, help="LFW images")
    p.add_argument("--max-images", type=int, default=None, help="UTKFace faces for aging (default all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--validate-every", type=int, default=250)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="IPCGAN config field for a new aging run (ignored with --aging-run)")
    p.add_argument("--n-images", type=int, default=300, help="held-out UTKFace faces for CKA")
    p.add_argument("--n-baseline", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--compare-group", type=int, default=2, help="target group fed to the generators for CKA")
    p.add_argument("--tolerance", type=float, default=0.02, help="'comparable quality' margin on the val metrics")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit-min", type=float, default=None,
                   help="stop each training stage after this many minutes (run again to continue)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    # the aging run defines the architecture, data and schedule everyone shares
    if args.aging_run:
        aging_dir = Path(args.aging_run)
        record = json.loads((aging_dir / "config.json").read_text())
        config, cli = IPCGANConfig.from_dict(record["model"]), dict(record["cli"])
        classifier_dir = aging_dir / "age_classifier"
        steps_aging = int(load_checkpoint(aging_dir / "checkpoints" / "latest.pt")["step"])
    else:
        from decoders.aging.training import parse_overrides as _parse_overrides

        aging_dir = out / "aging"
        config = IPCGANConfig.from_dict({**IPCGANConfig().to_dict(), **_parse_overrides(args.set, IPCGANConfig)})
        cli = {"seed": args.seed, "val_fraction": 0.1, "max_images": args.max_images,
               "batch_size": args.batch_size, "validate_every": args.validate_every}
        train_aging(aging_dir, config, cli, None, args.steps_aging, args)
        classifier_dir = aging_dir / "age_classifier" if config.uses_age_classifier else None
        # a --time-limit-min stop leaves fewer steps: fine-tuning gets as many as the scratch run had
        steps_aging = int(load_checkpoint(aging_dir / "checkpoints" / "latest.pt")["step"])
    size, seed = config.image_size, int(cli["seed"])

    pretrain = train_denoiser(out / "pretrain", skimage_crops(args.n_pretrain, size, seed + 2), config,
                              args.steps_pretrain, seed + 2, args)
    train_denoiser(out / "lfw", lfw_faces(args.n_lfw, size, seed + 1, args.data_root), config, args.steps_lfw,
                   seed + 1, args)
    # fine-tuning: same config, classifier, seed and number of steps as the from-scratch run
    train_aging(out / "finetuned", config, cli, classifier_dir, steps_aging, args, init=pretrain.state_dict())

    seed_everything(seed)  # the aging run's initial weights (build_task draws them first, under this seed)
    nets = {"aging": generator_of(aging_dir, "g_ema"), "finetuned": generator_of(out / "finetuned", "g_ema"),
            "pretrain": generator_of(out / "pretrain"), "lfw": generator_of(out / "lfw"),
            "aging_init": build_generator(config).state_dict()}
    wrapped = {}
    for name, state in nets.items():
        generator = build_generator(config)
        generator.load_state_dict(state)
        wrapped[name] = FixedGroup(generator.eval(), size, args.compare_group)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="UTKFace: skipped")
        faces = load_aging_faces(ipcgan.GROUPS, size, args.data_root, cli.get("max_images"), seed=seed,
                                 progress=False)
    held_out = faces.split((1 - cli["val_fraction"], cli["val_fraction"]), seed=seed)[1]
    pick = np.random.default_rng(seed).permutation(len(held_out))[:args.n_images]
    table = compare_all(wrapped, held_out.images[np.sort(pick)], out, args)

    scratch, tuned = read_log(aging_dir / "val.csv"), read_log(out / "finetuned" / "val.csv")
    speed = steps_to_match(scratch, tuned, args.tolerance) if len(scratch) and len(tuned) else {}
    summary = {"command": "python experiments/genovese_common_filters.py " + " ".join(sys.argv[1:]),
               "config": config.to_dict(), "aging_run": str(aging_dir), "steps_aging": steps_aging,
               "steps_pretrain": args.steps_pretrain, "steps_lfw": args.steps_lfw, "n_images": len(pick),
               "comparisons": table.to_dict(orient="records"), "fine_tuning_speed": speed,
               "validation": {"scratch": scratch.to_dict(orient="records"),
                              "finetuned": tuned.to_dict(orient="records")},
               "seconds": round(time.perf_counter() - t0, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    both = pd.merge(scratch, tuned, on="step", how="outer", suffixes=("_scratch", "_finetuned"))
    lines = ["# Common filters of an aging generator (Genovese et al. 2019 replication)", "", "```",
             table.to_string(index=False, float_format=lambda v: f"{v:.3f}"), "```", "",
             "## Fine-tuning vs from scratch (validation)", "", "```",
             both.to_string(index=False, float_format=lambda v: f"{v:.3f}"), "```", "",
             f"steps to comparable quality: {speed}"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
