"""A trained decoder as a template-inversion attack on the run's held-out people.

``AttackEvaluation(AttackEvaluationConfig(checkpoint)).run()`` returns an
:class:`~decoders.dfd.attack_result.AttackResult`: success attack rates (type-I: a reconstruction
against its own source's template; type-II: against other images of the same person) at LFW
thresholds, a control against other people, LPIPS/SSIM, and with ``backbone_b`` the transfer to a
second network (see ``python -m decoders.evaluate`` for the protocol).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from probes.backbones import FaceBackbone, create_backbone
from probes.cli import setting_error
from probes.config import DictConfig
from probes.datasets import LAYOUTS, FaceDataset, load_lfw_people, subsample_indices
from probes.images import to_uint8
from probes.outputs import finite_or_none, provenance
from probes.verification import (
    IMPOSTOR_SETS,
    AttackRate,
    FMRThreshold,
    LFWScores,
    blocked_scores,
    pair_scores,
    success_attack_rate,
    thresholds_at_fmrs,
)

from .attack_result import LEAK_GALLERY_NOTE, PHOTOS_GALLERY_NOTE, AttackResult, image_keys, per_image_rows
from .inputs import heldout_sets, load_trained_decoder, rebuild_backbone, run_folder
from .leaked import Leak, read_leak
from .lfw_scores import folder_scores, folder_threshold_record, lfw_pair_scores, threshold_record
from .photos import aligned_people
from .scoring import decode, identity_scores, lpips_scores, ssim_scores
from .settings import ReconstructionError, check_choice, check_positive
from .templates import Targets, compute_targets, weights_key
from .transfer import frame_sizes, transfer_embeddings

DEFAULT_FMRS = (1e-3, 1e-4)
TYPE2_SOURCES = ("lfw", "split")


@dataclass(frozen=True)
class AttackEvaluationConfig(DictConfig):
    """The attack on a decoder run: thresholds at ``fmrs`` from LFW pairs (``impostors``: auto, pairs or
    cross; ``max_pairs`` a seeded subset), the run's held-out ``split`` (``max_images`` a seeded subset),
    type-II references from ``type2_references`` (``lfw`` or ``split``; at most ``type2_max_refs`` per
    reconstruction, 0 or None = all), and optionally the transfer to ``backbone_b``.

    Leaked templates instead of the run's images: ``templates`` (an ``.npy`` file of N x d templates) with
    ``identities`` (a CSV, one row per template: ``identity`` and ``enrolment`` image paths; see
    :mod:`decoders.dfd.leaked`), the enrolment images framed as ``layout``. Type-I is then each
    reconstruction against its own leaked template, type-II against its person's enrolment images.

    A folder of uncropped photos instead: ``images``, one sub-folder per person (:mod:`decoders.dfd.photos`:
    faces detected and aligned); thresholds from the folder's own cross-identity impostor pairs."""

    config_name = "attack evaluation"
    config_error = ReconstructionError

    checkpoint: str | Path
    data_root: str | Path | None = None
    backbone: str | None = None
    weights: str | Path | None = None
    backbone_b: str | None = None
    weights_b: str | Path | None = None
    fmrs: tuple[float, ...] = DEFAULT_FMRS
    impostors: str = "auto"
    max_pairs: int | None = None
    max_images: int | None = None
    split: str = "test"
    type2_references: str = "lfw"
    type2_max_refs: int | None = 10
    templates: str | Path | None = None
    identities: str | Path | None = None
    images: str | Path | None = None
    layout: str = "chip"
    gallery_size: int = 24
    seed: int = 0
    cache_dir: str | Path | None | bool = None
    batch_size: int = 64
    device: str = "cpu"
    progress: bool = True

    @classmethod
    def _decode(cls, values: dict) -> dict:
        return dict(values, fmrs=tuple(values["fmrs"])) if "fmrs" in values else values


# --------------------------------------------------------------------------- type-II references and the control


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
        wanted = set(ids)
        people = load_lfw_people(data_root if data_root is not None else os.environ.get("FACEPROBE_DATA"))
        pool = people.subset(np.flatnonzero([i in wanted for i in people.labels("identity")]))
    else:
        raise setting_error(ReconstructionError, "{type2_references} must be 'lfw' or 'split', got {got!r}",
                            got=source)
    return references_in(test, pool, max_refs, seed)


def references_in(test: FaceDataset, pool: FaceDataset, max_refs: int | None = 10,
                  seed: int = 0) -> tuple[FaceDataset | None, np.ndarray]:
    """:func:`type2_references` with the other images of each person taken from ``pool``."""
    empty = np.zeros((0, 2), np.int64)
    ids = test.labels("identity")
    by_id: dict[str, list[int]] = {}
    for j, i in enumerate(pool.labels("identity")):
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


def control_scores(recon_embeddings: np.ndarray, templates: np.ndarray, identities, metric: str) -> np.ndarray:
    """Scores of each reconstruction against the templates of every *other* person's images: how often a
    reconstruction passes as someone else (a decoder drawing one average face would pass often)."""
    ids = np.asarray(identities, dtype=str)
    return blocked_scores(recon_embeddings, templates, lambda start, stop: ids[start:stop, None] != ids[None, :],
                          metric)


def rate_record(rate: AttackRate) -> dict:
    return {k: finite_or_none(v) if isinstance(v, float) else v for k, v in asdict(rate).items()}


def attack_record(scores: np.ndarray, cosines: np.ndarray, thresholds: list[FMRThreshold], people=None) -> dict:
    """Count, mean cosine and score, and the success attack rate at each threshold of one attack
    (``people``: the person each score belongs to, for intervals over people rather than comparisons)."""
    return {"n": len(scores), "mean_cosine": finite_or_none(np.mean(cosines)) if len(cosines) else None,
            "mean_score": finite_or_none(np.mean(scores)) if len(scores) else None,
            "n_people": len(set(people)) if people is not None else None,
            "sar": {f"{t.fmr:g}": rate_record(success_attack_rate(scores, t.threshold, people=people))
                    if len(scores) else
                    {"rate": None, "accepted": 0, "n": 0, "ci_low": None, "ci_high": None, "threshold": t.threshold}
                    for t in thresholds}}


def control_record(emb: np.ndarray, templates: np.ndarray, identities, metric: str,
                   thresholds: list[FMRThreshold]) -> dict | None:
    """:func:`attack_record` of the reconstructions against other held-out people (``identities``: each
    template's person; None without identities)."""
    if identities is None:
        return None
    ids = np.asarray(identities, dtype=str)
    scores = control_scores(emb, templates, ids, metric)
    others = np.array([(ids != person).sum() for person in ids])  # row-major: each reconstruction's other-people scores
    record = attack_record(scores, np.zeros(0) if not len(scores) else control_scores(emb, templates, ids, "cosine"),
                           thresholds, np.repeat(ids, others))
    record["what"] = "reconstruction vs templates of other held-out people (acceptance = false match of the attack)"
    return record


def people(dataset: FaceDataset) -> list[str] | None:
    """The identity of each image, or None when the dataset has none."""
    return [str(i) for i in dataset.labels("identity")] if "identity" in dataset.attributes else None


def reconstruction_spread(recon_u8: np.ndarray) -> dict:
    """How much the reconstructions differ across people beside how much one varies within itself
    (pixel standard deviations, 0..255): a decoder that draws one face for everyone has a spread across
    people near 0 while each face still has contrast."""
    x = recon_u8.astype(np.float64)
    return {"across_people_std": finite_or_none(x.std(axis=0).mean()) if len(x) > 1 else None,
            "within_image_std": finite_or_none(x.reshape(len(x), -1).std(axis=1).mean()) if len(x) else None,
            "n": len(x)}


def scores_and_cosines(emb: np.ndarray, templates: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    return pair_scores(emb, templates, metric), pair_scores(emb, templates, "cosine")


@dataclass
class BackboneTargets:
    """One network's side of the attack: its LFW scores and thresholds, its templates (and target
    chips) of the test images and of the type-II references (None without references)."""

    net: FaceBackbone
    lfw: LFWScores
    thresholds: list[FMRThreshold]
    test: Targets
    refs: Targets | None

    @property
    def metric(self) -> str:
        return self.net.spec.verification_metric

    def type2_scores(self, emb: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:func:`scores_and_cosines` of the (reconstruction, reference) ``pairs``; empty without pairs."""
        if not len(pairs):
            return np.zeros(0), np.zeros(0)
        return scores_and_cosines(emb[pairs[:, 0]], self.refs.templates[pairs[:, 1]], self.metric)


# --------------------------------------------------------------------------- the evaluation


class AttackEvaluation:
    """Runs an :class:`AttackEvaluationConfig`; :meth:`run` returns an :class:`AttackResult`."""

    def __init__(self, config: AttackEvaluationConfig):
        self.config = config

    def check_settings(self) -> None:
        """The settings' own errors, before anything is loaded (``run`` checks them too)."""
        c = self.config
        if not c.fmrs or any(not 0 < f < 1 for f in self.fmrs):
            raise setting_error(ReconstructionError, "{fmrs} values must lie in (0, 1), got {got}", got=self.fmrs)
        check_positive(ReconstructionError, "max_images", c.max_images)
        check_choice(ReconstructionError, "impostors", c.impostors, IMPOSTOR_SETS)
        if (c.templates is None) != (c.identities is None):
            raise setting_error(ReconstructionError, "{templates} and {identities} go together: leaked templates "
                                "are scored against their people's enrolment images")
        if c.images is not None and c.templates is not None:
            raise setting_error(ReconstructionError, "give {images} or {templates}, not both")
        if c.images is not None and c.backbone_b is not None:
            raise setting_error(ReconstructionError, "{backbone_b} is not available with {images} yet (the transfer "
                                "reframes LFW-style frames)")
        if c.templates is not None:
            check_choice(ReconstructionError, "layout", c.layout, LAYOUTS)
            if c.backbone_b is not None:
                raise setting_error(ReconstructionError, "{backbone_b} needs the source images' frames, which "
                                    "leaked templates ({templates}) do not have")

    @property
    def fmrs(self) -> list[float]:
        return [float(f) for f in self.config.fmrs]

    @property
    def max_refs(self) -> int | None:
        """``type2_max_refs`` with 0 (or less) meaning all, as None."""
        n = self.config.type2_max_refs
        return n if n is not None and n > 0 else None

    def run(self) -> AttackResult:
        started = time.perf_counter()
        self.check_settings()
        c = self.config
        decoder, config = load_trained_decoder(c.checkpoint, c.device)
        size = decoder.config.image_size
        net_a = rebuild_backbone(config, c.backbone, c.weights, c.device)
        if c.templates is not None:
            return self._run_leaked(decoder, config, net_a, started)
        if c.images is not None:
            return self._run_photos(decoder, config, net_a, started)
        tests = heldout_sets(config, c.split, c.data_root)
        notes = [f"evaluating the {c.split} images of {tests[0].name} only (also present: "
                 f"{', '.join(t.name for t in tests[1:])})"] if len(tests) > 1 else []
        test = tests[0].subset(subsample_indices(len(tests[0]), c.max_images, c.seed))
        refs, t2_pairs = type2_references(test, c.type2_references, c.data_root, self.max_refs, c.seed)
        side_a = self._measure(net_a, test, refs, size)
        side_b = None
        if c.backbone_b is not None:
            net_b = create_backbone(c.backbone_b, c.weights_b, device=c.device).requires_grad_(False).eval()
            side_b = self._measure(net_b, test, refs, size)

        recon_u8, chips, ident, type2 = self._decode_and_score(decoder, side_a, t2_pairs)
        lp, ss = lpips_scores(recon_u8, chips, device=c.device), ssim_scores(recon_u8, chips)
        transfer = transfer_type1 = None
        if side_b is not None:
            transfer, transfer_type1 = self._transfer(side_b, side_a.net.spec, test, (recon_u8, chips), t2_pairs)
        results = self._configuration(config, (test, len(tests[0]), size), side_a, side_b)
        results.update(attack=self._attack(side_a, people(test), ident, t2_pairs, type2, refs),
                       transfer=transfer,
                       image_quality={"lpips_mean": finite_or_none(lp.mean()), "lpips_std": finite_or_none(lp.std()),
                                      "ssim_mean": finite_or_none(ss.mean()), "ssim_std": finite_or_none(ss.std()),
                                      "n": len(test)},
                       seconds=round(time.perf_counter() - started, 1))
        results["attack"].update(mean_face_control=self._mean_face(decoder, side_a, people(test)),
                                 reconstruction_spread=reconstruction_spread(recon_u8))
        per_image = per_image_rows(image_keys(test), ident, side_a.thresholds, t2_pairs, type2, (lp, ss),
                                   transfer_type1)
        return AttackResult(results, per_image, recon_u8, chips, lp, ss, side_a.thresholds, c.gallery_size, notes)

    def _decode_and_score(self, decoder, side: BackboneTargets, t2_pairs: np.ndarray):
        """(reconstructions as uint8, the test target chips, type-I identity scores, type-II scores and cosines)."""
        c = self.config
        recon_u8 = to_uint8(decode(decoder, side.test.templates, c.batch_size))
        ident = identity_scores(side.net, recon_u8, side.test.templates, c.batch_size)
        return recon_u8, np.asarray(side.test.images), ident, side.type2_scores(ident["embeddings"], t2_pairs)

    def _run_photos(self, decoder, config: dict, net: FaceBackbone, started: float) -> AttackResult:
        """The attack on a folder of uncropped photos, one sub-folder per person: faces detected and aligned,
        type-I against each photo's own template, type-II against the person's other photos in the folder
        (people with one photo: type-I only), thresholds from the folder's own cross-identity impostors."""
        c = self.config
        size = decoder.config.image_size
        photos = aligned_people(c.images, net, c.cache_dir)
        everyone = photos.dataset
        every_target = self._targets(net, everyone, size)
        scores = folder_scores(every_target.templates, everyone.labels("identity"), net.spec.verification_metric,
                               str(c.images))
        thresholds = thresholds_at_fmrs(scores, self.fmrs, c.impostors)
        keep = subsample_indices(len(everyone), c.max_images, c.seed)
        test = everyone.subset(keep)
        refs, t2_pairs = references_in(test, everyone, self.max_refs, c.seed)
        side = BackboneTargets(net, scores, thresholds, every_target.subset(keep), self._targets(net, refs, size))
        recon_u8, chips, ident, type2 = self._decode_and_score(decoder, side, t2_pairs)
        lp, ss = lpips_scores(recon_u8, chips, device=c.device), ssim_scores(recon_u8, chips)
        results = self._configuration(config, (test, len(everyone), size), side, None)
        results["configuration"].update(images=str(c.images), split=None, type2_references="the folder",
                                        detection="probes.align.detect_and_align (largest face), aligned onto "
                                                  f"{net.name}'s five-point template")
        results["thresholds"] = {net.name: folder_threshold_record(scores, thresholds, str(c.images))}
        results["data"].update(n_photos=len(everyone) + len(photos.missing),
                               photos_without_face=[str(p) for p in photos.missing])
        results.update(attack=self._attack(side, people(test), ident, t2_pairs, type2, refs), transfer=None,
                       image_quality={"lpips_mean": finite_or_none(lp.mean()), "lpips_std": finite_or_none(lp.std()),
                                      "ssim_mean": finite_or_none(ss.mean()), "ssim_std": finite_or_none(ss.std()),
                                      "n": len(test)},
                       seconds=round(time.perf_counter() - started, 1))
        results["attack"].update(mean_face_control=self._mean_face(decoder, side, people(test)),
                                 reconstruction_spread=reconstruction_spread(recon_u8))
        names, ids, _ = image_keys(test)
        sources = [str(photos.sources[i]) for i in keep]
        per_image = per_image_rows((names, ids, sources), ident, thresholds, t2_pairs, type2, (lp, ss))
        notes = [n for n in (photos.note(c.images),) if n]
        return AttackResult(results, per_image, recon_u8, chips, lp, ss, thresholds, c.gallery_size, notes,
                            gallery_note=PHOTOS_GALLERY_NOTE)

    def _run_leaked(self, decoder, config: dict, net: FaceBackbone, started: float) -> AttackResult:
        """The attack on leaked templates: type-I against each leaked template itself, type-II against its
        person's enrolment images, the control and the mean face, at thresholds from LFW pairs with the leak's
        identities left out; no image quality (there is no source image to compare with)."""
        c = self.config
        size = decoder.config.image_size
        leak = read_leak(c.templates, c.identities, net.spec.embedding_size)
        n_available = len(leak)
        leak = leak.subset(subsample_indices(len(leak), c.max_images, c.seed))
        refs, pairs = leak.enrolment(c.layout, self.max_refs, c.seed)
        lfw = lfw_pair_scores(net, c.data_root, c.cache_dir, c.max_pairs, c.seed, c.progress, leak.identities)
        thresholds = thresholds_at_fmrs(lfw, self.fmrs, c.impostors)
        ref_targets = self._targets(net, refs, size)
        # The gallery shows each reconstruction beside its person's first enrolment image (black without one).
        shown = np.zeros((len(leak), size, size, 3), np.uint8)
        for t in range(len(leak)):
            mine = pairs[pairs[:, 0] == t, 1]
            if len(mine):
                shown[t] = ref_targets.images[mine[0]]
        test = Targets(leak.templates, shown, leak.names(), "leaked", np.asarray(leak.identities, dtype=object))
        side = BackboneTargets(net, lfw, thresholds, test, ref_targets)
        recon_u8 = to_uint8(decode(decoder, leak.templates, c.batch_size))
        ident = identity_scores(net, recon_u8, leak.templates, c.batch_size)
        type2 = side.type2_scores(ident["embeddings"], pairs)
        results = self._leak_configuration(config, leak, n_available, refs, side, size)
        results.update(attack=self._attack(side, leak.identities, ident, pairs, type2, refs), transfer=None,
                       image_quality=None, seconds=round(time.perf_counter() - started, 1))
        results["attack"].update(mean_face_control=self._mean_face(decoder, side, leak.identities),
                                 reconstruction_spread=reconstruction_spread(recon_u8))
        keys = (leak.names(), leak.identities, [f"{leak.templates_file} row {i}" for i in range(len(leak))])
        per_image = per_image_rows(keys, ident, thresholds, pairs, type2)
        notes = [] if refs is not None else ["no enrolment images listed: type-I only"]
        without = sum(1 for paths in leak.enrolment_paths if not paths)
        if refs is not None and without:
            notes.append(f"{without} of {len(leak)} templates have no enrolment image: type-I only for them")
        return AttackResult(results, per_image, recon_u8, shown, None, None, thresholds, c.gallery_size, notes,
                            gallery_note=LEAK_GALLERY_NOTE)

    def _leak_configuration(self, config: dict, leak: Leak, n_available: int, refs: FaceDataset | None,
                            side: BackboneTargets, size: int) -> dict:
        """``results.json``'s configuration, data and thresholds for leaked templates."""
        c = self.config
        configuration = self._common_configuration(config)
        configuration.update(templates=str(c.templates), identities=str(c.identities), enrolment_layout=c.layout,
                             backbone_a={"name": side.net.name, "weights_id": side.net.weights_id,
                                         "weights_key": weights_key(side.net)},
                             type1="reconstruction vs the leaked template it was drawn from",
                             type2="reconstruction vs the enrolment images of the template's identity")
        return {"configuration": configuration, "checkpoint_config": config, "training": self._training(config),
                "data": {"test_set": "leaked templates", "layout": c.layout, "n_test_images_available": n_available,
                         "n_test_images": len(leak), "n_test_identities": len(set(leak.identities)),
                         "n_enrolment_images": len(refs) if refs is not None else 0, "chip_size": size},
                "thresholds": {side.net.name: threshold_record(side.lfw, side.thresholds)}}

    def _targets(self, net, dataset: FaceDataset | None, size: int) -> Targets | None:
        c = self.config
        if dataset is None:
            return None
        return compute_targets(net, dataset, size, cache_dir=c.cache_dir, progress=c.progress)

    def _measure(self, net, test: FaceDataset, refs: FaceDataset | None, size: int) -> BackboneTargets:
        """``net``'s LFW scores and thresholds, and its templates of the test images and ``refs``."""
        c = self.config
        lfw = lfw_pair_scores(net, c.data_root, c.cache_dir, c.max_pairs, c.seed, c.progress, people(test) or ())
        thresholds = thresholds_at_fmrs(lfw, self.fmrs, c.impostors)
        return BackboneTargets(net, lfw, thresholds, self._targets(net, test, size), self._targets(net, refs, size))

    @staticmethod
    def _attack(side: BackboneTargets, ids: list[str] | None, ident: dict, t2_pairs: np.ndarray,
                type2: tuple[np.ndarray, np.ndarray], refs: FaceDataset | None) -> dict:
        """The direct attack's records (``ids``: the person of each template): the control, type-I and type-II."""
        thr = side.thresholds
        recons = np.unique(t2_pairs[:, 0])
        n_people = len({ids[k] for k in recons}) if len(t2_pairs) and ids else 0
        type2_people = [ids[k] for k in t2_pairs[:, 0]] if ids and len(t2_pairs) else None
        return {"backbone": side.net.name, "metric": side.metric,
                "control_other_people": control_record(ident["embeddings"], side.test.templates, ids, side.metric,
                                                       thr),
                "type_I": attack_record(ident["score"], ident["cosine"], thr, ids),
                "type_II": dict(attack_record(*type2, thr, type2_people), n_reconstructions=len(recons),
                                n_identities=n_people, n_reference_images=len(refs) if refs is not None else 0)}

    def _mean_face(self, decoder, side: BackboneTargets, ids: list[str] | None) -> dict:
        """The decoder fed the mean template of the test images: one face scored against every test
        template at the same thresholds. A decoder whose SAR does not clearly beat this row draws an
        average face, not the person."""
        c = self.config
        mean_template = side.test.templates.mean(axis=0, keepdims=True)
        face = to_uint8(decode(decoder, mean_template, c.batch_size))
        emb = identity_scores(side.net, face, mean_template, c.batch_size)["embeddings"]
        scores, cosines = scores_and_cosines(np.repeat(emb, len(side.test.templates), 0), side.test.templates,
                                             side.metric)
        record = attack_record(scores, cosines, side.thresholds, ids)
        record["what"] = "the decoder's face of the mean test template vs every test template (a constant face)"
        return record

    def _transfer(self, side: BackboneTargets, spec_a, test: FaceDataset, images: tuple[np.ndarray, np.ndarray],
                  t2_pairs: np.ndarray) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
        """The transfer records (B's view of A's reconstructions and, as a ceiling, of A's real chips),
        and B's type-I scores and cosines."""
        recon_u8, chips = images
        frames = frame_sizes(test.paths)
        emb = transfer_embeddings(side.net, recon_u8, spec_a, test.layout, frames, self.config.batch_size)
        type1 = scores_and_cosines(emb, side.test.templates, side.metric)
        type2 = side.type2_scores(emb, t2_pairs)
        # The same framing applied to the real target chips: the best a perfect reconstruction could do.
        emb_chip = transfer_embeddings(side.net, chips, spec_a, test.layout, frames, self.config.batch_size)
        ceiling = scores_and_cosines(emb_chip, side.test.templates, side.metric)
        thr = side.thresholds
        record = {"backbone": side.net.name, "weights_id": side.net.weights_id, "metric": side.metric,
                  "framing_ceiling_type_I": dict(
                      attack_record(*ceiling, thr),
                      what="A's real target chip (not a reconstruction), framed the same way, vs B's template "
                           "of the source: the best a perfect reconstruction could reach through this framing"),
                  "control_other_people": control_record(emb, side.test.templates, people(test), side.metric,
                                                         thr),
                  "framing": "reconstruction put back at A's crop in the source frame, black elsewhere; "
                             "B applies its own crop for the layout",
                  "type_I": attack_record(*type1, thr),
                  "type_II": attack_record(*type2, thr)}
        return record, type1

    def _common_configuration(self, config: dict) -> dict:
        """What every ``results.json`` records of the configuration, whatever the attacked images."""
        c = self.config
        return {
            "checkpoint": config["checkpoint"], "shipped": (config.get("shipped") or {}).get("name"),
            "run": str(run_folder(config)), "step": config["step"],
            "data_root": str(c.data_root or os.environ.get("FACEPROBE_DATA", "")), "max_images": c.max_images,
            "subsample_seed": c.seed, "fmrs": self.fmrs, "impostors": c.impostors, "max_pairs": c.max_pairs,
            "type2_max_refs": self.max_refs,
            "device": str(c.device), "threads": torch.get_num_threads(), "batch_size": c.batch_size,
            "reconstruction_input": "decoder output rounded to uint8 (as saved in a PNG), fed as a chip",
            "ci": "95% percentile bootstrap over people (2,000 resamples of the test people); Wilson where a "
                  "block has no identities",
            "versions": provenance(),
        }

    @staticmethod
    def _training(config: dict) -> dict:
        """The decoder's training record: its run's ``summary.json``, or a shipped decoder's registry entry."""
        shipped = config.get("shipped")
        if shipped:
            training = shipped.get("training") or {}
            return {"step": training.get("steps"), "train_time_s": round(60 * training["minutes"], 1)
                    if training.get("minutes") is not None else None, "shipped": shipped.get("name")}
        summary_file = run_folder(config) / "summary.json"
        train_summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        return {k: train_summary.get(k) for k in ("step", "train_time_s", "n_train", "world_size",
                                                  "last_validation") if k in train_summary}

    def _configuration(self, config: dict, data: tuple[FaceDataset, int, int], side_a: BackboneTargets,
                       side_b: BackboneTargets | None) -> dict:
        """``results.json``'s configuration, checkpoint config, training summary, data and thresholds;
        ``data``: the test set, how many test images there were before subsampling, the chip size."""
        c = self.config
        test, n_available, size = data
        configuration = self._common_configuration(config)
        configuration.update(
            split=c.split, type2_references=c.type2_references,
            lpips="probes.perceptual.perceptual_distance, net alex (LPIPS v0.1)",
            ssim="skimage.metrics.structural_similarity(channel_axis=-1, data_range=1.0), RGB in [0, 1]")
        thresholds = {side_a.net.name: threshold_record(side_a.lfw, side_a.thresholds)}
        if side_b is not None:
            thresholds[side_b.net.name] = threshold_record(side_b.lfw, side_b.thresholds)
            configuration["backbone_b"] = {"name": side_b.net.name, "weights_id": side_b.net.weights_id,
                                           "weights_file": str(c.weights_b) if c.weights_b else None}
        configuration["backbone_a"] = {"name": side_a.net.name, "weights_id": side_a.net.weights_id,
                                       "weights_key": weights_key(side_a.net)}
        has_ids = "identity" in test.attributes
        return {"configuration": configuration, "checkpoint_config": config, "training": self._training(config),
                "data": {"test_set": test.name, "layout": test.layout, "n_test_images_available": n_available,
                         "n_test_images": len(test),
                         "n_test_identities": len(set(test.labels("identity"))) if has_ids else None,
                         "chip_size": size},
                "thresholds": thresholds}
