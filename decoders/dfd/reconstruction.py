"""Faces drawn from templates by a trained decoder, with identity and LPIPS scores, and a gallery.

``Reconstruction(ReconstructionConfig(checkpoint, images=...)).run()`` returns a
:class:`ReconstructionResult`; its :meth:`~ReconstructionResult.save` writes
``reconstructions/<source name>.png``, ``scores.csv``, ``gallery.png``, ``gallery.html`` and
``reconstruct.json`` into a folder (see ``python -m decoders.reconstruct``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probes.config import DictConfig
from probes.datasets import LAYOUTS, load_folder
from probes.images import list_image_files, save_png, to_uint8
from probes.outputs import finite_or_none, write_csv, write_json

from .gallery import GalleryItem, write_grid, write_html
from .inputs import (
    check_backbone_name,
    check_templates,
    dataset_input,
    load_templates_file,
    load_trained_decoder,
    rebuild_backbone,
    source_names,
)
from .photos import aligned_photos
from .scoring import decode, identity_scores, lpips_scores
from .settings import ReconstructionError, check_choice, check_positive, setting_error
from .templates import compute_targets, weights_key

INPUT_KINDS = ("images", "dataset", "templates")
PHOTO_LAYOUT = "photo"  # uncropped photos: each face detected and aligned (decoders.dfd.photos)
IMAGE_LAYOUTS = (*LAYOUTS, PHOTO_LAYOUT)
RUN_DATASETS = ("lfw", "utkface")
GALLERY_NOTE = ("original = the backbone's crop of the source image (the target chip the decoder learnt to draw); "
                "cosine and L2 compare the source template with the template of the reconstruction as saved "
                "(PNG, uint8), fed to the backbone as a chip; LPIPS (AlexNet, v0.1) compares the reconstruction "
                "with the original.")


@dataclass(frozen=True)
class ReconstructionConfig(DictConfig):
    """What to reconstruct: exactly one of ``images`` (a folder framed as ``layout``; ``photo``: uncropped
    photos, each face detected and aligned), ``dataset``
    (``lfw``/``utkface`` of the run: its ``split`` test/val, or ``all``) and ``templates`` (``.npy``).

    ``max_images`` keeps the first N inputs; ``backbone`` (optional) refuses a checkpoint of another
    network; ``cache_dir`` as :func:`decoders.dfd.templates.compute_targets` takes it.
    """

    config_name = "reconstruction"
    config_error = ReconstructionError

    checkpoint: str | Path
    images: str | Path | None = None
    dataset: str | None = None
    split: str = "test"
    templates: str | Path | None = None
    layout: str = "chip"
    max_images: int | None = None
    backbone: str | None = None
    weights: str | Path | None = None
    data_root: str | Path | None = None
    cache_dir: str | Path | None | bool = None
    lpips: bool = True
    gallery_size: int = 48
    batch_size: int = 64
    device: str = "cpu"
    progress: bool = True


@dataclass
class ReconstructionResult:
    """Reconstructions (uint8 N x S x S x 3) of named inputs, their scores, and what they came from."""

    names: list[str]
    sources: list[str | None]  # source image path, None for a template input
    reconstructions: np.ndarray
    originals: np.ndarray | None  # target chips, None for template inputs
    cosine: np.ndarray
    l2: np.ndarray
    lpips: np.ndarray  # NaN where not measured
    summary: dict  # reconstruct.json without its "command"
    gallery_size: int = 48  # inputs shown in the gallery (the first ones)

    @property
    def means(self) -> dict:
        return self.summary["means"]

    def save(self, folder: str | Path, command: list[str] | None = None) -> None:
        """Write the PNGs, ``scores.csv``, ``gallery.png``, ``gallery.html`` and ``reconstruct.json``."""
        folder = Path(folder)
        (folder / "reconstructions").mkdir()
        rows = []
        for i, name in enumerate(self.names):
            save_png(self.reconstructions[i], folder / "reconstructions" / f"{name}.png")
            rows.append({"name": name, "source": self.sources[i] or "", "reconstruction": f"reconstructions/{name}.png",
                         "identity_cosine": float(self.cosine[i]), "l2": float(self.l2[i]),
                         "lpips": float(self.lpips[i])})
        write_csv(folder / "scores.csv", rows)
        items = self.gallery_items()
        config = self.summary["checkpoint_config"]
        means = self.means
        meta = {"checkpoint": config["checkpoint"], "inputs": json.dumps(self.summary["inputs"]),
                "mean identity cosine": f"{means['identity_cosine']:.4f}", "mean L2": f"{means['l2']:.4f}",
                "mean LPIPS (alex)": "n/a" if means["lpips"] is None else f"{means['lpips']:.4f}",
                "shown": f"{len(items)} of {len(self.names)}"}
        write_grid(items, folder / "gallery.png")
        write_html(items, folder / "gallery.html", f"Reconstructions: {config['backbone']['name']} decoder, step "
                   f"{config['step']}", meta, [GALLERY_NOTE])
        write_json(folder / "reconstruct.json", {"command": command, **self.summary})

    def gallery_items(self) -> list[GalleryItem]:
        shown = range(min(self.gallery_size, len(self.names)))
        with_lpips = self.originals is not None and self.summary["lpips_net"] is not None
        return [GalleryItem(self.names[i], self.reconstructions[i],
                            self.originals[i] if self.originals is not None else None,
                            {"cosine": self.cosine[i], "L2": self.l2[i], **({"LPIPS": self.lpips[i]} if with_lpips
                                                                              else {})})
                for i in shown]


class Reconstruction:
    """Decode every input of a :class:`ReconstructionConfig` and score the drawings."""

    def __init__(self, config: ReconstructionConfig):
        self.config = config

    def check_settings(self) -> None:
        """The settings' own errors, before anything is loaded (``run`` checks them too)."""
        c = self.config
        given = [k for k in INPUT_KINDS if getattr(c, k) is not None]
        if len(given) != 1:
            got = ", ".join("{" + k + "}" for k in given) or "none"
            raise setting_error(ReconstructionError, "give exactly one of {images}, {dataset} and {templates} (got "
                                + got + ")")
        check_positive(ReconstructionError, "max_images", c.max_images)
        check_choice(ReconstructionError, "layout", c.layout, IMAGE_LAYOUTS)
        check_positive(ReconstructionError, "gallery_size", c.gallery_size)

    def run(self) -> ReconstructionResult:
        started = time.perf_counter()
        self.check_settings()
        c = self.config
        decoder, config = load_trained_decoder(c.checkpoint, c.device)
        check_backbone_name(config, c.backbone)
        if c.templates is not None:
            templates = load_templates_file(c.templates, decoder.config.embedding_size)  # before the backbone
            if c.max_images is not None:
                templates = templates[:c.max_images]
            net = rebuild_backbone(config, c.backbone, c.weights, c.device)
            names = [f"template_{i:05d}" for i in range(len(templates))]
            originals, sources = None, [None] * len(templates)
            inputs = {"templates": str(Path(c.templates).absolute())}
        else:
            net = rebuild_backbone(config, c.backbone, c.weights, c.device)
            templates, originals, sources, names, inputs = self._image_inputs(config, net, decoder)
        inputs["n"] = len(templates)
        recon_u8 = to_uint8(decode(decoder, templates, c.batch_size))
        ident = identity_scores(net, recon_u8, templates, c.batch_size)
        lpips = (lpips_scores(recon_u8, originals, device=c.device) if c.lpips and originals is not None
                 else np.full(len(templates), np.nan))
        means = {"identity_cosine": finite_or_none(np.mean(ident["cosine"])),
                 "l2": finite_or_none(np.mean(ident["l2"])),
                 "lpips": finite_or_none(np.nanmean(lpips)) if np.isfinite(lpips).any() else None}
        summary = {
            "checkpoint": config["checkpoint"], "step": config["step"], "checkpoint_config": config,
            "backbone": {"name": net.name, "weights_key": weights_key(net),
                         "verification_metric": net.spec.verification_metric},
            "inputs": inputs, "image_size": decoder.config.image_size, "device": str(c.device),
            "lpips_net": "alex" if c.lpips else None, "means": means, "n": len(templates),
            "files": {"reconstructions": "reconstructions/", "scores": "scores.csv", "grid": "gallery.png",
                      "html": "gallery.html"},
            "seconds": round(time.perf_counter() - started, 2),
        }
        return ReconstructionResult(names, sources, recon_u8, originals, ident["cosine"], ident["l2"], lpips, summary,
                                    c.gallery_size)

    def _image_inputs(self, config: dict, net, decoder) -> tuple:
        """(templates, target chips, source paths, names, inputs record) of an image folder or a run's data set."""
        c = self.config
        sources = None
        if c.images is not None and c.layout == PHOTO_LAYOUT:
            root = Path(c.images)
            photos = aligned_photos(list_image_files(root)[:c.max_images], net, cache_dir=c.cache_dir,
                                    name=root.name or "photos")
            dataset, sources = photos.dataset, photos.sources
            inputs = {"images": str(root.absolute()), "layout": c.layout,
                      "detection": f"probes.align.detect_and_align (largest face) onto {net.name}'s template",
                      "photos_without_face": [str(p) for p in photos.missing]}
        elif c.images is not None:
            dataset = load_folder(c.images, layout=c.layout)
            root = Path(c.images)
            inputs = {"images": str(Path(c.images).absolute()), "layout": c.layout}
        else:
            if c.dataset not in RUN_DATASETS:
                raise setting_error(ReconstructionError, "{dataset} must be 'lfw' or 'utkface', got {got!r}",
                                    got=c.dataset)
            dataset = dataset_input(config, c.dataset, c.split, c.data_root)
            root = None
            inputs = {"dataset": c.dataset, "split": c.split, "layout": dataset.layout}
        if c.max_images is not None and c.max_images < len(dataset):
            dataset = dataset.subset(np.arange(c.max_images))
        targets = compute_targets(net, dataset, decoder.config.image_size, cache_dir=c.cache_dir, progress=c.progress)
        templates = check_templates(targets.templates, decoder.config.embedding_size,
                                    f"templates of {dataset.name} from {net.name}")
        sources = sources or dataset.paths
        return (templates, np.asarray(targets.images), [str(p) for p in sources], source_names(sources, root), inputs)
