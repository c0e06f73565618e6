"""The perturbation analysis of the Deep Face Decoder paper (Križaj et al., EAAI 2024), with reconstructions.

Held-out faces are rotated, shifted, scaled, occluded, noised and attacked (FGSM, PGD) in the frame
the backbone reads (:class:`probes.template_drift.TemplateDrift` measures the template drift); the
decoder then draws each perturbed template, showing what the template still holds.
``PerturbationAnalysis(PerturbationConfig(checkpoint)).run()`` returns a
:class:`~decoders.dfd.perturbation_result.PerturbationResult`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from probes.cli import setting_error
from probes.config import DictConfig
from probes.datasets import LAYOUTS, FaceDataset, load_folder, subsample_indices
from probes.images import load_image, to_uint8
from probes.outputs import json_records, provenance
from probes.template_drift import (
    DEFAULT_POSITIONS,
    FAMILIES,
    PADDINGS,
    PerturbationError,
    TemplateDrift,
    check_positions,
    failure_strengths,
    get_family,
    summarise,
)
from probes.verification import pair_scores, thresholds_at_fmrs

from .inputs import heldout_sets, load_trained_decoder, rebuild_backbone, run_folder, source_names
from .lfw_scores import lfw_pair_scores
from .perturbation_result import CleanDrawings, FamilyDrift, PerturbationResult
from .scoring import decode, embed_chips
from .settings import check_choice, check_positive
from .templates import weights_key


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
                raise setting_error(PerturbationError, "{strengths} takes FAMILY=v1,v2,... (e.g. rotation=0,10,20), "
                                    "got {got!r}", got=item)
            try:
                pairs.append((name.strip(), [float(v) for v in values.split(",") if v.strip()]))
            except ValueError:
                raise setting_error(PerturbationError, "{strengths} {got!r}: values must be numbers separated by "
                                    "commas", got=item) from None
    return {name: get_family(name).check(values) for name, values in pairs}


def check_families(families: Sequence[str] | None) -> list[str]:
    """``families`` without repeats, each a known family (all of them when None)."""
    if families is None:
        return list(FAMILIES)
    families = list(dict.fromkeys(families))
    for name in families:
        get_family(name)
    if not families:
        raise PerturbationError(f"no families given; valid families: {', '.join(FAMILIES)}")
    return families


@dataclass(frozen=True)
class PerturbationConfig(DictConfig):
    """The faces (``images``, a folder framed as ``layout``; else the run's held-out ``split``; at most
    ``max_images``, seeded), the ``families`` measured at ``strengths`` (``FAMILY=v1,v2`` items or a
    mapping), the verification threshold (``threshold`` as a score, or at ``fmr`` on LFW pairs) and
    the drift's settings (:class:`~probes.template_drift.TemplateDrift`)."""

    config_name = "perturbation analysis"
    config_error = PerturbationError

    checkpoint: str | Path
    images: str | Path | None = None
    layout: str = "chip"
    split: str = "test"
    data_root: str | Path | None = None
    max_images: int | None = 50
    families: tuple[str, ...] | None = None
    strengths: Mapping[str, Sequence[float]] | Sequence[str] | None = None
    positions: tuple[str, ...] | None = None
    fmr: float = 1e-3
    threshold: float | None = None
    impostors: str = "auto"
    max_pairs: int | None = None
    pgd_steps: int = 10
    pgd_step_size: float | None = None
    padding: str = "zeros"
    fill: float = 0.0
    strip_images: int = 3
    seed: int = 0
    backbone: str | None = None
    weights: str | Path | None = None
    cache_dir: str | Path | None | bool = None
    batch_size: int = 32
    device: str = "cpu"
    progress: bool = True


@dataclass(frozen=True)
class CheckedSettings:
    """The families measured, their strengths (only those given) and the occlusion positions, checked."""

    families: list[str]
    strengths: dict[str, list[float]]
    positions: list[str]


class PerturbationAnalysis:
    """Runs a :class:`PerturbationConfig`; :meth:`run` returns a :class:`PerturbationResult`."""

    def __init__(self, config: PerturbationConfig):
        self.config = config

    def check_settings(self) -> CheckedSettings:
        """The settings' own errors, before anything is loaded (``run`` checks them too)."""
        c = self.config
        families = check_families(c.families)
        strengths = parse_strengths(c.strengths)
        unused = sorted(set(strengths) - set(families))
        if unused:
            raise setting_error(PerturbationError, "{strengths} given for {unused}, which is not among the families "
                                "measured ({measured})", unused=", ".join(unused), measured=", ".join(families))
        positions = check_positions(c.positions if c.positions is not None else DEFAULT_POSITIONS)
        check_positive(PerturbationError, "max_images", c.max_images)
        if c.strip_images < 0:
            raise setting_error(PerturbationError, "{strip_images} must be 0 or more, got {got}", got=c.strip_images)
        check_choice(PerturbationError, "layout", c.layout, LAYOUTS)
        check_choice(PerturbationError, "padding", c.padding, PADDINGS)
        if not 0 < c.fmr < 1:
            raise setting_error(PerturbationError, "{fmr} must lie in (0, 1), got {got}", got=c.fmr)
        return CheckedSettings(families, strengths, positions)

    def run(self) -> PerturbationResult:
        started = time.perf_counter()
        settings = self.check_settings()
        c = self.config
        decoder, config = load_trained_decoder(c.checkpoint, c.device)
        net = rebuild_backbone(config, c.backbone, c.weights, c.device)
        available = (load_folder(c.images, layout=c.layout) if c.images is not None
                     else heldout_sets(config, c.split, c.data_root, first_only=True)[0])
        faces = available.subset(subsample_indices(len(available), c.max_images, c.seed))
        images = [load_image(p) for p in faces.paths]
        names = source_names(faces.paths, c.images)
        threshold = self._threshold(net)
        drift = TemplateDrift(net, threshold["threshold"] if c.threshold is None else c.threshold, padding=c.padding,
                              fill=c.fill, pgd_steps=c.pgd_steps, pgd_step_size=c.pgd_step_size, seed=c.seed,
                              batch_size=c.batch_size, progress=c.progress)
        measured, seconds, clean = [], {}, None
        for family in settings.families:
            t0 = time.perf_counter()
            res = drift.run(images, family, settings.strengths.get(family), faces.layout,
                            settings.positions if family == "occlusion" else None, names, keep_images=c.strip_images)
            recon_u8 = self._score_drawings(decoder, net, res.templates, res.clean[res.table["image"].to_numpy()],
                                            res.table, drift.threshold)
            if clean is None and c.strip_images:
                clean = self._clean_drawings(decoder, net, res.clean[:c.strip_images], drift.threshold)
            measured.append(FamilyDrift(family, res.table, res.views, res.perturbed,
                                        {j: recon_u8[j] for j in res.perturbed}))
            seconds[family] = round(time.perf_counter() - t0, 1)
        table = pd.concat([m.table for m in measured], ignore_index=True)
        if "identity" in faces.attributes:  # intervals over people, not images
            table["person"] = np.asarray(faces.labels("identity"), dtype=str)[table["image"].to_numpy()]
        summary = summarise(table)
        results = self._results(config, (faces, len(available)), settings, drift, threshold,
                                decoder.config.image_size)
        results.update(
            summary=json_records(summary),
            verification_fails_at={"what": "smallest strength at which under half of the perturbed faces verify "
                                           "against their clean template (null: never among the strengths)",
                                   "perturbed": json_records(failure_strengths(summary)),
                                   "reconstruction": json_records(
                                       failure_strengths(summary, column="recon_verified_rate"))},
            files=None, seconds_per_family=seconds, seconds=round(time.perf_counter() - started, 1))
        plots = ["cosine"] + (["l2"] if drift.metric == "euclidean" else []) + ["verified", "recon_cosine"]
        return PerturbationResult(results, table, summary, measured, clean, plots)

    def _threshold(self, net) -> dict:
        """The verification threshold (``threshold``), where it comes from, and on what it rests."""
        c = self.config
        if c.threshold is not None:
            return {"threshold": float(c.threshold), "source": "given (--threshold)",
                    "metric": net.spec.verification_metric}
        lfw = lfw_pair_scores(net, c.data_root, c.cache_dir, c.max_pairs, c.seed, c.progress)
        thr = thresholds_at_fmrs(lfw, [c.fmr], c.impostors)[0]
        return dict(asdict(thr), source="LFW pairs.txt", n_pairs_used=lfw.n_pairs, describe=thr.describe())

    def _score_drawings(self, decoder, net, perturbed, clean, table: pd.DataFrame, threshold: float):
        """Draw the ``perturbed`` templates; add their scores against the ``clean`` ones (row by row) to
        ``table``; return the drawings (uint8)."""
        batch_size, metric = self.config.batch_size, net.spec.verification_metric
        recon_u8 = to_uint8(decode(decoder, perturbed, batch_size))
        emb = embed_chips(net, recon_u8, batch_size)
        table["recon_cosine"] = pair_scores(emb, clean, "cosine")
        table["recon_score"] = pair_scores(emb, clean, metric)
        table["recon_verified"] = table["recon_score"] >= threshold
        table["recon_cosine_perturbed"] = pair_scores(emb, perturbed, "cosine")
        return recon_u8

    def _clean_drawings(self, decoder, net, clean, threshold: float) -> CleanDrawings:
        batch_size = self.config.batch_size
        images = to_uint8(decode(decoder, clean, batch_size))
        emb = embed_chips(net, images, batch_size)
        return CleanDrawings(images, pair_scores(emb, clean, "cosine"),
                             pair_scores(emb, clean, net.spec.verification_metric) >= threshold)

    def _results(self, config: dict, faces: tuple[FaceDataset, int], settings: CheckedSettings,
                 drift: TemplateDrift, threshold: dict, decoder_size: int) -> dict:
        """``results.json``'s configuration, checkpoint config, data and threshold; ``faces``: the faces
        measured and how many there were before subsampling."""
        c = self.config
        dataset, n_available = faces
        net = drift.backbone
        families = settings.families
        configuration = {
            "checkpoint": config["checkpoint"], "run": str(run_folder(config)), "step": config["step"],
            "inputs": ({"images": str(Path(c.images).absolute()), "layout": c.layout} if c.images is not None else
                       {"split": c.split, "set": dataset.name, "layout": dataset.layout}),
            "data_root": str(c.data_root or os.environ.get("FACEPROBE_DATA", "")),
            "max_images": c.max_images, "subsample_seed": c.seed, "families": families,
            "strengths": {f: get_family(f).check(settings.strengths.get(f)) for f in families},
            "units": {f: get_family(f).unit for f in families},
            "occlusion_positions": settings.positions, "fmr": c.fmr, "impostors": c.impostors,
            "max_pairs": c.max_pairs, "drift": drift.config(), "strip_images": c.strip_images,
            "decoder_image_size": decoder_size,
            "reconstruction_input": "decoder output rounded to uint8 (as saved in a PNG), fed as a chip",
            "ci": "means: 95% t-interval over images; rates: 95% Wilson interval; figures: 95% bootstrap "
                  "(seaborn, 1000 resamples, seed 0)",
            "device": str(c.device), "threads": torch.get_num_threads(), "batch_size": c.batch_size,
            "backbone": {"name": net.name, "weights_id": net.weights_id, "weights_key": weights_key(net)},
            "versions": provenance(),
        }
        has_ids = "identity" in dataset.attributes
        return {"configuration": configuration, "checkpoint_config": config,
                "data": {"n_images": len(dataset), "n_available": n_available,
                         "n_identities": len(set(dataset.labels("identity"))) if has_ids else None},
                "threshold": threshold}
