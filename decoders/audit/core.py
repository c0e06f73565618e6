"""The aging audit as an API: ``AgingAudit(...).run(model, faces) -> AuditResult``.

Every face and every aged output is measured in one frame: GAN-sized images
are brought up (bicubic, :func:`decoders.aging.data.resize_faces`) to
UTKFace's 200 x 200 frame and read with the ``utkface`` layout. Face models
refuse faces under half their input size, and a 64 px face upsampled is not
the 200 px original: so the real inputs are the GAN-sized images (UTKFace
area-averaged down to the GAN's size by :func:`~decoders.aging.data.load_aging_faces`)
brought up the same way, and real and generated faces are measured alike.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from probes.errors import DatasetError
from probes.stats import bootstrap_mean, rate
from probes.verification import VerificationError, pair_scores, threshold_at_fmr

from ..aging.data import UTKFACE_FRAME, AgingFaces, resize_faces
from ..aging.groups import AgeGroups, AgingError
from .sources import AuditError, check_model, check_output
from .stats import Metric, summarise

DEFAULT_TRAIN_BACKBONE = "dlib-resnet29"
DEFAULT_INDEPENDENT_BACKBONE = "hse-mobilenet-vggface2"
LAYOUT = "utkface"
ROLES = ("train", "independent")
ROLE_TITLES = {"train": "GAN's training face model", "independent": "independent face model"}
EXPRESSIVITY_ATTRIBUTES = ("age", "sex", "yaw")
MIN_EXPRESSIVITY_FACES = 40
LOOSE_THRESHOLD_FACTOR = 3.0  # flag thresholds passing distinct audited faces at > 3x their FMR


@dataclass
class Measured:
    """What the face models and labellers read from a batch of faces (all length N)."""

    embeddings: dict[str, np.ndarray]  # role -> N x D
    age: np.ndarray
    p_male: np.ndarray
    sex: np.ndarray
    yaw: np.ndarray


@dataclass
class AuditResult:
    """Everything an audit measured: tidy tables, flags, thresholds, gallery images and the configuration.

    ``tables`` (pandas DataFrames): ``summary`` (metric x target x breakdown
    level with 95% CIs), ``per_output`` (one row per face and target),
    ``per_face`` (real faces), ``thresholds``, ``estimator_real``,
    ``confusion``, ``confusion_real``, ``diversity``, and, when measured,
    ``expressivity`` and ``decoder``. :meth:`to_html` writes the report,
    :meth:`save` the whole output folder.
    """

    model: dict
    data: dict
    configuration: dict
    tables: dict[str, pd.DataFrame]
    flags: dict
    notes: list[str]
    gallery: dict
    seconds: dict = field(default_factory=dict)
    command: list[str] | None = None

    # ------------------------------------------------------------------ views

    def headline(self) -> pd.DataFrame:
        """One row per target: the key figures (breakdown ``all``), as formatted strings."""
        from .report import headline_table

        return headline_table(self)

    def figures(self) -> dict:
        """The report's matplotlib figures by name (the caller closes them)."""
        from .figures import all_figures

        return all_figures(self)

    def to_dict(self) -> dict:
        """JSON-ready results: configuration, flags, thresholds, the summary rows and small tables."""
        from .report import results_dict

        return results_dict(self)

    def to_html(self, path: str | Path | None = None) -> str:
        """The self-contained HTML report (figures and images as data URIs); written to ``path`` if given."""
        from probes.outputs import atomic_write_bytes

        from .report import render_report

        text = render_report(self)
        if path is not None:
            data = text.encode("utf-8")
            atomic_write_bytes(Path(path), lambda h: h.write(data))
        return text

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write ``report.html``, ``results.json``, ``tables/*.csv`` and ``figures/*.png`` into ``out``.

        An existing non-empty ``out`` is refused unless ``overwrite``; files go
        to a temporary folder that replaces ``out`` only when complete.
        """
        from probes.outputs import staged_output

        from .report import write_outputs

        with staged_output(out, overwrite) as tmp:
            write_outputs(self, tmp)
        return Path(out)


class AgingAudit:
    """Audit an aging model on labelled faces.

    Parameters (all keyword):

    - ``train_backbone``: the face model the GAN was trained against (a name
      or a :class:`~probes.backbones.FaceBackbone`); None takes the model's
      ``identity_backbone`` attribute, else ``dlib-resnet29``.
    - ``independent_backbone``: a second face model that took no part in
      training (default ``hse-mobilenet-vggface2``).
    - ``age_labeller``: age/sex estimator other than the GAN's age loss
      (``faceapi-agegender`` or ``hse-agegender``, or a labeller object);
      ``pose_labeller``: yaw (``faceapi-headpose``; None skips yaw).
    - ``fmrs``: false match rates; the first is the headline. Thresholds come
      from LFW's pairs.txt for each face model (``use_lfw``, ``data_root``,
      ``lfw_max_pairs``); when LFW is absent (or ``use_lfw=False``) from
      impostor pairs of the audited real faces; ``thresholds`` =
      ``{backbone name: {fmr: threshold score}}`` overrides both.
    - ``max_estimator_mae`` (years) and ``min_real_faces``: a target group is
      judged for achieved age only if the estimator's MAE on real faces of that
      group, measured in this run, is at most this and rests on enough faces.
    - ``collapse_fraction``: outputs are flagged collapsed when their mean
      LPIPS across inputs (same target) is under this fraction of the real
      faces'; ``target_fraction``: flagged as ignoring the target when the
      LPIPS between targets of one input is under this fraction of that
      between real faces of different age groups. ``lpips_pairs`` per comparison.
    - ``expressivity``: estimator name for the per-layer sweep (``probe``,
      ``mine``, ...; None skips), ``expressivity_params`` its parameters.
    - ``decoder``: a template decoder checkpoint (DFD); its reconstructions of
      original and aged templates go beside the images (``decoder_faces`` faces).
    """

    def __init__(self, *, train_backbone=None, independent_backbone=DEFAULT_INDEPENDENT_BACKBONE,
                 age_labeller="faceapi-agegender", pose_labeller="faceapi-headpose",
                 fmrs: Sequence[float] = (1e-3,), thresholds: Mapping[str, Mapping[float, float]] | None = None,
                 data_root=None, use_lfw: bool = True, lfw_max_pairs: int | None = None, cache_dir=None,
                 max_estimator_mae: float = 8.0, min_real_faces: int = 10, collapse_fraction: float = 0.25,
                 target_fraction: float = 0.1, lpips_net: str = "alex", lpips_pairs: int = 200,
                 expressivity: str | None = "probe", expressivity_params: Mapping | None = None,
                 expressivity_layers: Sequence[str] | None = None,
                 expressivity_attributes: Sequence[str] = EXPRESSIVITY_ATTRIBUTES,
                 decoder=None, decoder_faces: int = 64, measure_size: int = UTKFACE_FRAME,
                 gallery_size: int = 12, n_boot: int = 1000, seed: int = 0, batch_size: int = 32,
                 device: str = "cpu", progress: bool = True):
        self.train_backbone = train_backbone
        self.independent_backbone = independent_backbone
        self.age_labeller = age_labeller
        self.pose_labeller = pose_labeller
        self.fmrs = tuple(float(f) for f in fmrs)
        self.thresholds = thresholds
        self.data_root = data_root
        self.use_lfw = use_lfw
        self.lfw_max_pairs = lfw_max_pairs
        self.cache_dir = cache_dir
        self.max_estimator_mae = float(max_estimator_mae)
        self.min_real_faces = int(min_real_faces)
        self.collapse_fraction = float(collapse_fraction)
        self.target_fraction = float(target_fraction)
        self.lpips_net = lpips_net
        self.lpips_pairs = int(lpips_pairs)
        self.expressivity = expressivity
        self.expressivity_params = dict(expressivity_params or {})
        self.expressivity_layers = expressivity_layers
        self.expressivity_attributes = tuple(expressivity_attributes)
        self.decoder = decoder
        self.decoder_faces = int(decoder_faces)
        self.measure_size = int(measure_size)
        self.gallery_size = int(gallery_size)
        self.n_boot = int(n_boot)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.device = device
        self.progress = progress
        self._check_params()

    def _check_params(self) -> None:
        if not self.fmrs or not all(0 < f < 1 for f in self.fmrs):
            raise AuditError(f"--fmr values must lie in (0, 1), got {self.fmrs}")
        for name in ("collapse_fraction", "target_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise AuditError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.max_estimator_mae <= 0:
            raise AuditError(f"--max-estimator-mae must be positive, got {self.max_estimator_mae}")
        for name in ("lpips_pairs", "batch_size", "measure_size"):
            if getattr(self, name) < 1:
                raise AuditError(f"{name} must be positive, got {getattr(self, name)}")
        if self.gallery_size < 0 or self.decoder_faces < 0 or self.n_boot < 0:
            raise AuditError("gallery_size, decoder_faces and n_boot must be >= 0")
        bad = [a for a in self.expressivity_attributes if a not in EXPRESSIVITY_ATTRIBUTES]
        if bad:
            raise AuditError(f"expressivity attributes {bad} unknown; choose from {', '.join(EXPRESSIVITY_ATTRIBUTES)}")

    # ------------------------------------------------------------------ building blocks

    def _backbone(self, spec, role: str):
        from probes.backbones import create_backbone

        if spec is None:
            raise AuditError(f"no {ROLE_TITLES[role]} given")
        net = create_backbone(spec, device=self.device) if isinstance(spec, str) else spec
        return net.to(self.device).requires_grad_(False).eval()

    def _labeller(self, spec):
        from probes.labellers import create_labeller

        if spec is None:
            return None
        return create_labeller(spec, device=self.device) if isinstance(spec, str) else spec

    def _measure(self, images: np.ndarray, nets: Mapping, age_lab, pose_lab, bar=None) -> Measured:
        """Upsample to the measurement frame batch by batch; embed, estimate age/sex and yaw."""
        emb = {role: [] for role in nets}
        age, p_male, sex, yaw = [], [], [], []
        for start in range(0, len(images), self.batch_size):
            up = resize_faces(np.ascontiguousarray(images[start:start + self.batch_size]), self.measure_size)
            for role, net in nets.items():
                emb[role].append(net.embed(up, LAYOUT, batch_size=self.batch_size))
            labels = age_lab.predict(up, LAYOUT, batch_size=self.batch_size)
            age.append(np.asarray(labels["age"], np.float64))
            p_male.append(np.asarray(labels["p_male"], np.float64))
            sex.append(np.asarray(labels["sex"], np.int64))
            yaw.append(np.asarray(pose_lab.predict(up, LAYOUT, batch_size=self.batch_size)["yaw"], np.float64)
                       if pose_lab is not None else np.full(len(up), np.nan))
            if bar is not None:
                bar.update(len(up))
        return Measured({r: np.concatenate(v) for r, v in emb.items()}, np.concatenate(age),
                        np.concatenate(p_male), np.concatenate(sex), np.concatenate(yaw))

    def _prepare_faces(self, faces: AgingFaces, groups: AgeGroups, size: int) -> tuple[AgingFaces, list[str]]:
        notes = []
        if not isinstance(faces, AgingFaces):
            raise AuditError(f"faces must be an AgingFaces (decoders.aging.data.load_aging_faces), got "
                             f"{type(faces).__name__}")
        if len(faces) == 0:
            raise DatasetError("no faces to audit: the face set is empty")
        if not np.isfinite(faces.ages).all():
            raise DatasetError(f"{int((~np.isfinite(faces.ages)).sum())} face(s) have no age label; the audit "
                               "needs labelled faces (UTKFace file names age_sex_race_...)")
        if faces.groups != groups:
            group = groups.of(faces.ages)
            keep = np.flatnonzero(group >= 0)
            if len(keep) == 0:
                raise DatasetError(f"no face falls in the model's age groups {groups.labels}")
            notes.append(f"faces were grouped by {faces.groups.name}; regrouped by the model's {groups.name} groups "
                         f"({len(faces) - len(keep)} face(s) outside them dropped)")
            faces = faces.subset(keep)
            faces = AgingFaces(faces.images, faces.ages, faces.sex, faces.race, group[keep], groups, faces.paths)
        if faces.image_size != size:
            notes.append(f"faces were {faces.image_size} px; resized to the model's {size} px")
            faces = AgingFaces(resize_faces(faces.images, size), faces.ages, faces.sex, faces.race, faces.group,
                               faces.groups, faces.paths)
        return faces, notes

    def _generate(self, model, faces: AgingFaces, targets: Sequence[int], source: str, bar=None
                  ) -> dict[int, np.ndarray]:
        """Every face at every target, checked batch by batch (shape, dtype, range).

        Models with ``invert`` and ``generate`` (Age-cGAN) are inverted once
        per face and drawn at each target from the same latent, as ``age``
        would do target by target.
        """
        labels = model.groups.labels
        by_path = hasattr(model, "age_paths")
        invertible = (not by_path and callable(getattr(model, "invert", None))
                      and callable(getattr(model, "generate", None)))
        pass_groups = accepts_source_groups(model, "invert" if invertible else "age")
        outputs = {t: np.empty_like(faces.images) for t in targets}
        # No torch.no_grad() here: a model may optimise per face (Age-cGAN's inversion needs gradients).
        for start in range(0, len(faces), self.batch_size):
            stop = min(len(faces), start + self.batch_size)
            batch = faces.images[start:stop]
            # Age-cGAN-style models condition on the input's own age group: pass the label's group.
            extra = {"source_groups": faces.group[start:stop]} if pass_groups else {}
            z = model.invert(np.array(batch), **extra) if invertible else None
            for t in targets:
                if by_path:
                    result = model.age_paths(faces.paths[start:stop], t)
                elif invertible:
                    result = model.generate(z, t)
                else:
                    result = model.age(np.array(batch), t, **extra)
                outputs[t][start:stop] = check_output(result, batch.shape, source, labels[t])
                if bar is not None:
                    bar.update(stop - start)
        return outputs

    def _thresholds(self, role: str, net, real_emb: np.ndarray) -> list[dict]:
        from probes.verification import cross_identity_scores, thresholds_at_fmrs

        from ..dfd.lfw_scores import lfw_pair_scores

        metric = net.spec.verification_metric
        n = len(real_emb)
        # UTKFace has no identity labels: distinct images are taken as different people.
        utk = cross_identity_scores(real_emb, np.arange(n).astype(str), metric)
        given = (self.thresholds or {}).get(net.name)
        lfw, lfw_error = None, None
        if given is None and self.use_lfw:
            try:
                lfw = lfw_pair_scores(net, self.data_root, cache_dir=self.cache_dir, max_pairs=self.lfw_max_pairs,
                                      seed=self.seed, progress=self.progress)
            except DatasetError as exc:
                lfw_error = str(exc)
        elif given is None:
            lfw_error = "LFW not used (use_lfw=False / --no-lfw)"
        rows = []
        for fmr in self.fmrs:
            row = {"role": role, "backbone": net.name, "metric": metric, "fmr": fmr, "lfw_genuine_accept_rate": None,
                   "n_lfw_genuine": None, "note": ""}
            if given is not None:
                if fmr not in given:
                    raise AuditError(f"thresholds for {net.name} give no value at FMR {fmr:g}")
                row.update(threshold=float(given[fmr]), source="given", impostor_set="given", n_impostors=None)
            elif lfw is not None:
                t = thresholds_at_fmrs(lfw, [fmr], "auto")[0]
                row.update(threshold=t.threshold, source="LFW pairs.txt", impostor_set=t.impostor_set,
                           n_impostors=t.n_impostors, lfw_genuine_accept_rate=t.genuine_accept_rate,
                           n_lfw_genuine=t.n_genuine)
            else:
                try:
                    threshold = threshold_at_fmr(utk, fmr)
                except VerificationError as exc:
                    raise AuditError(f"no LFW for {net.name} ({lfw_error}) and too few audited faces for a UTKFace "
                                     f"threshold at FMR {fmr:g}: {exc}; audit more faces (--max-images) or raise "
                                     "--fmr") from exc
                row.update(threshold=threshold, source="UTKFace impostor pairs (fallback)",
                           impostor_set="utkface-distinct-images", n_impostors=len(utk),
                           note=f"LFW unavailable: {lfw_error}")
            accepted = int((utk >= row["threshold"]).sum())
            row.update(utkface_impostor_accept_rate=accepted / len(utk) if len(utk) else float("nan"),
                       n_utkface_impostors=len(utk),
                       describe=(f"L2 <= {-row['threshold']:.4f}" if metric == "euclidean"
                                 else f"cos >= {row['threshold']:.4f}"))
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ the verb

    def run(self, model, faces: AgingFaces, targets: Sequence[int] | None = None, name: str | None = None,
            selection: Mapping | None = None, command: Sequence[str] | None = None) -> AuditResult:
        """Age every face to every target, measure, and return an :class:`AuditResult`."""
        started = time.perf_counter()
        seconds: dict[str, float] = {}
        name = name or getattr(model, "name", None) or default_name(model)
        model = check_model(model, f"aging model {name}")
        groups, size = model.groups, int(model.image_size)
        targets = (list(range(len(groups))) if targets is None
                   else sorted(set(groups.check(targets, argument="--targets").tolist())))
        if not targets:
            raise AgingError("no target group to audit (--targets is empty)")
        faces, notes = self._prepare_faces(faces, groups, size)
        n, labels = len(faces), groups.labels

        # Face models and labellers
        t0 = time.perf_counter()
        train_spec = self.train_backbone or getattr(model, "identity_backbone", None) or DEFAULT_TRAIN_BACKBONE
        nets = {"train": self._backbone(train_spec, "train"),
                "independent": self._backbone(self.independent_backbone, "independent")}
        if nets["train"].name == nets["independent"].name:
            raise AuditError(f"the independent face model must differ from the GAN's training model "
                             f"({nets['train'].name}); choose another --independent-backbone")
        age_lab = self._labeller(self.age_labeller)
        pose_lab = self._labeller(self.pose_labeller)
        bundle = self._load_decoder() if self.decoder is not None else None  # a bad checkpoint fails before work
        seconds["load_models"] = time.perf_counter() - t0
        invertible = callable(getattr(model, "invert", None)) and callable(getattr(model, "generate", None))
        if invertible:
            notes.append("The model inverts faces to a latent (invert) and draws them at a group (generate): each "
                         "face was inverted once and drawn at every target from that latent.")
        if accepts_source_groups(model, "invert" if invertible else "age"):
            notes.append("The model takes the inputs' own age groups (source_groups); the groups of their UTKFace "
                         "age labels were passed.")

        # Generate and measure (real faces first: they are the baseline of everything)
        t0 = time.perf_counter()
        total = n * (1 + 2 * len(targets))
        with tqdm(total=total, desc=f"audit {name}", unit="img", disable=not self.progress) as bar:
            bar.set_postfix_str("real faces")
            real = self._measure(faces.images, nets, age_lab, pose_lab, bar)
            # Thresholds before any generation: a missing LFW with too few faces fails early.
            t1 = time.perf_counter()
            thresholds = [row for role in ROLES for row in self._thresholds(role, nets[role], real.embeddings[role])]
            seconds["thresholds"] = time.perf_counter() - t1
            bar.set_postfix_str("generate")
            outputs = self._generate(model, faces, targets, f"aging model {name}", bar)
            measured = {}
            for t in targets:
                bar.set_postfix_str(f"measure {labels[t]}")
                measured[t] = self._measure(outputs[t], nets, age_lab, pose_lab, bar)
        seconds["generate_and_measure"] = time.perf_counter() - t0 - seconds["thresholds"]

        per_face = self._per_face(faces, real)
        per_output = self._per_output(faces, groups, targets, real, measured, nets, thresholds)
        estimator_real, judged = self._estimator_real(per_face, groups)
        summary = self._summary(per_output, labels, nets, judged)
        confusion, confusion_real = self._confusions(per_output, per_face, groups)

        t0 = time.perf_counter()
        diversity, diversity_flags = self._diversity(faces, outputs, targets, labels)
        seconds["diversity"] = time.perf_counter() - t0

        tables = {"summary": summary, "per_output": per_output, "per_face": per_face,
                  "thresholds": pd.DataFrame(thresholds), "estimator_real": estimator_real,
                  "confusion": confusion, "confusion_real": confusion_real, "diversity": diversity}

        if self.expressivity:
            t0 = time.perf_counter()
            table, note = self._expressivity(faces, outputs, targets, real, measured, nets["train"], age_lab,
                                             pose_lab)
            if table is not None:
                tables["expressivity"] = table
            if note:
                notes.append(note)
            seconds["expressivity"] = time.perf_counter() - t0

        gallery_idx = self._gallery_indices(faces)
        gallery = {"indices": gallery_idx.tolist(), "inputs": faces.images[gallery_idx],
                   "outputs": {t: outputs[t][gallery_idx] for t in targets}}
        decoder_info = None
        if self.decoder is not None:
            t0 = time.perf_counter()
            decoder_table, decoder_info, recon = self._decoder(bundle, faces, outputs, targets, real, measured, nets,
                                                               age_lab, gallery_idx)
            tables["decoder"] = decoder_table
            gallery.update(recon)
            seconds["decoder"] = time.perf_counter() - t0

        flags = self._flags(estimator_real, judged, diversity_flags, thresholds, targets, labels)
        notes = [self._frame_note(size)] + notes
        seconds["total"] = time.perf_counter() - started
        model_info = {"name": name, "class": type(model).__name__, "groups": groups.to_dict(), "image_size": size,
                      "identity_backbone": getattr(model, "identity_backbone", None),
                      "given_source_groups": accepts_source_groups(model, "invert" if invertible else "age"),
                      "inverted_once": invertible,
                      "targets": [int(t) for t in targets], "target_labels": [labels[t] for t in targets]}
        for attr in ("checkpoint", "config", "step", "inversion"):
            value = getattr(model, attr, None)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = {k: v for k, v in dataclasses.asdict(value).items()
                         if isinstance(v, (str, int, float, bool, type(None), list, tuple))}
            if isinstance(value, (str, int, float, dict, Path)):
                model_info[attr] = str(value) if isinstance(value, Path) else value
        data = {"n_faces": n, "selection": dict(selection or {}),
                "by_source_group": {labels[g]: int((faces.group == g).sum()) for g in range(len(groups))},
                "by_sex": per_face["sex_label"].value_counts().to_dict(),
                "by_race": per_face["race_label"].value_counts().to_dict(),
                "image_size": size, "measure_size": self.measure_size, "layout": LAYOUT,
                "paths_sample": [str(p) for p in faces.paths[:5]]}
        configuration = self._configuration(nets, age_lab, pose_lab, decoder_info)
        return AuditResult(model_info, data, configuration, tables, flags, notes, gallery,
                           {k: round(v, 2) for k, v in seconds.items()},
                           list(command) if command is not None else None)

    # ------------------------------------------------------------------ tables

    def _per_face(self, faces: AgingFaces, real: Measured) -> pd.DataFrame:
        from .stats import RACE_LABELS, SEX_LABELS

        return pd.DataFrame({
            "face": np.arange(len(faces)), "file": [Path(p).name for p in faces.paths],
            "age": faces.ages, "sex": faces.sex, "race": faces.race, "source_group": faces.group,
            "source_label": [faces.groups.labels[g] for g in faces.group],
            "sex_label": [SEX_LABELS.get(int(s), "unknown") for s in faces.sex],
            "race_label": [RACE_LABELS.get(int(r), "unknown") for r in faces.race],
            "est_age": real.age, "est_age_error": real.age - faces.ages,
            "abs_est_age_error": np.abs(real.age - faces.ages),
            "est_group": faces.groups.of(real.age), "est_p_male": real.p_male, "est_sex": real.sex,
            "est_sex_correct": np.where(faces.sex >= 0, (real.sex == faces.sex).astype(float), np.nan),
            "yaw": real.yaw,
        })

    def _per_output(self, faces, groups, targets, real, measured, nets, thresholds) -> pd.DataFrame:
        mids = groups.midpoints()
        lower = np.asarray(groups.lower, np.float64)
        upper = np.append(lower[1:], np.inf)
        parts = []
        for t in targets:
            m = measured[t]
            est_group = groups.of(m.age)
            frame = {
                "face": np.arange(len(faces)), "file": [Path(p).name for p in faces.paths],
                "target": t, "target_label": groups.labels[t], "source_group": faces.group,
                "age_gap": t - faces.group, "sex": faces.sex, "race": faces.race, "age": faces.ages,
                "est_age_in": real.age, "est_age_out": m.age,
                "achieved_shift": m.age - real.age, "target_shift": mids[t] - real.age,
                "est_group_out": est_group, "age_group_hit": (est_group == t).astype(float),
                "abs_error_midpoint": np.abs(m.age - mids[t]),
                "abs_error_range": np.maximum(0, np.maximum(lower[t] - m.age, m.age - (upper[t] - 1e-9))),
                "p_male_in": real.p_male, "p_male_out": m.p_male, "p_male_shift": m.p_male - real.p_male,
                "sex_in": real.sex, "sex_out": m.sex, "sex_flip": (m.sex != real.sex).astype(float),
                "sex_differs_from_label": np.where(faces.sex >= 0, (m.sex != faces.sex).astype(float), np.nan),
                "yaw_in": real.yaw, "yaw_out": m.yaw, "yaw_change": m.yaw - real.yaw,
                "abs_yaw_change": np.abs(m.yaw - real.yaw),
            }
            for role, net in nets.items():
                metric = net.spec.verification_metric
                a, b = real.embeddings[role], m.embeddings[role]
                score = pair_scores(a, b, metric)
                frame[f"{role}_cosine"] = pair_scores(a, b, "cosine")
                frame[f"{role}_score"] = score
                for row in thresholds:
                    if row["role"] == role:
                        frame[f"{role}_accepted_fmr_{row['fmr']:g}"] = (score >= row["threshold"]).astype(float)
            parts.append(pd.DataFrame(frame))
        return pd.concat(parts, ignore_index=True)

    def _estimator_real(self, per_face: pd.DataFrame, groups: AgeGroups) -> tuple[pd.DataFrame, dict[int, bool]]:
        """The age estimator on real faces of each group: can it judge outputs aimed at that group?"""
        rows, judged = [], {}
        rng = np.random.default_rng(self.seed)
        for g, label in enumerate(groups.labels):
            part = per_face[per_face["source_group"] == g]
            mae, mae_lo, mae_hi, _ = bootstrap_mean(part["abs_est_age_error"], self.n_boot, rng=rng)
            acc, acc_lo, acc_hi, _, _ = rate((part["est_group"] == g).astype(float))
            bias = float(part["est_age_error"].mean()) if len(part) else float("nan")
            if len(part) < self.min_real_faces:
                ok, reason = False, f"only {len(part)} real face(s) of this group (< {self.min_real_faces})"
            elif not mae <= self.max_estimator_mae:
                ok, reason = False, f"estimator MAE {mae:.1f} y on real faces > {self.max_estimator_mae:g} y"
            else:
                ok, reason = True, ""
            judged[g] = ok
            rows.append({"group": g, "group_label": label, "n": len(part), "mae": mae, "mae_ci_low": mae_lo,
                         "mae_ci_high": mae_hi, "bias": bias, "group_accuracy": acc, "group_accuracy_ci_low": acc_lo,
                         "group_accuracy_ci_high": acc_hi, "judged": ok, "reason": reason})
        return pd.DataFrame(rows), judged

    def _summary(self, per_output, labels, nets, judged) -> pd.DataFrame:
        parts = []
        for role, net in nets.items():
            metrics = [Metric(f"verification_rate_fmr_{f:g}", f"{role}_accepted_fmr_{f:g}", "rate",
                              f"outputs verified as their input at FMR {f:g}") for f in self.fmrs]
            metrics += [Metric("identity_cosine", f"{role}_cosine", "mean", "cosine of input and output templates"),
                        Metric("identity_score", f"{role}_score", "mean", "verification score (cosine or -L2)")]
            parts.append(summarise(per_output, metrics, labels, n_boot=self.n_boot, seed=self.seed,
                                   extra={"section": "identity", "role": role, "backbone": net.name}))
        age = [Metric("est_age_out", "est_age_out", "mean"), Metric("achieved_shift", "achieved_shift", "mean"),
               Metric("target_shift", "target_shift", "mean"), Metric("age_group_hit", "age_group_hit", "rate"),
               Metric("abs_error_midpoint", "abs_error_midpoint", "mean"),
               Metric("abs_error_range", "abs_error_range", "mean")]
        table = summarise(per_output, age, labels, n_boot=self.n_boot, seed=self.seed,
                          extra={"section": "age", "role": None, "backbone": None})
        table["judged"] = table["target_label"].map(lambda lab: judged[labels.index(lab)])
        parts.append(table)
        attrs = [Metric("sex_flip", "sex_flip", "rate"), Metric("sex_differs_from_label", "sex_differs_from_label",
                                                                 "rate"),
                 Metric("p_male_shift", "p_male_shift", "mean"), Metric("yaw_change", "yaw_change", "mean"),
                 Metric("abs_yaw_change", "abs_yaw_change", "mean")]
        parts.append(summarise(per_output, attrs, labels, n_boot=self.n_boot, seed=self.seed,
                               extra={"section": "attributes", "role": None, "backbone": None}))
        out = pd.concat(parts, ignore_index=True)
        if "judged" not in out:
            out["judged"] = None
        return out

    def _confusions(self, per_output, per_face, groups) -> tuple[pd.DataFrame, pd.DataFrame]:
        columns = [f"<{groups.lower[0]}"] + list(groups.labels)

        def table(rows, cols, row_labels, name):
            counts = np.zeros((len(row_labels), len(columns)), np.int64)
            for r, c in zip(rows, cols):
                counts[r, int(c) + 1] += 1
            frame = pd.DataFrame(counts, columns=columns)
            frame.insert(0, name, row_labels)
            return frame

        used = sorted(set(per_output["target"]))
        row_of = {t: i for i, t in enumerate(used)}
        confusion = table([row_of[t] for t in per_output["target"]], per_output["est_group_out"],
                          [groups.labels[t] for t in used], "target")
        confusion_real = table(per_face["source_group"].tolist(), per_face["est_group"],
                               list(groups.labels), "true_group")
        return confusion, confusion_real

    def _diversity(self, faces, outputs, targets, labels) -> tuple[pd.DataFrame, dict]:
        from probes.perceptual import MIN_SIDE, perceptual_distance

        n = len(faces)
        rng = np.random.default_rng(self.seed + 1)
        side = faces.image_size
        min_side = MIN_SIDE.get(self.lpips_net, 32)
        grow = side < min_side

        def lpips(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            out = []
            with torch.no_grad():
                for s in range(0, len(a), 64):
                    x, y = a[s:s + 64], b[s:s + 64]
                    if grow:
                        x, y = resize_faces(x, 2 * min_side), resize_faces(y, 2 * min_side)
                    out.append(perceptual_distance(x, y, net=self.lpips_net, device=self.device).cpu().numpy())
            return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

        def pairs(count: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
            if n < 2:
                return np.zeros(0, int), np.zeros(0, int)
            i = rng.integers(0, n, 4 * count)
            j = rng.integers(0, n, 4 * count)
            keep = i != j if allowed is None else (i != j) & allowed(i, j)
            return i[keep][:count], j[keep][:count]

        rows, flags = [], {"per_target": {}}
        bar = tqdm(total=3 + 2 * len(targets), desc="diversity (LPIPS)", unit="set", disable=not self.progress,
                   leave=False)

        def add(comparison, which, target, values):
            mean, low, high, k = bootstrap_mean(values, self.n_boot, rng=rng)
            rows.append({"comparison": comparison, "set": which, "target_label": target, "n_pairs": k,
                         "mean_lpips": mean, "ci_low": low, "ci_high": high})
            bar.update(1)
            return mean

        i, j = pairs(self.lpips_pairs)
        real_across = add("different inputs, same target", "real", "all", lpips(faces.images[i], faces.images[j]))
        gi, gj = pairs(self.lpips_pairs, lambda a, b: faces.group[a] != faces.group[b])
        real_ages = add("same input, different targets", "real", "all",
                        lpips(faces.images[gi], faces.images[gj]) if len(gi) else np.zeros(0))
        across_all, change_all = [], []
        for t in targets:
            values = lpips(outputs[t][i], outputs[t][j])
            across_all.append(values)
            mean = add("different inputs, same target", "outputs", labels[t], values)
            change = lpips(outputs[t], faces.images)
            change_all.append(change)
            add("output vs its input", "outputs", labels[t], change)
            ratio = mean / real_across if real_across > 0 else float("nan")
            flags["per_target"][labels[t]] = {"lpips_across_inputs": mean, "ratio_to_real": ratio,
                                              "collapsed": bool(ratio < self.collapse_fraction)}
        add("different inputs, same target", "outputs", "all", np.concatenate(across_all))
        add("output vs its input", "outputs", "all", np.concatenate(change_all))
        if len(targets) >= 2:
            k = rng.integers(0, n, self.lpips_pairs)
            ta = rng.integers(0, len(targets), self.lpips_pairs)
            tb = (ta + rng.integers(1, len(targets), self.lpips_pairs)) % len(targets)
            a = np.stack([outputs[targets[x]][f] for x, f in zip(ta, k)])
            b = np.stack([outputs[targets[x]][f] for x, f in zip(tb, k)])
            between = add("same input, different targets", "outputs", "all", lpips(a, b))
        else:
            between = float("nan")
        bar.close()
        across = float(np.mean(np.concatenate(across_all)))
        flags.update({
            "real_lpips_across_inputs": real_across, "outputs_lpips_across_inputs": across,
            "collapse_ratio": across / real_across if real_across > 0 else float("nan"),
            "collapse_fraction": self.collapse_fraction,
            "collapsed": bool(real_across > 0 and across / real_across < self.collapse_fraction),
            "real_lpips_different_age_groups": real_ages, "outputs_lpips_between_targets": between,
            "target_ratio": between / real_ages if real_ages and real_ages > 0 else float("nan"),
            "target_fraction": self.target_fraction,
            "ignores_target": bool(math.isfinite(between) and real_ages > 0
                                   and between / real_ages < self.target_fraction),
        })
        return pd.DataFrame(rows), flags

    def _expressivity(self, faces, outputs, targets, real, measured, net, age_lab, pose_lab):
        from probes.capture import LayerCapture
        from probes.expressivity import EstimationError
        from probes.expressivity.sweep import AttributeLabels, expressivity_sweep

        n = len(faces)
        if n < MIN_EXPRESSIVITY_FACES:
            return None, (f"expressivity sweep skipped: {n} faces (< {MIN_EXPRESSIVITY_FACES} needed for a held-out "
                          "probe)")
        attributes = [a for a in self.expressivity_attributes if a != "yaw" or pose_lab is not None]
        # One aged output per face, at a seeded random target: as many aged as original images.
        rng = np.random.default_rng(self.seed + 2)
        pick = np.asarray(targets)[rng.integers(0, len(targets), n)]
        aged = np.stack([outputs[t][k] for k, t in enumerate(pick)])
        capture = LayerCapture(net, layers=self.expressivity_layers, projection_dim=256, seed=self.seed,
                               batch_size=self.batch_size, progress=self.progress)
        sources = {"age": age_lab.name, "sex": age_lab.name, "yaw": getattr(pose_lab, "name", "none")}
        params = {self.expressivity: {"n_bootstrap": 100, "n_permutations": 100, **self.expressivity_params}}
        tables, problems = [], []
        for which, images, values in (
                ("original", faces.images, {"age": real.age, "sex": real.p_male, "yaw": real.yaw}),
                ("aged", aged, {"age": np.array([measured[t].age[k] for k, t in enumerate(pick)]),
                                "sex": np.array([measured[t].p_male[k] for k, t in enumerate(pick)]),
                                "yaw": np.array([measured[t].yaw[k] for k, t in enumerate(pick)])})):
            up = resize_faces(images, self.measure_size)
            features = capture.capture(up, LAYOUT)
            for a in attributes:
                y = np.asarray(values[a], np.float64)
                finite = y[np.isfinite(y)]
                if len(finite) and np.ptp(finite) <= 1e-4 * max(1.0, float(np.abs(finite).max())):
                    # One value for every image (e.g. a collapsed generator; batched convolutions differ in the
                    # last bits): nothing to know, I = 0 exactly.
                    problems.append(f"{a} on {which} faces is the same for every image: I = 0 at every layer")
                    tables.append(pd.DataFrame({"set": which, "layer": capture.layers,
                                                "depth": range(len(capture.layers)), "attribute": a,
                                                "estimator": self.expressivity, "estimate": 0.0, "ci_low": 0.0,
                                                "ci_high": 0.0, "n": len(finite), "label_source": sources[a]}))
                    continue
                try:
                    table = expressivity_sweep(features, {a: AttributeLabels(y, "continuous", sources[a])},
                                               estimators=[self.expressivity], seeds=[self.seed],
                                               layer_order=capture.layers, estimator_params=params,
                                               progress=self.progress)
                except EstimationError as exc:
                    problems.append(f"{a} on {which} faces not estimated: {exc}")
                    continue
                table.insert(0, "set", which)
                tables.append(table)
        note = ("Expressivity: " + "; ".join(problems) + ".") if problems else None
        if not tables:
            return None, note
        out = pd.concat(tables, ignore_index=True)
        out.insert(1, "backbone", net.name)
        return out, note

    def _load_decoder(self):
        """(decoder, its config, its backbone) of ``self.decoder``; CheckpointError for anything else."""
        from ..dfd.inputs import load_trained_decoder, rebuild_backbone

        decoder, config = load_trained_decoder(self.decoder, self.device)
        return decoder, config, rebuild_backbone(config, device=self.device)

    def _decoder(self, bundle, faces, outputs, targets, real, measured, nets, age_lab, gallery_idx):
        from probes.images import to_uint8

        from ..dfd.scoring import decode, identity_scores
        from ..dfd.templates import weights_key

        decoder, config, dnet = bundle
        n = len(faces)
        rest = np.setdiff1d(np.arange(n), gallery_idx)
        extra = np.random.default_rng(self.seed + 3).permutation(rest)[:max(0, self.decoder_faces - len(gallery_idx))]
        idx = np.concatenate([gallery_idx, np.sort(extra)]).astype(int)
        same = dnet.name == nets["train"].name and weights_key(dnet) == weights_key(nets["train"])

        def templates(images: np.ndarray, stored: np.ndarray) -> np.ndarray:
            if same:
                return stored[idx]
            up = resize_faces(images[idx], self.measure_size)
            return dnet.embed(up, LAYOUT, batch_size=self.batch_size)

        t_in = templates(faces.images, real.embeddings["train"])
        recon_in = to_uint8(decode(decoder, t_in, self.batch_size))
        age_recon_in = np.asarray(age_lab.predict(recon_in, "chip")["age"], np.float64)
        fid_in = identity_scores(dnet, recon_in, t_in, self.batch_size)["cosine"]
        rows, recon_out, recon_ages = [], {}, {}
        rng = np.random.default_rng(self.seed + 4)
        for t in tqdm(targets, desc="decoder reconstructions", unit="target", disable=not self.progress, leave=False):
            t_out = templates(outputs[t], measured[t].embeddings["train"])
            recon = to_uint8(decode(decoder, t_out, self.batch_size))
            recon_out[t] = recon
            fidelity = identity_scores(dnet, recon, t_out, self.batch_size)["cosine"]
            to_input = identity_scores(dnet, recon, t_in, self.batch_size)["cosine"]
            age_recon = np.asarray(age_lab.predict(recon, "chip")["age"], np.float64)
            recon_ages[t] = age_recon
            image_shift = measured[t].age[idx] - real.age[idx]
            template_shift = age_recon - age_recon_in
            for what, values in (("cosine recon(aged) vs aged template", fidelity),
                                 ("cosine recon(aged) vs input template", to_input),
                                 ("cosine recon(input) vs input template", fid_in),
                                 ("est. age of aged image", measured[t].age[idx]),
                                 ("est. age of recon(aged)", age_recon),
                                 ("est. age of recon(input)", age_recon_in),
                                 ("age shift in images (aged - input)", image_shift),
                                 ("age shift through templates (recon(aged) - recon(input))", template_shift)):
                mean, low, high, k = bootstrap_mean(values, self.n_boot, rng=rng)
                rows.append({"target_label": faces.groups.labels[t], "quantity": what, "n": k, "mean": mean,
                             "ci_low": low, "ci_high": high})
        position = {int(f): k for k, f in enumerate(idx)}
        shown = [position[int(f)] for f in gallery_idx]
        info = {"checkpoint": config.get("checkpoint"), "step": config.get("step"), "backbone": dnet.name,
                "weights_key": weights_key(dnet), "image_size": decoder.config.image_size, "n_faces": len(idx),
                "templates_shared_with_train_backbone": same,
                "training_data": (config.get("data") or {}).get("dataset")}
        recon = {"recon_inputs": recon_in[shown], "recon_outputs": {t: r[shown] for t, r in recon_out.items()},
                 "recon_input_age": age_recon_in[shown],
                 "recon_output_age": {t: a[shown] for t, a in recon_ages.items()}}
        return pd.DataFrame(rows), info, recon

    # ------------------------------------------------------------------ bookkeeping

    def _gallery_indices(self, faces: AgingFaces) -> np.ndarray:
        """Faces spread over source groups and ages (sorted by group, then age)."""
        k = min(self.gallery_size, len(faces))
        if k == 0:
            return np.zeros(0, int)
        order = np.lexsort((faces.ages, faces.group))
        return order[np.unique(np.linspace(0, len(faces) - 1, k).round().astype(int))]

    def _flags(self, estimator_real, judged, diversity_flags, thresholds, targets, labels) -> dict:
        unjudged = {labels[t]: estimator_real.loc[estimator_real["group"] == t, "reason"].iloc[0]
                    for t in targets if not judged[t]}
        fallback = sorted({r["backbone"] for r in thresholds if r["source"].startswith("UTKFace")})
        # A threshold from other faces (LFW) may let distinct audited faces through far more often than its FMR.
        loose = [{"backbone": r["backbone"], "fmr": r["fmr"], "utkface_impostor_accept_rate":
                  r["utkface_impostor_accept_rate"], "n_utkface_impostors": r["n_utkface_impostors"]}
                 for r in thresholds if not r["source"].startswith("UTKFace")
                 and r["n_utkface_impostors"] * r["fmr"] >= 1
                 and r["utkface_impostor_accept_rate"] > LOOSE_THRESHOLD_FACTOR * r["fmr"]]
        return {"collapsed": diversity_flags["collapsed"], "ignores_target": diversity_flags["ignores_target"],
                "diversity": diversity_flags, "age_not_judged": unjudged,
                "threshold_fallback_backbones": fallback, "loose_thresholds": loose}

    def _frame_note(self, size: int) -> str:
        return (f"Measurement frame: the GAN works on {size}x{size} faces. Face models refuse faces under half "
                f"their input size, so every image -- real inputs and aged outputs alike -- was brought up to "
                f"UTKFace's {self.measure_size}x{self.measure_size} frame by bicubic upsampling "
                f"(decoders.aging.data.resize_faces) and read with the '{LAYOUT}' layout. The real inputs are "
                f"UTKFace crops area-averaged down to {size} px and then brought up the same way, so real and "
                "generated faces pass through the same path.")

    def _configuration(self, nets, age_lab, pose_lab, decoder_info) -> dict:
        from ..dfd.templates import weights_key

        return {
            "backbones": {role: {"name": net.name, "weights_key": weights_key(net),
                                 "verification_metric": net.spec.verification_metric,
                                 "input_size": list(net.spec.input_size),
                                 "crop_utkface": list(net.spec.crop_for(LAYOUT))}
                          for role, net in nets.items()},
            "age_labeller": {"name": age_lab.name, "weights_id": getattr(age_lab, "weights_id", None)},
            "pose_labeller": (None if pose_lab is None else
                              {"name": pose_lab.name, "weights_id": getattr(pose_lab, "weights_id", None)}),
            "fmrs": list(self.fmrs), "use_lfw": self.use_lfw, "lfw_max_pairs": self.lfw_max_pairs,
            "data_root": None if self.data_root is None else str(self.data_root),
            "given_thresholds": {k: {str(f): v for f, v in d.items()} for k, d in (self.thresholds or {}).items()},
            "max_estimator_mae": self.max_estimator_mae, "min_real_faces": self.min_real_faces,
            "collapse_fraction": self.collapse_fraction, "target_fraction": self.target_fraction,
            "lpips": {"net": self.lpips_net, "version": "0.1", "pairs": self.lpips_pairs,
                      "frame": "the GAN's image size"},
            "expressivity": ({"estimator": self.expressivity, "params": self.expressivity_params,
                              "layers": list(self.expressivity_layers) if self.expressivity_layers else "tap layers",
                              "attributes": list(self.expressivity_attributes), "projection_dim": 256,
                              "labels": "estimated on each image (age, P(male): age labeller; yaw: pose labeller)",
                              "aged set": "one output per face at a seeded random target"}
                             if self.expressivity else None),
            "decoder": decoder_info, "decoder_faces": self.decoder_faces if self.decoder else None,
            "measure_size": self.measure_size, "layout": LAYOUT, "resize": "bicubic, antialiased when shrinking",
            "ci": "95%: Wilson score interval for rates, percentile bootstrap over faces for means",
            "n_boot": self.n_boot, "seed": self.seed, "batch_size": self.batch_size, "device": str(self.device),
            "torch_threads": torch.get_num_threads(), "versions": versions(),
        }


def default_name(model) -> str:
    """``IPCGANModel step 577`` (class name, plus the training step when the model records one)."""
    step = getattr(model, "step", None)
    return type(model).__name__ + (f" step {step}" if isinstance(step, (int, np.integer)) else "")


def accepts_source_groups(model, method: str = "age") -> bool:
    """Whether ``model.<method>`` takes a ``source_groups`` keyword (the inputs' own age groups)."""
    import inspect

    try:
        return "source_groups" in inspect.signature(getattr(model, method)).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def versions() -> dict:
    """Versions of Python, the libraries the audit uses, and the repository commit."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("torch", "numpy", "pandas", "scipy", "scikit-learn", "seaborn", "matplotlib", "lpips",
                    "pillow", "tqdm"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = None
    try:
        root = Path(__file__).resolve().parents[2]
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=10, check=False).stdout.strip()
        out["faceprobe_commit"] = (commit + (" (with uncommitted changes)" if dirty else "")) if commit else None
    except (OSError, subprocess.SubprocessError):
        out["faceprobe_commit"] = None
    return out
