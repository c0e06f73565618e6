"""A trained decoder as a template-inversion attack: ``python -m decoders.evaluate``.

On the run's **held-out** identities (the test part of its ``split.json``),
each test image's template (backbone A) is decoded; the reconstruction, saved
as uint8 like a PNG, is fed back to A as a ``chip``. Reported:

- **SAR** (success attack rate) at each ``--fmr``: the fraction of attack
  comparisons whose score reaches the backbone's threshold at that false match
  rate, with a 95% Wilson interval. **Type-I**: reconstruction vs the template
  of its own source image. **Type-II**: reconstruction vs *other* images of
  the same person (by default every other LFW image of that held-out person,
  at most ``--type2-max-refs`` per reconstruction, seeded; the rate is over
  all such pairs). People with one image only add no type-II pair.
- **Thresholds** from LFW's ``pairs.txt`` (all 6000 pairs) for the backbone,
  with the score its verification rule uses (cosine, or -L2 for dlib). The
  impostor set per FMR (``--impostors auto``): the 3000 mismatched pairs when
  they can resolve the FMR (``n * fmr >= 1``, :func:`probes.verification.threshold_at_fmr`
  raises otherwise), else the **cross-identity set**: every pair of distinct
  images among the pairs' 7701 images whose LFW names differ (about 29.6 M
  scores), built here because 0.01% needs at least 10,000 impostors. Both
  thresholds are reported where computable, with the number of impostor
  scores each rests on and the genuine (matched-pair) acceptance rate.
- Mean identity cosine (type-I, type-II), LPIPS (AlexNet, ``probes.perceptual``)
  and SSIM (``skimage.metrics.structural_similarity``, RGB, data range 1)
  between each reconstruction and its target chip.
- **Control**: each reconstruction against the templates of every *other*
  held-out person, at the same thresholds -- how often it passes as someone
  else (about the FMR for real faces; far more for a decoder that draws one
  average face that a distance-rule net accepts for many people).
- With ``--backbone-b``: **transfer** SAR -- reconstructions from A's templates
  verified by B at B's own LFW threshold. B cannot take A's chip as its own
  crop, so each reconstruction is put back where A's crop lies in the source
  frame, on black (no source pixel leaks in), and B crops that frame with its
  own crop for the layout. The **ceiling** row applies the same framing to
  A's real target chips: what a perfect reconstruction could reach.

``--out`` receives ``results.json`` (everything, with the exact
configuration, checkpoint config and step, thresholds and counts),
``results.csv`` (one row per figure), ``per_image.csv``, ``gallery.png`` and
``gallery.html`` (``--gallery-size`` test reconstructions with their type-I/II
scores). Templates and chips come through
:func:`decoders.dfd.templates.compute_targets` and are cached.

    python -m decoders.evaluate --checkpoint runs/dfd --data-root /data --out runs/dfd/eval
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from probes.cli import DefaultsHelpFormatter
from probes.datasets import FaceDataset, subsample_indices
from probes.errors import DatasetError, FaceprobeError
from probes.images import to_uint8
from probes.outputs import check_output_folder, finite_or_none, staged_output, write_csv, write_json
from probes.verification import (
    IMPOSTOR_SETS,
    AttackRate,
    FMRThreshold,
    LFWScores,
    blocked_scores,
    cross_identity_scores,
    pair_scores,
    success_attack_rate,
    thresholds_at_fmrs,
)

from .dfd.gallery import GalleryItem, write_grid, write_html
from .dfd.templates import cache_dir_option, compute_targets, weights_key
from .reconstruct import (
    ReconstructionError,
    decode,
    identity_scores,
    load_trained_decoder,
    lpips_scores,
    rebuild_backbone,
    run_folder,
    source_names,
    split_dataset,
)

DEFAULT_FMRS = (1e-3, 1e-4)
ATTACK_LABELS = {"type_I": "type-I", "type_II": "type-II", "control_other_people": "control",
                 "framing_ceiling_type_I": "ceiling"}
PAIRS_CHIP_SIZE = 32  # the pairs' chips are never used; stored small so their cache entry stays small


# --------------------------------------------------------------------------- rates and intervals


def ssim_scores(images_a: np.ndarray, images_b: np.ndarray) -> np.ndarray:
    """SSIM (scikit-image, RGB with ``channel_axis=-1``, ``data_range=1``) of uint8 N x H x W x 3 pairs."""
    from skimage.metrics import structural_similarity

    a, b = np.asarray(images_a), np.asarray(images_b)
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"SSIM needs two N x H x W x 3 arrays of one shape, got {a.shape} and {b.shape}")
    return np.array([structural_similarity(x.astype(np.float64) / 255, y.astype(np.float64) / 255,
                                           channel_axis=-1, data_range=1.0) for x, y in zip(a, b)])


# --------------------------------------------------------------------------- LFW thresholds


def lfw_pair_scores(backbone, data_root: str | Path | None = None, cache_dir=None, max_pairs: int | None = None,
                    seed: int = 0, progress: bool = True) -> LFWScores:
    """Genuine, mismatched-pair and cross-identity impostor scores of LFW ``pairs.txt`` for ``backbone``.

    ``max_pairs`` takes a seeded subset (half matched, half mismatched) for quick runs and tests.
    """
    from probes.datasets import load_lfw_pairs

    pairs = load_lfw_pairs(data_root, "10_folds")
    keep = np.arange(len(pairs))
    if max_pairs is not None:
        if max_pairs < 2:
            raise ReconstructionError(f"--max-pairs must be at least 2, got {max_pairs}")
        rng = np.random.default_rng(seed)
        same = np.flatnonzero(pairs.same)
        diff = np.flatnonzero(~pairs.same)
        keep = np.sort(np.concatenate([rng.choice(same, min(len(same), max_pairs // 2), replace=False),
                                       rng.choice(diff, min(len(diff), max_pairs - max_pairs // 2), replace=False)]))
    ds = pairs.dataset()
    used = np.unique(np.concatenate([pairs.index_a[keep], pairs.index_b[keep]]))
    ds_used = ds.subset(used)
    where = np.full(len(ds), -1)
    where[used] = np.arange(len(used))
    targets = compute_targets(backbone, ds_used, PAIRS_CHIP_SIZE, cache_dir=cache_dir, progress=progress)
    metric = backbone.spec.verification_metric
    t = targets.templates
    a, b = t[where[pairs.index_a[keep]]], t[where[pairs.index_b[keep]]]
    scores = pair_scores(a, b, metric)
    same = pairs.same[keep]
    ids = ds_used.labels("identity")
    cross = cross_identity_scores(t, ids, metric)
    return LFWScores(metric, scores[same], scores[~same], cross, len(ds_used), len(set(ids)), pairs.subset, len(keep))


# --------------------------------------------------------------------------- transfer framing


def reframe(chip: torch.Tensor, spec, layout: str, frame_hw: tuple[int, int]) -> torch.Tensor:
    """Put a 3 x S x S chip (backbone ``spec``'s crop for ``layout``) back into an H x W frame.

    The inverse of the crop and square padding of
    :meth:`probes.backbones.registry.FaceBackbone.preprocess`; the frame outside
    the crop is black. Returns 3 x H x W in [0, 1].
    """
    h, w = frame_hw
    top, left, ch, cw = spec.crop_for(layout)
    y0, x0 = round(top * h), round(left * w)
    y1, x1 = round((top + ch) * h), round((left + cw) * w)
    rh, rw = y1 - y0, x1 - x0
    x = chip[None].float()
    if spec.pad_to_square and rh != rw:
        side = max(rh, rw)
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=side < x.shape[-1])
        dy, dx = (side - rh) // 2, (side - rw) // 2
        x = x[..., dy:dy + rh, dx:dx + rw]
    else:
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=rh < x.shape[-2])
    canvas = torch.zeros(1, 3, h, w, dtype=x.dtype, device=x.device)
    # Parts of the crop outside the frame (padding in preprocess) are dropped.
    fy0, fx0, fy1, fx1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
    canvas[..., fy0:fy1, fx0:fx1] = x[..., fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    return canvas[0].clamp_(0, 1)


@torch.no_grad()
def transfer_embeddings(backbone_b, recon_u8: np.ndarray, spec_a, layout: str, frames: Sequence[tuple[int, int]],
                        batch_size: int = 32) -> np.ndarray:
    """Templates by ``backbone_b`` of A's reconstructions, each reframed into its source frame."""
    device = next(backbone_b.parameters()).device
    x = torch.from_numpy(np.array(recon_u8)).permute(0, 3, 1, 2).float() / 255
    out = []
    for start in range(0, len(x), batch_size):
        batch = [backbone_b.preprocess(reframe(x[i], spec_a, layout, frames[i])[None].to(device), layout)
                 for i in range(start, min(len(x), start + batch_size))]
        out.append(backbone_b.net(torch.cat(batch)).float().cpu())
    return torch.cat(out).numpy()


def _frame_sizes(paths: Sequence[Path]) -> list[tuple[int, int]]:
    from PIL import Image

    sizes = []
    for p in paths:
        with Image.open(p) as img:
            sizes.append((img.size[1], img.size[0]))
    return sizes


# --------------------------------------------------------------------------- type-II references


def type2_references(test: FaceDataset, source: str = "lfw", data_root: str | Path | None = None,
                     max_refs: int | None = 10, seed: int = 0) -> tuple[FaceDataset | None, np.ndarray]:
    """Other images of each test image's person: (reference dataset, K x 2 pairs (test index, ref index)).

    ``source="lfw"``: every other LFW image of the person (held-out people are
    absent from training altogether); ``"split"``: only the other test images.
    At most ``max_refs`` per test image (seeded choice; None = all).
    """
    empty = np.zeros((0, 2), np.int64)
    if "identity" not in test.attributes:
        return None, empty
    ids = test.labels("identity")
    if source == "split":
        pool = test
    elif source == "lfw":
        from probes.datasets import load_lfw_people

        wanted = set(ids)
        people = load_lfw_people(data_root if data_root is not None else os.environ.get("FACEPROBE_DATA"))
        pool_ids = people.labels("identity")
        pool = people.subset(np.flatnonzero([i in wanted for i in pool_ids]))
    else:
        raise ReconstructionError(f"--type2-references must be 'lfw' or 'split', got {source!r}")
    pool_ids = pool.labels("identity")
    by_id: dict[str, list[int]] = {}
    for j, i in enumerate(pool_ids):
        by_id.setdefault(i, []).append(j)
    rng = np.random.default_rng(seed)
    pairs = []
    for k, (path, person) in enumerate(zip(test.paths, ids)):
        here = Path(path).resolve()
        others = [j for j in by_id.get(person, []) if Path(pool.paths[j]).resolve() != here]
        if max_refs is not None and len(others) > max_refs:
            others = sorted(rng.choice(others, max_refs, replace=False).tolist())
        pairs += [(k, j) for j in others]
    if not pairs:
        return None, empty
    pairs = np.asarray(pairs, np.int64)
    used = np.unique(pairs[:, 1])
    remap = np.full(len(pool), -1)
    remap[used] = np.arange(len(used))
    pairs[:, 1] = remap[pairs[:, 1]]
    refs = pool.subset(used)
    refs.name = f"{test.name}-type2-refs"
    return refs, pairs


# --------------------------------------------------------------------------- the evaluation


def _attack_block(scores: np.ndarray, cosines: np.ndarray, thresholds: list[FMRThreshold]) -> dict:
    return {"n": len(scores), "mean_cosine": finite_or_none(np.mean(cosines)) if len(cosines) else None,
            "mean_score": finite_or_none(np.mean(scores)) if len(scores) else None,
            "sar": {f"{t.fmr:g}": _rate_dict(success_attack_rate(scores, t.threshold)) if len(scores) else
                    {"rate": None, "accepted": 0, "n": 0, "ci_low": None, "ci_high": None, "threshold": t.threshold}
                    for t in thresholds}}


def control_scores(recon_embeddings: np.ndarray, templates: np.ndarray, identities, metric: str) -> np.ndarray:
    """Scores of each reconstruction against the templates of every *other* person's images: how often a
    reconstruction passes as someone else (a decoder drawing one average face would pass often)."""
    ids = np.asarray(identities, dtype=str)
    return blocked_scores(recon_embeddings, templates, lambda start, stop: ids[start:stop, None] != ids[None, :],
                           metric)


def _control_block(emb: np.ndarray, templates: np.ndarray, test: FaceDataset, metric: str,
                   thresholds: list[FMRThreshold]) -> dict | None:
    if "identity" not in test.attributes:
        return None
    scores = control_scores(emb, templates, test.labels("identity"), metric)
    block = _attack_block(scores, np.zeros(0) if not len(scores) else
                          control_scores(emb, templates, test.labels("identity"), "cosine"), thresholds)
    block["what"] = "reconstruction vs templates of other held-out people (acceptance = false match of the attack)"
    return block


def _rate_dict(rate: AttackRate) -> dict:
    return {k: finite_or_none(v) if isinstance(v, float) else v for k, v in asdict(rate).items()}


def evaluate(checkpoint: str | Path, out: str | Path, data_root: str | Path | None = None,
             backbone_b: str | None = None, weights_b: str | Path | None = None, max_images: int | None = None,
             fmrs: Sequence[float] = DEFAULT_FMRS, impostors: str = "auto", max_pairs: int | None = None,
             split: str = "test", type2_references_from: str = "lfw", type2_max_refs: int | None = 10,
             overwrite: bool = False, device: str = "cpu", backbone: str | None = None,
             weights: str | Path | None = None, cache_dir=None, gallery_size: int = 24, batch_size: int = 64,
             seed: int = 0, progress: bool = True, command: Sequence[str] | None = None) -> dict:
    """Evaluate a decoder run as an attack (see the module doc); writes ``out`` and returns the results."""
    started = time.perf_counter()
    fmrs = [float(f) for f in fmrs]
    if not fmrs or any(not 0 < f < 1 for f in fmrs):
        raise ReconstructionError(f"--fmr values must lie in (0, 1), got {fmrs}")
    if max_images is not None and max_images <= 0:
        raise ReconstructionError(f"--max-images must be positive, got {max_images}")
    if type2_max_refs is not None and type2_max_refs <= 0:
        type2_max_refs = None
    if impostors not in IMPOSTOR_SETS:
        raise ReconstructionError(f"--impostors must be one of {', '.join(IMPOSTOR_SETS)}, got {impostors!r}")
    check_output_folder(out, overwrite)

    decoder, config = load_trained_decoder(checkpoint, device)
    run = run_folder(config)
    size = decoder.config.image_size
    net_a = rebuild_backbone(config, backbone, weights, device)
    parts = [p for p in ("lfw", "utkface") if p in (config.get("data") or {}).get("layouts", {"lfw": "lfw"})]
    tests = []
    for part in parts:
        try:
            tests.append(split_dataset(config, part, split, data_root))
        except DatasetError as exc:
            if "has no images" not in str(exc):
                raise
    if not tests:
        raise DatasetError(f"the run in {run} has no {split} images in its split file")
    if len(tests) > 1:
        print(f"decoders.evaluate: note: evaluating the {split} images of {tests[0].name} only "
              f"(also present: {', '.join(t.name for t in tests[1:])})", file=sys.stderr)
    test = tests[0]
    n_available = len(test)
    test = test.subset(subsample_indices(len(test), max_images, seed))

    # ----- templates, thresholds
    tgt = compute_targets(net_a, test, size, cache_dir=cache_dir, progress=progress)
    lfw_a = lfw_pair_scores(net_a, data_root, cache_dir, max_pairs, seed, progress)
    thr_a = thresholds_at_fmrs(lfw_a, fmrs, impostors)
    refs, t2_pairs = type2_references(test, type2_references_from, data_root, type2_max_refs, seed)
    ref_t = compute_targets(net_a, refs, size, cache_dir=cache_dir, progress=progress) if refs is not None else None

    net_b = thr_b = lfw_b = None
    if backbone_b is not None:
        from probes.backbones import create_backbone

        net_b = create_backbone(backbone_b, weights_b, device=device).requires_grad_(False).eval()
        lfw_b = lfw_pair_scores(net_b, data_root, cache_dir, max_pairs, seed, progress)
        thr_b = thresholds_at_fmrs(lfw_b, fmrs, impostors)
        tgt_b = compute_targets(net_b, test, size, cache_dir=cache_dir, progress=progress)
        ref_b = compute_targets(net_b, refs, size, cache_dir=cache_dir, progress=progress) if refs is not None else None

    with staged_output(out, overwrite) as tmp:
        recon_u8 = to_uint8(decode(decoder, tgt.templates, batch_size))
        chips = np.asarray(tgt.images)
        ident = identity_scores(net_a, recon_u8, tgt.templates, batch_size)
        metric = net_a.spec.verification_metric
        i, j = t2_pairs[:, 0], t2_pairs[:, 1]
        if len(t2_pairs):
            t2_score = pair_scores(ident["embeddings"][i], ref_t.templates[j], metric)
            t2_cos = pair_scores(ident["embeddings"][i], ref_t.templates[j], "cosine")
        else:
            t2_score = t2_cos = np.zeros(0)
        lp = lpips_scores(recon_u8, chips, device=device)
        ss = ssim_scores(recon_u8, chips)

        results_a = {"backbone": net_a.name, "metric": metric,
                     "control_other_people": _control_block(ident["embeddings"], tgt.templates, test, metric, thr_a),
                     "type_I": _attack_block(ident["score"], ident["cosine"], thr_a),
                     "type_II": dict(_attack_block(t2_score, t2_cos, thr_a),
                                     n_reconstructions=len(np.unique(i)),
                                     n_identities=len({test.labels('identity')[k] for k in np.unique(i)})
                                     if len(t2_pairs) else 0,
                                     n_reference_images=len(refs) if refs is not None else 0)}
        transfer = None
        if net_b is not None:
            frames = _frame_sizes(test.paths)
            emb_b = transfer_embeddings(net_b, recon_u8, net_a.spec, test.layout, frames, batch_size)
            metric_b = net_b.spec.verification_metric
            b1_score = pair_scores(emb_b, tgt_b.templates, metric_b)
            b1_cos = pair_scores(emb_b, tgt_b.templates, "cosine")
            if len(t2_pairs):
                b2_score = pair_scores(emb_b[i], ref_b.templates[j], metric_b)
                b2_cos = pair_scores(emb_b[i], ref_b.templates[j], "cosine")
            else:
                b2_score = b2_cos = np.zeros(0)
            # The same framing applied to the real target chips: the best a perfect reconstruction could do.
            emb_chip = transfer_embeddings(net_b, chips, net_a.spec, test.layout, frames, batch_size)
            chip_score = pair_scores(emb_chip, tgt_b.templates, metric_b)
            chip_cos = pair_scores(emb_chip, tgt_b.templates, "cosine")
            transfer = {"backbone": net_b.name, "weights_id": net_b.weights_id, "metric": metric_b,
                        "framing_ceiling_type_I": dict(
                            _attack_block(chip_score, chip_cos, thr_b),
                            what="A's real target chip (not a reconstruction), framed the same way, vs B's template "
                                 "of the source: the best a perfect reconstruction could reach through this framing"),
                        "control_other_people": _control_block(emb_b, tgt_b.templates, test, metric_b, thr_b),
                        "framing": "reconstruction put back at A's crop in the source frame, black elsewhere; "
                                   "B applies its own crop for the layout",
                        "type_I": _attack_block(b1_score, b1_cos, thr_b),
                        "type_II": _attack_block(b2_score, b2_cos, thr_b)}

        # ----- files
        names = source_names(test.paths)
        ids = test.labels("identity") if "identity" in test.attributes else np.array([None] * len(test))
        per_image = []
        for k in range(len(test)):
            mine = t2_pairs[:, 0] == k
            row = {"name": names[k], "identity": ids[k] or "", "source": str(test.paths[k]),
                   "type1_score": float(ident["score"][k]), "type1_cosine": float(ident["cosine"][k]),
                   "type1_l2": float(ident["l2"][k])}
            for t in thr_a:
                row[f"type1_accepted_fmr_{t.fmr:g}"] = bool(ident["score"][k] >= t.threshold)
            row["type2_refs"] = int(mine.sum())
            row["type2_mean_cosine"] = float(t2_cos[mine].mean()) if mine.any() else float("nan")
            for t in thr_a:
                row[f"type2_accept_rate_fmr_{t.fmr:g}"] = (float((t2_score[mine] >= t.threshold).mean())
                                                         if mine.any() else float("nan"))
            row["lpips"], row["ssim"] = float(lp[k]), float(ss[k])
            if transfer is not None:
                row["transfer_type1_score"] = float(b1_score[k])
                row["transfer_type1_cosine"] = float(b1_cos[k])
            per_image.append(row)
        write_csv(tmp / "per_image.csv", per_image)

        summary_file = run / "summary.json"
        train_summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        results = {
            "command": list(command) if command is not None else None,
            "configuration": {
                "checkpoint": config["checkpoint"], "run": str(run), "step": config["step"], "split": split,
                "data_root": str(data_root or os.environ.get("FACEPROBE_DATA", "")), "max_images": max_images,
                "subsample_seed": seed, "fmrs": fmrs, "impostors": impostors, "max_pairs": max_pairs,
                "type2_references": type2_references_from, "type2_max_refs": type2_max_refs,
                "device": str(device), "threads": torch.get_num_threads(), "batch_size": batch_size,
                "reconstruction_input": "decoder output rounded to uint8 (as saved in a PNG), fed as a chip",
                "lpips": "probes.perceptual.perceptual_distance, net alex (LPIPS v0.1)",
                "ssim": "skimage.metrics.structural_similarity(channel_axis=-1, data_range=1.0), RGB in [0, 1]",
                "ci": "95% Wilson score interval",
                "versions": _versions(),
            },
            "checkpoint_config": config,
            "training": {k: train_summary.get(k) for k in ("step", "train_time_s", "n_train", "world_size",
                                                           "last_validation") if k in train_summary},
            "data": {"test_set": test.name, "layout": test.layout, "n_test_images_available": n_available,
                     "n_test_images": len(test),
                     "n_test_identities": len(set(ids)) if "identity" in test.attributes else None,
                     "chip_size": size},
            "thresholds": {net_a.name: _threshold_block(lfw_a, thr_a)},
            "attack": results_a,
            "transfer": transfer,
            "image_quality": {"lpips_mean": finite_or_none(lp.mean()), "lpips_std": finite_or_none(lp.std()),
                              "ssim_mean": finite_or_none(ss.mean()), "ssim_std": finite_or_none(ss.std()),
                              "n": len(test)},
            "seconds": None,
        }
        if net_b is not None:
            results["thresholds"][net_b.name] = _threshold_block(lfw_b, thr_b)
            results["configuration"]["backbone_b"] = {"name": net_b.name, "weights_id": net_b.weights_id,
                                                      "weights_file": str(weights_b) if weights_b else None}
        results["configuration"]["backbone_a"] = {"name": net_a.name, "weights_id": net_a.weights_id,
                                                  "weights_key": weights_key(net_a)}
        write_csv(tmp / "results.csv", _results_rows(results))

        # ----- gallery
        shown = np.linspace(0, len(test) - 1, min(gallery_size, len(test))).round().astype(int)
        shown = np.unique(shown)
        items = []
        for k in shown:
            row = per_image[k]
            scores = {"type-I cos": row["type1_cosine"]}
            if metric == "euclidean":
                scores["type-I L2"] = row["type1_l2"]
            scores[f"type-I ok @{100 * thr_a[0].fmr:g}%"] = row[f"type1_accepted_fmr_{thr_a[0].fmr:g}"]
            scores["type-II cos"] = row["type2_mean_cosine"]
            scores[f"type-II ok @{100 * thr_a[0].fmr:g}%"] = (
                f"{round(row[f'type2_accept_rate_fmr_{thr_a[0].fmr:g}'] * row['type2_refs'])}/{row['type2_refs']}"
                if row["type2_refs"] else "n/a")
            scores["LPIPS"], scores["SSIM"] = row["lpips"], row["ssim"]
            items.append(GalleryItem(names[k], recon_u8[k], chips[k], scores))
        sar1 = results_a["type_I"]["sar"][f"{thr_a[0].fmr:g}"]
        sar2 = results_a["type_II"]["sar"][f"{thr_a[0].fmr:g}"]
        meta = {"checkpoint": f"{config['checkpoint']} (step {config['step']})",
                "held-out test images": f"{len(test)} ({test.name})",
                f"threshold @ FMR {thr_a[0].fmr:g}": f"{thr_a[0].describe()} ({thr_a[0].impostor_set} impostors, "
                                                    f"n = {thr_a[0].n_impostors})",
                f"type-I SAR @ FMR {thr_a[0].fmr:g}": _pct(sar1),
                f"type-II SAR @ FMR {thr_a[0].fmr:g}": _pct(sar2),
                "mean LPIPS / SSIM": f"{lp.mean():.4f} / {ss.mean():.4f}"}
        notes = [("original = target chip (the backbone's crop of the held-out image); type-II cos and ok: over the "
                 "other images of the same person (n/a for people with one image).")]
        write_grid(items, tmp / "gallery.png")
        write_html(items, tmp / "gallery.html", f"Decoder attack on {net_a.name}: held-out reconstructions",
                   meta, notes)
        results["seconds"] = round(time.perf_counter() - started, 1)
        write_json(tmp / "results.json", results)
    results["out"] = str(Path(out).absolute())
    return results


def _pct(rate: dict) -> str:
    if not rate["n"]:
        return "n/a"
    return f"{100 * rate['rate']:.1f}% [{100 * rate['ci_low']:.1f}, {100 * rate['ci_high']:.1f}] " \
           f"({rate['accepted']}/{rate['n']})"


def _threshold_block(scores: LFWScores, thresholds: list[FMRThreshold]) -> dict:
    return {"metric": scores.metric, "pairs_file": "pairs.txt (10 folds)", "n_pairs_used": scores.n_pairs,
            "n_genuine": len(scores.genuine), "n_impostor_pairs": len(scores.impostor_pairs),
            "n_impostor_cross": len(scores.impostor_cross), "n_images": scores.n_images,
            "n_identities": scores.n_identities,
            "cross_identity_set": "every unordered pair of distinct pair-file images with different LFW names",
            "at_fmr": {f"{t.fmr:g}": asdict(t) for t in thresholds}}


def _results_rows(results: dict) -> list[dict]:
    rows = []
    blocks = [("direct", results["attack"])] + ([("transfer", results["transfer"])] if results["transfer"] else [])
    for kind, block in blocks:
        thr = results["thresholds"][block["backbone"]]["at_fmr"]
        for attack in ("type_I", "type_II", "control_other_people", "framing_ceiling_type_I"):
            a = block.get(attack)
            if a is None:
                continue
            for fmr, rate in a["sar"].items():
                rows.append({"evaluation": kind, "backbone": block["backbone"],
                             "metric": "SAR" if attack != "control_other_people" else "accept_rate",
                             "attack": ATTACK_LABELS[attack], "fmr": float(fmr),
                             "value": rate["rate"],
                             "accepted": rate["accepted"], "n": rate["n"], "ci_low": rate["ci_low"],
                             "ci_high": rate["ci_high"], "threshold": rate["threshold"],
                             "impostor_set": thr[fmr]["impostor_set"], "n_impostors": thr[fmr]["n_impostors"],
                             "step": results["configuration"]["step"]})
            rows.append({"evaluation": kind, "backbone": block["backbone"], "metric": "mean_identity_cosine",
                         "attack": ATTACK_LABELS[attack], "fmr": None, "value": a["mean_cosine"], "accepted": None,
                         "n": a["n"], "ci_low": None, "ci_high": None, "threshold": None, "impostor_set": None,
                         "n_impostors": None, "step": results["configuration"]["step"]})
    q = results["image_quality"]
    for name in ("lpips", "ssim"):
        rows.append({"evaluation": "direct", "backbone": results["attack"]["backbone"], "metric": name.upper(),
                     "attack": None, "fmr": None, "value": q[f"{name}_mean"], "accepted": None, "n": q["n"],
                     "ci_low": None, "ci_high": None, "threshold": None, "impostor_set": None, "n_impostors": None,
                     "step": results["configuration"]["step"]})
    return rows


def _versions() -> dict:
    import lpips
    import skimage

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "scikit-image": skimage.__version__, "lpips": getattr(lpips, "__version__", "?")}


def format_table(results: dict) -> str:
    """A small text table of the SARs, thresholds and image figures."""
    lines = [(f"{'backbone':<18} {'attack':<8} {'FMR':>7} {'threshold':>16} {'impostors':>17} {'SAR':>7} "
             f"{'95% CI':>15} {'n':>6}")]
    blocks = [("", results["attack"])] + ([("transfer ", results["transfer"])] if results["transfer"] else [])
    for prefix, block in blocks:
        thr = results["thresholds"][block["backbone"]]["at_fmr"]
        for attack in ("type_I", "type_II", "control_other_people", "framing_ceiling_type_I"):
            if block.get(attack) is None:
                continue
            for fmr, rate in block[attack]["sar"].items():
                t = thr[fmr]
                shown = f"L2<={-t['threshold']:.4f}" if t["metric"] == "euclidean" else f"cos>={t['threshold']:.4f}"
                sar = "n/a" if rate["rate"] is None else f"{100 * rate['rate']:.1f}%"
                ci = "" if rate["ci_low"] is None else f"[{100 * rate['ci_low']:.1f}, {100 * rate['ci_high']:.1f}]"
                imp = f"{t['impostor_set']} {t['n_impostors']}"
                lines.append(f"{prefix + block['backbone']:<18} {ATTACK_LABELS[attack]:<8} "
                             f"{100 * float(fmr):>6g}% {shown:>16} {imp:>17} {sar:>7} {ci:>15} {rate['n']:>6}")
    a = results["attack"]
    q = results["image_quality"]
    cos2 = a["type_II"]["mean_cosine"]
    lines.append(f"mean identity cosine: type-I {a['type_I']['mean_cosine']:.4f}, type-II "
                 f"{'n/a' if cos2 is None else f'{cos2:.4f}'}; LPIPS {q['lpips_mean']:.4f}; SSIM {q['ssim_mean']:.4f} "
                 f"({q['n']} held-out images, {results['data']['n_test_identities']} people; type-II: "
                 f"{a['type_II']['n']} pairs from {a['type_II']['n_reconstructions']} reconstructions)")
    lines.append("control = a reconstruction compared with the templates of *other* held-out people: the rate at "
                 "which it passes as someone else (real images: about the FMR)"
                 + ("; ceiling = B on A's real target chips framed like the reconstructions" if results["transfer"]
                    else ""))
    tr = results["training"]
    lines.append(f"checkpoint step {results['configuration']['step']}; training time "
                 f"{tr.get('train_time_s', 'unknown')} s; evaluation {results['seconds']} s")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m decoders.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder (or a checkpoint inside it: split.json is needed)")
    p.add_argument("--data-root", help="folder holding lfw_home/ and utkface/ (default $FACEPROBE_DATA)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--backbone", help="refuse a checkpoint not trained against this backbone")
    p.add_argument("--weights", help="backbone A weights file, if training used one")
    p.add_argument("--backbone-b", help="second backbone for the transfer SAR")
    p.add_argument("--weights-b", help="weights file of --backbone-b")
    p.add_argument("--fmr", type=float, nargs="+", default=list(DEFAULT_FMRS), help="false match rates")
    p.add_argument("--impostors", choices=IMPOSTOR_SETS, default="auto",
                   help="impostor set for thresholds: mismatched pairs, all cross-identity pairs, or auto "
                        "(pairs when they resolve the FMR, else cross)")
    p.add_argument("--max-pairs", type=int, help="seeded subset of LFW pairs for the thresholds (quick runs)")
    p.add_argument("--max-images", type=int, help="seeded subsample of the held-out images")
    p.add_argument("--split", default="test", choices=("test", "val"))
    p.add_argument("--type2-references", default="lfw", choices=("lfw", "split"),
                   help="other images of a person: all of LFW's, or only the split's")
    p.add_argument("--type2-max-refs", type=int, default=10, help="per reconstruction (0 = all)")
    p.add_argument("--gallery-size", type=int, default=24)
    p.add_argument("--seed", type=int, default=0, help="subsampling seed")
    p.add_argument("--cache-dir", help="template cache folder ('none' disables; default $FACEPROBE_HOME/cache)")
    p.add_argument("--batch-size", type=int, default=64)
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
        results = evaluate(args.checkpoint, args.out, data_root=args.data_root, backbone_b=args.backbone_b,
                           weights_b=args.weights_b, max_images=args.max_images, fmrs=args.fmr,
                           impostors=args.impostors, max_pairs=args.max_pairs, split=args.split,
                           type2_references_from=args.type2_references, type2_max_refs=args.type2_max_refs,
                           overwrite=args.overwrite, device=args.device, backbone=args.backbone,
                           weights=args.weights, cache_dir=cache, gallery_size=args.gallery_size,
                           batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress,
                           command=[sys.executable, "-m", "decoders.evaluate"]
                           + list(sys.argv[1:] if argv is None else argv))
    except FaceprobeError as exc:
        print(f"decoders.evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    print(f"results: {Path(results['out']) / 'results.json'}, gallery: {Path(results['out']) / 'gallery.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
