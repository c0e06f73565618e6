"""Perturbation analysis with reconstructions: ``python -m decoders.perturbation``.

The perturbation analysis of the Deep Face Decoder paper (Križaj et al.,
EAAI 2024): held-out faces are rotated, shifted, scaled, occluded, noised and
attacked (FGSM, PGD) in the frame the backbone reads, at several strengths
(:mod:`probes.template_drift` measures the template drift); the decoder then
draws each perturbed template, showing what the template still holds.

Per image and strength: cosine and L2 between the perturbed and the clean
template, the backbone's verification score and decision at the threshold of
``--fmr`` on LFW's pairs (:func:`decoders.evaluate.lfw_pair_scores`; or
``--threshold``), and for the reconstruction of the perturbed template: its
template (the uint8 reconstruction fed as a ``chip``) against the clean
template (``recon_cosine``, ``recon_verified``: does the drawing still pass as
the person?) and against the perturbed one (``recon_cosine_perturbed``).

``--out`` receives ``results.csv`` (one row per image, variant and strength),
``summary.csv`` (means with 95% intervals, verified rates with Wilson
intervals), ``results.json`` (the exact configuration, thresholds, summary and
the strength at which half the faces stop verifying), ``drift_<family>.png``
(seaborn, mean and 95% bootstrap CI over images), ``drift_attacks.png`` (noise,
FGSM and PGD on one plot) and ``strip_<family>[_<position>].png`` (original |
perturbed at each strength, and below each its reconstruction). An existing
``--out`` is refused unless ``--overwrite``.

    python -m decoders.perturbation --checkpoint runs/dfd --data-root /data --max-images 50 --out runs/dfd/perturb
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from probes.cli import DefaultsHelpFormatter
from probes.datasets import LAYOUTS, FaceDataset
from probes.errors import DatasetError, FaceprobeError
from probes.images import to_uint8
from probes.outputs import atomic_write_bytes, check_output_folder, finite_or_none, staged_output, write_csv, write_json
from probes.template_drift import (
    DEFAULT_POSITIONS,
    FAMILIES,
    PADDINGS,
    PerturbationError,
    TemplateDrift,
    check_positions,
    failure_strengths,
    get_family,
    plot_drift,
    summarise,
)
from probes.verification import pair_scores

from .dfd.templates import cache_dir_option, weights_key
from .reconstruct import (
    decode,
    embed_chips,
    load_trained_decoder,
    rebuild_backbone,
    run_folder,
    source_names,
    split_dataset,
)

ATTACK_FAMILIES = ("noise", "fgsm", "pgd")
RECON_LABELS = {"recon_cosine": "reconstruction vs clean template (cosine)",
                "recon_verified": "reconstruction still verified"}


# --------------------------------------------------------------------------- arguments


def parse_strengths(items: Sequence[str] | Mapping[str, Sequence[float]] | None) -> dict[str, list[float]]:
    """``["rotation=0,10,20", ...]`` (or a mapping) -> ``{family: [strengths]}``, checked."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            name, sep, values = str(item).partition("=")
            if not sep:
                raise PerturbationError(f"--strengths takes FAMILY=v1,v2,... (e.g. rotation=0,10,20), got {item!r}")
            try:
                pairs.append((name.strip(), [float(v) for v in values.split(",") if v.strip()]))
            except ValueError:
                raise PerturbationError(f"--strengths {item!r}: values must be numbers separated by commas") from None
    out = {}
    for name, values in pairs:
        out[name] = get_family(name).check(values)
    return out


def check_families(families: Sequence[str] | None) -> list[str]:
    if families is None:
        return list(FAMILIES)
    families = list(dict.fromkeys(families))
    for name in families:
        get_family(name)
    if not families:
        raise PerturbationError(f"no families given; valid families: {', '.join(FAMILIES)}")
    return families


# --------------------------------------------------------------------------- reconstruction strips


def strip_image(views: np.ndarray, perturbed: Sequence[Sequence[np.ndarray]], clean_recon: np.ndarray,
                recon: Sequence[Sequence[np.ndarray]], headers: Sequence[str],
                captions: Sequence[Sequence[str]] | None = None, recon_captions: Sequence[Sequence[str]] | None = None,
                title: str = "", side: int = 96):
    """A PIL image: per face two rows, original | perturbed at each strength, and the reconstruction of each.

    ``views``: K clean views (uint8 H x W x 3); ``perturbed[k][j]``: face k at
    strength j; ``clean_recon[k]``: reconstruction of the clean template;
    ``recon[k][j]``: reconstruction of the perturbed template. ``headers``
    label the strength columns; captions go under each cell.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    k, m = len(views), len(headers)
    pad, line, label_w = 4, 12, 58
    cell_h = side + 2 * line + 2
    title_lines = title.split("\n") if title else []
    top = (len(title_lines) + 1) * line + 6
    canvas = Image.new("RGB", (label_w + (m + 1) * (side + pad) + pad, top + k * (2 * cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for t, text in enumerate(title_lines):
        draw.text((pad, 2 + t * line), text, fill=(0, 0, 0), font=font)
    for j, head in enumerate(["original"] + list(headers)):
        draw.text((label_w + j * (side + pad) + pad, top - line - 2), head, fill=(0, 0, 0), font=font)

    def paste(array, x, y):
        img = Image.fromarray(np.ascontiguousarray(array))
        canvas.paste(img.resize((side, side), Image.BILINEAR if img.size[0] > side else Image.NEAREST), (x, y))

    for i in range(k):
        y0 = top + i * (2 * cell_h + pad)
        for r, (label, first, row, caps) in enumerate((
                ("input", views[i], perturbed[i], captions[i] if captions else None),
                ("decoded", clean_recon[i], recon[i], recon_captions[i] if recon_captions else None))):
            y = y0 + r * cell_h
            draw.text((pad, y + side // 2 - line // 2), label, fill=(0, 0, 0), font=font)
            for j, array in enumerate([first] + list(row)):
                x = label_w + j * (side + pad) + pad
                paste(array, x, y)
                if caps is not None and j < len(caps) and caps[j]:
                    for t, text in enumerate(caps[j].split("\n")[:2]):
                        draw.text((x, y + side + 1 + t * line), text, fill=(0, 0, 0), font=font)
    return canvas


def _save_pil(image, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, lambda h: h.write(buffer.getvalue()))


def _save_figure(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, lambda h: h.write(buffer.getvalue()))


# --------------------------------------------------------------------------- the analysis


def _load_inputs(config: dict, images: str | Path | None, layout: str, split: str,
                 data_root: str | Path | None) -> FaceDataset:
    if images is not None:
        from probes.datasets import load_folder

        return load_folder(images, layout=layout)
    parts = [p for p in ("lfw", "utkface") if p in (config.get("data") or {}).get("layouts", {"lfw": "lfw"})]
    for part in parts:
        try:
            return split_dataset(config, part, split, data_root)
        except DatasetError as exc:
            if "has no images" not in str(exc):
                raise
    raise DatasetError(f"the run in {run_folder(config)} has no {split} images in its split file")


def _fmt_strength(family: str, s: float) -> str:
    unit = {"rotation": " deg", "translation": " px", "scaling": "x", "occlusion": " side"}.get(family, "")
    return f"{'eps ' if family in ATTACK_FAMILIES else ''}{s:g}{unit}"


def perturbation_analysis(checkpoint: str | Path, out: str | Path, *, images: str | Path | None = None,
                          layout: str = "chip", split: str = "test", data_root: str | Path | None = None,
                          max_images: int | None = 50, families: Sequence[str] | None = None,
                          strengths: Mapping[str, Sequence[float]] | Sequence[str] | None = None,
                          positions: Sequence[str] | None = None, fmr: float = 1e-3, threshold: float | None = None,
                          impostors: str = "auto", max_pairs: int | None = None, pgd_steps: int = 10,
                          pgd_step_size: float | None = None, padding: str = "zeros", fill: float = 0.0,
                          strip_images: int = 3, seed: int = 0, overwrite: bool = False, device: str = "cpu",
                          backbone: str | None = None, weights: str | Path | None = None, cache_dir=None,
                          batch_size: int = 32, progress: bool = True,
                          command: Sequence[str] | None = None) -> dict:
    """Run the perturbation analysis (see the module doc); write ``out`` and return the results."""
    from probes.verification import thresholds_at_fmrs

    from .evaluate import _versions, lfw_pair_scores

    started = time.perf_counter()
    families = check_families(families)
    strengths = parse_strengths(strengths)
    unused = sorted(set(strengths) - set(families))
    if unused:
        raise PerturbationError(f"--strengths given for {', '.join(unused)}, which is not among the families "
                                f"measured ({', '.join(families)})")
    positions = check_positions(positions if positions is not None else DEFAULT_POSITIONS)
    if max_images is not None and max_images <= 0:
        raise PerturbationError(f"--max-images must be positive, got {max_images}")
    if strip_images < 0:
        raise PerturbationError(f"--strip-images must be 0 or more, got {strip_images}")
    if layout not in LAYOUTS:
        raise PerturbationError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if padding not in PADDINGS:
        raise PerturbationError(f"--padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    if not 0 < fmr < 1:
        raise PerturbationError(f"--fmr must lie in (0, 1), got {fmr}")
    check_output_folder(out, overwrite)  # refuse before any work

    decoder, config = load_trained_decoder(checkpoint, device)
    net = rebuild_backbone(config, backbone, weights, device)
    size = decoder.config.image_size
    ds = _load_inputs(config, images, layout, split, data_root)
    n_available = len(ds)
    if max_images is not None and max_images < len(ds):
        ds = ds.subset(np.sort(np.random.default_rng(seed).choice(len(ds), max_images, replace=False)))
    from probes.images import load_image

    faces = [load_image(p) for p in ds.paths]
    names = source_names(ds.paths, images)

    if threshold is None:
        lfw = lfw_pair_scores(net, data_root, cache_dir, max_pairs, seed, progress)
        thr = thresholds_at_fmrs(lfw, [fmr], impostors)[0]
        threshold_info = dict(asdict(thr), source="LFW pairs.txt", n_pairs_used=lfw.n_pairs,
                              describe=thr.describe())
        threshold = thr.threshold
    else:
        threshold_info = {"threshold": float(threshold), "source": "given (--threshold)",
                          "metric": net.spec.verification_metric}
    drift = TemplateDrift(net, threshold, padding=padding, fill=fill, pgd_steps=pgd_steps,
                          pgd_step_size=pgd_step_size, seed=seed, batch_size=batch_size, progress=progress)
    metric = drift.metric
    plots = ["cosine"] + (["l2"] if metric == "euclidean" else []) + ["verified", "recon_cosine"]

    with staged_output(out, overwrite) as tmp:
        tables, seconds, figures, strips = [], {}, [], []
        clean_recon = clean_recon_cos = clean_recon_ok = None
        for family in families:
            t0 = time.perf_counter()
            res = drift.run(faces, family, strengths.get(family), ds.layout,
                            positions if family == "occlusion" else None, names, keep_images=strip_images)
            table = res.table
            recon_u8 = to_uint8(decode(decoder, res.templates, batch_size))
            emb = embed_chips(net, recon_u8, batch_size)
            clean_rows = res.clean[table["image"].to_numpy()]
            table["recon_cosine"] = pair_scores(emb, clean_rows, "cosine")
            table["recon_score"] = pair_scores(emb, clean_rows, metric)
            table["recon_verified"] = table["recon_score"] >= threshold
            table["recon_cosine_perturbed"] = pair_scores(emb, res.templates, "cosine")
            if clean_recon is None and strip_images:
                clean_recon = to_uint8(decode(decoder, res.clean[:strip_images], batch_size))
                clean_emb = embed_chips(net, clean_recon, batch_size)
                clean_recon_cos = pair_scores(clean_emb, res.clean[:strip_images], "cosine")
                clean_recon_ok = pair_scores(clean_emb, res.clean[:strip_images], metric) >= threshold
            tables.append(table)
            seconds[family] = round(time.perf_counter() - t0, 1)

            fig = plot_drift(table, plots, RECON_LABELS,
                             title=f"{family} on {net.name} ({table['image'].nunique()} held-out faces; "
                                   f"threshold at FMR {fmr:g}: {_describe(threshold, metric)})")
            _save_figure(fig, tmp / f"drift_{family}.png")
            figures.append(f"drift_{family}.png")
            if strip_images:
                strips += _write_strips(tmp, family, res, recon_u8, clean_recon, clean_recon_cos, clean_recon_ok,
                                        net.name)

        table = pd.concat(tables, ignore_index=True)
        attacks = [f for f in ATTACK_FAMILIES if f in families]
        if len(attacks) >= 2:
            part = table[table["family"].isin(attacks)]
            fig = plot_drift(part, plots, RECON_LABELS,
                             title=f"{' vs '.join(attacks)} on {net.name} (same L-inf budget; "
                                   f"{part['image'].nunique()} faces)")
            _save_figure(fig, tmp / "drift_attacks.png")
            figures.append("drift_attacks.png")
        summary = summarise(table)
        fails = failure_strengths(summary)
        recon_fails = failure_strengths(summary, column="recon_verified_rate")
        write_csv(tmp / "results.csv", table.to_dict("records"))
        write_csv(tmp / "summary.csv", summary.to_dict("records"))
        run = run_folder(config)
        results = {
            "command": list(command) if command is not None else None,
            "configuration": {
                "checkpoint": config["checkpoint"], "run": str(run), "step": config["step"],
                "inputs": ({"images": str(Path(images).absolute()), "layout": layout} if images is not None else
                           {"split": split, "set": ds.name, "layout": ds.layout}),
                "data_root": str(data_root or os.environ.get("FACEPROBE_DATA", "")),
                "max_images": max_images, "subsample_seed": seed, "families": families,
                "strengths": {f: get_family(f).check(strengths.get(f)) for f in families},
                "units": {f: get_family(f).unit for f in families},
                "occlusion_positions": positions, "fmr": fmr, "impostors": impostors, "max_pairs": max_pairs,
                "drift": drift.config(), "strip_images": strip_images, "decoder_image_size": size,
                "reconstruction_input": "decoder output rounded to uint8 (as saved in a PNG), fed as a chip",
                "ci": "means: 95% t-interval over images; rates: 95% Wilson interval; figures: 95% bootstrap "
                      "(seaborn, 1000 resamples, seed 0)",
                "device": str(device), "threads": torch.get_num_threads(), "batch_size": batch_size,
                "backbone": {"name": net.name, "weights_id": net.weights_id, "weights_key": weights_key(net)},
                "versions": _versions(),
            },
            "checkpoint_config": config,
            "data": {"n_images": len(ds), "n_available": n_available,
                     "n_identities": (len(set(ds.labels("identity"))) if "identity" in ds.attributes else None)},
            "threshold": threshold_info,
            "summary": _records(summary),
            "verification_fails_at": {"what": "smallest strength at which under half of the perturbed faces verify "
                                              "against their clean template (null: never among the strengths)",
                                      "perturbed": _records(fails), "reconstruction": _records(recon_fails)},
            "files": {"results": "results.csv", "summary": "summary.csv", "figures": figures, "strips": strips},
            "seconds_per_family": seconds,
            "seconds": None,
        }
        results["seconds"] = round(time.perf_counter() - started, 1)
        write_json(tmp / "results.json", results)
    results["out"] = str(Path(out).absolute())
    return results


def _describe(threshold: float, metric: str) -> str:
    return f"L2 <= {-threshold:.3f}" if metric == "euclidean" else f"cos >= {threshold:.3f}"


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in row.items()}
            for row in frame.to_dict("records")]


def _write_strips(tmp: Path, family: str, res, recon_u8: np.ndarray, clean_recon: np.ndarray,
                  clean_recon_cos: np.ndarray, clean_recon_ok: np.ndarray, backbone: str) -> list[str]:
    """One strip per variant of ``family`` for the first faces kept by :meth:`TemplateDrift.run`."""
    table = res.table
    fam = get_family(family)
    k = len(res.views)
    files = []
    for variant in dict.fromkeys(table["variant"]):
        rows = table[(table["variant"] == variant) & (table["strength"] != fam.identity)]
        levels = list(dict.fromkeys(rows["strength"]))
        if not levels:
            continue
        perturbed, recons, caps, rcaps = [], [], [], []
        for i in range(k):
            mine = rows[rows["image"] == i].set_index("strength")
            idx = [int(np.flatnonzero((table["image"] == i) & (table["variant"] == variant)
                                      & (table["strength"] == s))[0]) for s in levels]
            perturbed.append([res.perturbed[j] for j in idx])
            recons.append([recon_u8[j] for j in idx])
            caps.append([f"{table['name'].iloc[idx[0]][:16]}"] + [
                f"cos {mine.loc[s, 'cosine']:.3f}\n{'verified' if mine.loc[s, 'verified'] else 'REJECTED'}"
                for s in levels])
            rcaps.append([f"cos {clean_recon_cos[i]:.3f}\n{'verified' if clean_recon_ok[i] else 'REJECTED'}"] + [
                f"cos {mine.loc[s, 'recon_cosine']:.3f}\n{'verified' if mine.loc[s, 'recon_verified'] else 'REJECTED'}"
                for s in levels])
        title = (f"{family}{' ' + variant if variant else ''} on {backbone}\ninput: cos of its template to the "
                 f"clean one\ndecoded: the decoder's drawing of that\ntemplate; cos of the drawing's template\n"
                 f"to the clean one; verified at the threshold")
        image = strip_image(res.views, perturbed, clean_recon[:k], recons,
                            [_fmt_strength(family, s) for s in levels], caps, rcaps, title)
        name = f"strip_{family}{'_' + variant if variant else ''}.png"
        _save_pil(image, tmp / name)
        files.append(name)
    return files


# --------------------------------------------------------------------------- CLI


def format_table(results: dict) -> str:
    """Mean cosine, verified rate and reconstruction cosine per family, variant and strength."""
    header = (f"{'family':<12} {'variant':<9} {'strength':>9} {'cosine':>7} {'L2':>7} {'verified':>9} "
              f"{'recon cos':>9} {'recon ok':>9}")
    lines = [header]
    for r in results["summary"]:
        ver = "" if r.get("verified_rate") is None else f"{100 * r['verified_rate']:.0f}%"
        rver = "" if r.get("recon_verified_rate") is None else f"{100 * r['recon_verified_rate']:.0f}%"
        lines.append(f"{r['family']:<12} {r['variant'] or '-':<9} {r['strength']:>9g} {r['cosine_mean']:>7.4f} "
                     f"{r['l2_mean']:>7.4f} {ver:>9} {r['recon_cosine_mean']:>9.4f} {rver:>9}")
    thr = results["threshold"]
    lines.append(f"threshold: {thr.get('describe', thr['threshold'])} ({thr['source']}); "
                 f"{results['data']['n_images']} faces; {results['seconds']} s")
    for f in results["verification_fails_at"]["perturbed"]:
        s = f["strength"]
        lines.append(f"verification fails (< 50% verified): {f['family']}{' ' + f['variant'] if f['variant'] else ''}"
                     f" at {'never' if s is None else f'{s:g}'}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m decoders.perturbation", description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="decoder run folder (or a checkpoint inside it)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--images", help="folder of face images (default: the run's held-out --split)")
    p.add_argument("--layout", default="chip", choices=LAYOUTS, help="with --images: how they are framed")
    p.add_argument("--split", default="test", choices=("test", "val"), help="held-out part of the run's split.json")
    p.add_argument("--data-root", help="folder holding lfw_home/ and utkface/ (default $FACEPROBE_DATA)")
    p.add_argument("--max-images", type=int, default=50, help="seeded subsample of the images")
    p.add_argument("--families", nargs="+", choices=list(FAMILIES), help="default: all")
    p.add_argument("--strengths", action="append", metavar="FAMILY=V1,V2,...",
                   help="strengths of one family (repeatable); units: " + "; ".join(
                       f"{f.name} {f.unit}" for f in FAMILIES.values()))
    p.add_argument("--positions", nargs="+", default=list(DEFAULT_POSITIONS),
                   help="occlusion positions (eyes, left_eye, right_eye, nose, mouth, centre, random)")
    p.add_argument("--fmr", type=float, default=1e-3, help="false match rate of the verification threshold")
    p.add_argument("--threshold", type=float,
                   help="verification threshold as a score instead of --fmr (cosine, or -L2 for euclidean backbones)")
    p.add_argument("--impostors", choices=("auto", "pairs", "cross"), default="auto",
                   help="impostor set for the threshold (see decoders.evaluate)")
    p.add_argument("--max-pairs", type=int, help="seeded subset of LFW pairs for the threshold (quick runs)")
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--pgd-step-size", type=float, help="default 2.5 * eps / steps")
    p.add_argument("--padding", choices=PADDINGS, default="zeros",
                   help="what geometric transforms bring in from outside the view")
    p.add_argument("--fill", type=float, default=0.0, help="occluder grey level in [0, 1]")
    p.add_argument("--strip-images", type=int, default=3, help="faces shown in each reconstruction strip")
    p.add_argument("--seed", type=int, default=0, help="subsampling and perturbation seed")
    p.add_argument("--backbone", help="refuse a checkpoint not trained against this backbone")
    p.add_argument("--weights", help="backbone weights file, if training used one")
    p.add_argument("--cache-dir", help="template cache folder ('none' disables; default $FACEPROBE_HOME/cache)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = cache_dir_option(args.cache_dir)
    try:
        results = perturbation_analysis(
            args.checkpoint, args.out, images=args.images, layout=args.layout, split=args.split,
            data_root=args.data_root, max_images=args.max_images, families=args.families, strengths=args.strengths,
            positions=args.positions, fmr=args.fmr, threshold=args.threshold, impostors=args.impostors,
            max_pairs=args.max_pairs, pgd_steps=args.pgd_steps, pgd_step_size=args.pgd_step_size,
            padding=args.padding, fill=args.fill, strip_images=args.strip_images, seed=args.seed,
            overwrite=args.overwrite, device=args.device, backbone=args.backbone, weights=args.weights,
            cache_dir=cache, batch_size=args.batch_size, progress=not args.no_progress,
            command=[sys.executable, "-m", "decoders.perturbation"] + list(sys.argv[1:] if argv is None else argv))
    except FaceprobeError as exc:
        print(f"decoders.perturbation: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    print(f"results: {Path(results['out']) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
