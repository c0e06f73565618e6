"""Draw faces from templates with a trained decoder: ``python -m decoders.reconstruct``.

Inputs are one of: a folder of images (``--images DIR``, with ``--layout``
saying how they are framed), a data set of the run (``--dataset lfw|utkface``
with ``--split test|val`` from the run's ``split.json``, or ``all``), or raw
templates (``--templates file.npy``, N x d float). Images are embedded by the
checkpoint's own backbone (templates and target chips come through
:func:`decoders.dfd.templates.compute_targets`, so they are cached).

``--out`` receives ``reconstructions/<source name>.png`` (one per input,
uint8 RGB at the decoder's size), ``scores.csv``, ``gallery.png``,
``gallery.html`` (self-contained: images embedded as base64) and
``reconstruct.json`` (configuration and mean scores). Scores per input:
identity cosine and L2 distance between the source template and the
template of the reconstruction (the PNG as saved, fed to the backbone as a
``chip``), and LPIPS (AlexNet) between the reconstruction and the target chip
(the backbone's crop of the source image) -- no original, no LPIPS.

An existing non-empty ``--out`` is refused unless ``--overwrite``; results are
written into a temporary folder beside it and moved into place only when
complete, so a refusal or a failure midway loses nothing.

    python -m decoders.reconstruct --checkpoint runs/dfd --dataset lfw --split test --out recon/
    python -m decoders.reconstruct --checkpoint runs/dfd/checkpoints/latest.pt --templates t.npy --out recon/
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from probes.cli import DefaultsHelpFormatter
from probes.datasets import LAYOUTS, FaceDataset
from probes.errors import DatasetError, FaceprobeError
from probes.images import save_png, to_uint8
from probes.outputs import check_output_folder, finite_or_none, staged_output, write_csv, write_json
from probes.training.checkpoints import CheckpointError, seed_everything

from .dfd.checkpoint import load_decoder
from .dfd.gallery import GalleryItem, write_grid, write_html
from .dfd.model import FaceDecoder, TemplateError
from .dfd.templates import cache_dir_option, compute_targets, weights_key


class ReconstructionError(FaceprobeError, ValueError):
    """Arguments of a reconstruction or evaluation that cannot be used."""


# --------------------------------------------------------------------------- checkpoint and backbone


def run_folder(config: dict) -> Path:
    """The run folder of a checkpoint loaded by :func:`load_decoder` (``RUN/checkpoints/x.pt`` -> ``RUN``)."""
    ckpt = Path(config["checkpoint"])
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def load_trained_decoder(checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[FaceDecoder, dict]:
    """:func:`decoders.dfd.checkpoint.load_decoder`, also reading checkpoints saved before the decoder had
    its ``center``/``spread`` normalisation buffers (they are then the identity: zeros and ones)."""
    try:
        return load_decoder(checkpoint, device)
    except CheckpointError as exc:
        if "center" not in str(exc) and "spread" not in str(exc):
            raise
        first = exc
    from probes.training.checkpoints import load_checkpoint

    from .dfd.model import DecoderConfig

    state = load_checkpoint(checkpoint)
    config = state["config"]
    weights = dict(state["models"]["decoder"])
    try:
        decoder = FaceDecoder(DecoderConfig.from_dict(config["decoder"]))
    except (KeyError, FaceprobeError):
        raise first from None
    if decoder.config.standardise or not {"center", "spread"}.isdisjoint(weights):
        raise first
    weights["center"], weights["spread"] = decoder.center.clone(), decoder.spread.clone()
    try:
        decoder.load_state_dict(weights)
    except RuntimeError:
        raise first from None
    config = dict(config, step=state["step"], checkpoint=state["path"])
    return decoder.to(device).eval(), config


def check_backbone_name(config: dict, name: str | None = None) -> str:
    """The checkpoint's backbone name; a :class:`CheckpointError` when it is not ``name`` (if given)."""
    trained = (config.get("backbone") or {}).get("name")
    where = config.get("checkpoint", "the checkpoint")
    if not trained:
        raise CheckpointError(f"{where} does not record its backbone (config['backbone']['name'])")
    if name is not None and name != trained:
        raise CheckpointError(f"{where} decodes templates of backbone {trained!r}, not {name!r} (asked with "
                              f"--backbone); use a checkpoint trained against {name!r}")
    return trained


def rebuild_backbone(config: dict, name: str | None = None, weights: str | Path | None = None,
                     device: str | torch.device = "cpu"):
    """The backbone a decoder checkpoint was trained against, checked to be the same network.

    ``name`` (optional) is what the caller expects; a checkpoint of another
    backbone raises :class:`CheckpointError`. Random-init backbones (tests)
    are rebuilt from the run's seed; either way the weights must hash to the
    checkpoint's ``weights_key``.
    """
    from probes.backbones import create_backbone

    info = config.get("backbone") or {}
    trained = check_backbone_name(config, name)
    where = config.get("checkpoint", "the checkpoint")
    cli = config.get("cli") or {}
    if cli.get("random_backbone"):
        # The training command seeded everything right before building the random net.
        seed_everything(int(cli.get("seed", 0)))
        backbone = create_backbone(trained, device="cpu", pretrained=False)
    else:
        backbone = create_backbone(trained, weights if weights is not None else info.get("weights_file"),
                                   device="cpu")
    key = weights_key(backbone)
    expected = info.get("weights_key")
    if expected and key != expected:
        raise CheckpointError(f"{where} was trained against {trained!r} weights {expected[:16]}..., but the "
                              f"weights loaded now are {key[:16]}...; pass the training weights with --weights")
    return backbone.to(device).requires_grad_(False).eval()


# --------------------------------------------------------------------------- inputs


def check_templates(templates, embedding_size: int, source: str) -> np.ndarray:
    """``templates`` as an N x d float32 array, or a :class:`TemplateError` naming ``source``."""
    array = np.asarray(templates)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TemplateError(f"{source}: templates must be a numeric N x {embedding_size} array, got "
                            f"{array.dtype} of shape {array.shape}")
    if array.shape[1] != embedding_size:
        raise TemplateError(f"{source}: templates have dimension {array.shape[1]}, but the checkpoint decodes "
                            f"{embedding_size}-D templates")
    if len(array) == 0:
        raise TemplateError(f"{source}: no templates (0 rows)")
    array = array.astype(np.float32)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise TemplateError(f"{source}: {len(rows)} template(s) contain NaN or infinite values (rows "
                            f"{', '.join(map(str, rows[:10]))}{' ...' if len(rows) > 10 else ''})")
    return array


def load_templates_file(path: str | Path, embedding_size: int) -> np.ndarray:
    """Read an ``.npy`` file of N x d templates (no pickles) and check it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TemplateError(f"templates file {path} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise TemplateError(f"{path} is not a readable .npy array of templates: {exc}") from exc
    if not isinstance(array, np.ndarray):
        raise TemplateError(f"{path} holds several arrays (.npz?); save one N x d array with numpy.save")
    return check_templates(array, embedding_size, str(path))


def _rebase(paths: Sequence[str], recorded_root: str | None, data_root: str | Path | None) -> list[Path]:
    """Paths recorded under the run's data root, moved under ``data_root`` when they are missing."""
    out = []
    for p in map(Path, paths):
        if not p.exists() and data_root is not None and recorded_root:
            with contextlib.suppress(ValueError):  # not under the recorded root: keep it as it is
                p = Path(data_root) / p.relative_to(recorded_root)
        out.append(p)
    return out


def split_dataset(config: dict, part: str, split: str = "test", data_root: str | Path | None = None) -> FaceDataset:
    """The ``split`` (``test``/``val``) images of data set ``part`` (``lfw``/``utkface``) of a run.

    Read from the run's ``split.json``; LFW images carry identity = folder
    name. Paths are moved under ``data_root`` when the recorded ones are gone.
    """
    run = run_folder(config)
    split_file = run / (config.get("data") or {}).get("split_file", "split.json")
    if not split_file.is_file():
        raise DatasetError(f"{split_file} does not exist: the held-out images of a run come from the split file "
                           "its training wrote into the run folder (pass the run folder, or a checkpoint inside it)")
    try:
        record = json.loads(split_file.read_text())
        parts = record["parts"]
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"{split_file} is not a readable split file: {exc}") from exc
    if part not in parts:
        raise DatasetError(f"the run in {run} did not use {part!r} (its data: {', '.join(parts) or 'none'})")
    entry = parts[part]
    if split not in ("test", "val"):
        raise ReconstructionError(f"--split must be 'test' or 'val' for a run's held-out images, got {split!r}")
    paths = entry.get(split, {}).get("paths") or []
    if not paths:
        raise DatasetError(f"{split_file}: the {split} split of {part!r} has no images")
    root = data_root if data_root is not None else os.environ.get("FACEPROBE_DATA")
    rebased = _rebase(paths, (config.get("data") or {}).get("data_root"), root)
    missing = [str(p) for p in rebased if not p.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} {split} image(s) of {split_file} are missing, e.g. {missing[0]}; "
                           "pass --data-root <folder holding lfw_home/ and utkface/> if the data moved")
    labels = {"identity": [p.parent.name for p in rebased]} if part == "lfw" else None
    return FaceDataset(f"{part}-{split}", rebased, labels, layout=entry.get("layout", part),
                       label_source={"identity": "LFW folder name"} if labels else None)


def dataset_input(config: dict, name: str, split: str, data_root: str | Path | None) -> FaceDataset:
    """``--dataset``: the run's held-out split, or (``split='all'``) the whole data set."""
    if split == "all":
        import warnings

        from probes.datasets import load_lfw_people, load_utkface

        root = data_root if data_root is not None else (os.environ.get("FACEPROBE_DATA")
                                                       or (config.get("data") or {}).get("data_root") or None)
        if name == "lfw":
            return load_lfw_people(root)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="UTKFace: skipped")
            return load_utkface(root)
    return split_dataset(config, name, split, data_root)


def source_names(paths: Sequence[str | Path], root: str | Path | None = None) -> list[str]:
    """File-name-safe, unique names after the sources (relative path without suffix, '/' -> '__')."""
    names, seen = [], {}
    for p in map(Path, paths):
        try:
            rel = p.relative_to(root) if root is not None else Path(p.name)
        except ValueError:
            rel = Path(p.name)
        stem = str(rel.with_suffix("")) if rel.suffix else str(rel)
        stem = stem.replace(os.sep, "__").replace("/", "__") or "image"
        stem = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in stem)
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(stem if count == 0 else f"{stem}-{count}")
    return names


# --------------------------------------------------------------------------- decoding and scores


@torch.no_grad()
def decode(decoder: FaceDecoder, templates: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """Reconstructions of N x d templates: N x 3 x S x S float in [0, 1], on the CPU."""
    device = next(decoder.parameters()).device
    was = decoder.training
    decoder.eval()
    try:
        out = [decoder(torch.as_tensor(np.asarray(templates[i:i + batch_size]), dtype=torch.float32,
                                       device=device)).float().cpu()
               for i in range(0, len(templates), batch_size)]
    finally:
        decoder.train(was)
    return torch.cat(out)


@torch.no_grad()
def embed_chips(backbone, images_u8: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Templates of decoder-sized chips (uint8 N x S x S x 3) through ``backbone.forward(x, "chip")``.

    The same path as training's identity loss and validation, whatever the
    decoder size (``FaceBackbone.embed`` may refuse chips far below the
    network's input size; a 64 px decoder is still a valid configuration).
    """
    device = next(backbone.parameters()).device
    was = backbone.training
    backbone.eval()
    out = []
    try:
        for i in range(0, len(images_u8), batch_size):
            x = torch.from_numpy(np.array(images_u8[i:i + batch_size])).to(device).permute(0, 3, 1, 2).float() / 255
            out.append(backbone(x, "chip").float().cpu())
    finally:
        backbone.train(was)
    if not out:
        return np.zeros((0, backbone.spec.embedding_size), np.float32)
    return torch.cat(out).numpy()


def identity_scores(backbone, recon_u8: np.ndarray, templates: np.ndarray, batch_size: int = 64) -> dict:
    """Template of each reconstruction (fed as a ``chip``) against ``templates``: cosine, L2, and the
    backbone's verification score (cosine, or -L2 for distance-rule nets)."""
    from probes.verification import pair_scores

    emb = embed_chips(backbone, recon_u8, batch_size)
    cosine = pair_scores(emb, templates, "cosine")
    l2 = -pair_scores(emb, templates, "euclidean")
    metric = backbone.spec.verification_metric
    return {"embeddings": emb, "cosine": cosine, "l2": l2, "score": cosine if metric == "cosine" else -l2}


def lpips_scores(recon_u8: np.ndarray, originals_u8: np.ndarray, net: str = "alex",
                 device: str | torch.device = "cpu", batch_size: int = 32) -> np.ndarray:
    """LPIPS (``probes.perceptual``) between each reconstruction and its original, both uint8 N x H x W x 3."""
    from probes.perceptual import perceptual_distance

    out = []
    with torch.no_grad():
        for i in range(0, len(recon_u8), batch_size):
            # np.array copies: the originals may be a read-only memory map of the template cache.
            a = torch.from_numpy(np.array(recon_u8[i:i + batch_size])).permute(0, 3, 1, 2).float() / 255
            b = torch.from_numpy(np.array(originals_u8[i:i + batch_size])).permute(0, 3, 1, 2).float() / 255
            out.append(perceptual_distance(a, b, net=net, device=device).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


# --------------------------------------------------------------------------- the command as a function


def reconstruct(checkpoint: str | Path, out: str | Path, images: str | Path | None = None,
                dataset: str | None = None, split: str = "test", templates: str | Path | None = None,
                layout: str = "chip", overwrite: bool = False, max_images: int | None = None,
                device: str = "cpu", backbone: str | None = None, weights: str | Path | None = None,
                data_root: str | Path | None = None, cache_dir: str | Path | None | bool = None,
                lpips: bool = True, gallery_size: int = 48, batch_size: int = 64,
                progress: bool = True, command: Sequence[str] | None = None) -> dict:
    """Reconstruct every input, write PNGs, scores and a gallery into ``out``; return the summary.

    Exactly one of ``images`` (folder), ``dataset`` (``lfw``/``utkface``) and
    ``templates`` (``.npy``) is given. ``max_images`` keeps the first N inputs.
    """
    started = time.perf_counter()
    given = [k for k, v in (("--images", images), ("--dataset", dataset), ("--templates", templates)) if v is not None]
    if len(given) != 1:
        raise ReconstructionError(f"give exactly one of --images, --dataset and --templates (got "
                                  f"{', '.join(given) or 'none'})")
    if max_images is not None and max_images <= 0:
        raise ReconstructionError(f"--max-images must be positive, got {max_images}")
    if layout not in LAYOUTS:
        raise ReconstructionError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if gallery_size < 1:
        raise ReconstructionError(f"--gallery-size must be positive, got {gallery_size}")
    check_output_folder(out, overwrite)  # refuse before any work

    decoder, config = load_trained_decoder(checkpoint, device)
    check_backbone_name(config, backbone)
    d, size = decoder.config.embedding_size, decoder.config.image_size
    source: dict = {}
    if templates is not None:
        t = load_templates_file(templates, d)  # checked before the backbone is built
        if max_images is not None:
            t = t[:max_images]
        net = rebuild_backbone(config, backbone, weights, device)
        names = [f"template_{i:05d}" for i in range(len(t))]
        originals, paths, source = None, [None] * len(t), {"templates": str(Path(templates).absolute())}
    else:
        net = rebuild_backbone(config, backbone, weights, device)
        if images is not None:
            from probes.datasets import load_folder

            ds = load_folder(images, layout=layout)
            root = Path(images)
            source = {"images": str(Path(images).absolute()), "layout": layout}
        else:
            if dataset not in ("lfw", "utkface"):
                raise ReconstructionError(f"--dataset must be 'lfw' or 'utkface', got {dataset!r}")
            ds = dataset_input(config, dataset, split, data_root)
            root = None
            source = {"dataset": dataset, "split": split, "layout": ds.layout}
        if max_images is not None and max_images < len(ds):
            ds = ds.subset(np.arange(max_images))
        targets = compute_targets(net, ds, size, cache_dir=cache_dir, progress=progress)
        t = check_templates(targets.templates, d, f"templates of {ds.name} from {net.name}")
        originals = np.asarray(targets.images)
        paths = [str(p) for p in ds.paths]
        names = source_names(ds.paths, root)
    source["n"] = len(t)

    with staged_output(out, overwrite) as tmp:
        recon_u8 = to_uint8(decode(decoder, t, batch_size))
        ident = identity_scores(net, recon_u8, t, batch_size)
        lp = (lpips_scores(recon_u8, originals, device=device) if lpips and originals is not None
              else np.full(len(t), np.nan))
        (tmp / "reconstructions").mkdir()
        rows = []
        for i, name in enumerate(names):
            save_png(recon_u8[i], tmp / "reconstructions" / f"{name}.png")
            rows.append({"name": name, "source": paths[i] or "", "reconstruction": f"reconstructions/{name}.png",
                         "identity_cosine": float(ident["cosine"][i]), "l2": float(ident["l2"][i]),
                         "lpips": float(lp[i])})
        write_csv(tmp / "scores.csv", rows)
        shown = range(min(gallery_size, len(t)))
        items = [GalleryItem(names[i], recon_u8[i], originals[i] if originals is not None else None,
                             {"cosine": ident["cosine"][i], "L2": ident["l2"][i],
                              **({"LPIPS": lp[i]} if originals is not None and lpips else {})})
                 for i in shown]
        means = {"identity_cosine": finite_or_none(np.mean(ident["cosine"])),
                 "l2": finite_or_none(np.mean(ident["l2"])),
                 "lpips": finite_or_none(np.nanmean(lp)) if np.isfinite(lp).any() else None}
        title = f"Reconstructions: {config['backbone']['name']} decoder, step {config['step']}"
        meta = {"checkpoint": config["checkpoint"], "inputs": json.dumps(source),
                "mean identity cosine": f"{means['identity_cosine']:.4f}", "mean L2": f"{means['l2']:.4f}",
                "mean LPIPS (alex)": "n/a" if means["lpips"] is None else f"{means['lpips']:.4f}",
                "shown": f"{len(items)} of {len(t)}"}
        notes = [("original = the backbone's crop of the source image (the target chip the decoder learnt to draw); "
                 "cosine and L2 compare the source template with the template of the reconstruction as saved "
                 "(PNG, uint8), fed to the backbone as a chip; LPIPS (AlexNet, v0.1) compares the reconstruction "
                 "with the original.")]
        write_grid(items, tmp / "gallery.png")
        write_html(items, tmp / "gallery.html", title, meta, notes)
        summary = {
            "command": list(command) if command is not None else None,
            "checkpoint": config["checkpoint"], "step": config["step"], "checkpoint_config": config,
            "backbone": {"name": net.name, "weights_key": weights_key(net),
                         "verification_metric": net.spec.verification_metric},
            "inputs": source, "image_size": size, "device": str(device), "lpips_net": "alex" if lpips else None,
            "means": means, "n": len(t), "files": {"reconstructions": "reconstructions/", "scores": "scores.csv",
                                                   "grid": "gallery.png", "html": "gallery.html"},
            "seconds": round(time.perf_counter() - started, 2),
        }
        write_json(tmp / "reconstruct.json", summary)
    summary["out"] = str(Path(out).absolute())
    return summary


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m decoders.reconstruct", description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder (its checkpoints/latest.pt) or a .pt file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of images (recursive)")
    src.add_argument("--dataset", choices=("lfw", "utkface"), help="a data set of the run (see --split)")
    src.add_argument("--templates", help=".npy file of N x d templates")
    p.add_argument("--split", default="test", choices=("test", "val", "all"),
                   help="with --dataset: the run's held-out test/val images (split.json), or all images")
    p.add_argument("--layout", default="chip", choices=LAYOUTS,
                   help="with --images: how the images are framed (chip = already the backbone's crop)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--max-images", type=int, help="reconstruct only the first N inputs")
    p.add_argument("--backbone", help="refuse a checkpoint that was not trained against this backbone")
    p.add_argument("--weights", help="backbone weights file, if training used one")
    p.add_argument("--data-root", help="folder holding lfw_home/ and utkface/ (default $FACEPROBE_DATA)")
    p.add_argument("--cache-dir", help="template cache folder ('none' disables; default $FACEPROBE_HOME/cache)")
    p.add_argument("--gallery-size", type=int, default=48, help="inputs shown in the gallery")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        summary = reconstruct(args.checkpoint, args.out, images=args.images, dataset=args.dataset,
                              split=args.split, templates=args.templates, layout=args.layout,
                              overwrite=args.overwrite, max_images=args.max_images, device=args.device,
                              backbone=args.backbone, weights=args.weights, data_root=args.data_root,
                              cache_dir=cache_dir_option(args.cache_dir), lpips=not args.no_lpips,
                              gallery_size=args.gallery_size, batch_size=args.batch_size,
                              progress=not args.no_progress,
                              command=[sys.executable, "-m", "decoders.reconstruct"]
                              + list(sys.argv[1:] if argv is None else argv))
    except FaceprobeError as exc:
        print(f"decoders.reconstruct: error: {exc}", file=sys.stderr)
        return 2
    m = summary["means"]
    lp = "n/a" if m["lpips"] is None else f"{m['lpips']:.4f}"
    print(f"{summary['n']} reconstructions in {summary['out']} ({summary['seconds']} s); mean identity cosine "
          f"{m['identity_cosine']:.4f}, mean L2 {m['l2']:.4f}, mean LPIPS {lp}; gallery: "
          f"{Path(summary['out']) / 'gallery.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
