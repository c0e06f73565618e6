"""The aging audit as an API: ``AgingAudit(...).run(model, faces) -> AuditResult``.

The audit ages every face to every target, reads inputs and outputs alike in one measurement
frame (:mod:`.measure`), and measures identity (:mod:`.thresholds`, :mod:`.tables`), achieved age and
attribute drift (:mod:`.tables`), the GAN's training age reader beside the judge (:mod:`.age_readers`),
diversity (:mod:`.diversity`), realism (:mod:`.realism`), what the face model's layers encode
(:mod:`.expressivity`) and, with a template decoder, what templates carry of the aging
(:mod:`.reconstruction`); :mod:`.flagged` collects the outputs it flags.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..aging.data import AgingFaces
from ..aging.groups import AgeGroups, AgingError
from .age_readers import reader_flags, reader_table
from .config import AuditConfig
from .diversity import measure_diversity
from .expressivity import expressivity_table
from .flagged import flagged_counts, flagged_outputs, shown_flagged
from .measure import (
    ROLES,
    AgedFaces,
    FaceReaders,
    generate_outputs,
    load_readers,
    measure_images,
    prepare_faces,
)
from .realism import realism_table
from .reconstruction import decoded_faces, load_template_decoder
from .records import audit_flags, configuration_record, data_record, frame_note, model_notes, model_record
from .result import AuditResult
from .sources import check_model
from .tables import confusion_tables, estimator_on_real_faces, per_face_table, per_output_table, summary_table
from .thresholds import verification_thresholds


class AgingAudit(AuditConfig):
    """Audit an aging model on labelled faces.

    The keyword parameters are :class:`~decoders.audit.config.AuditConfig`'s (face models, labellers,
    FMRs, judging and collapse thresholds, expressivity, decoder, runtime); they are stored as given
    and checked by :meth:`run`.
    """

    def run(self, model, faces: AgingFaces, targets: Sequence[int] | None = None, name: str | None = None,
            selection: Mapping | None = None, command: Sequence[str] | None = None) -> AuditResult:
        """Age every face to every target, measure, and return an :class:`AuditResult`."""
        config = self.checked()
        started = time.perf_counter()
        seconds: dict[str, float] = {}
        name = name or getattr(model, "name", None) or default_name(model)
        model = check_model(model, f"aging model {name}")
        groups, size = model.groups, int(model.image_size)
        targets = audit_targets(groups, targets)
        faces, notes = prepare_faces(faces, groups, size)

        t0 = time.perf_counter()
        readers = load_readers(config, model)
        # A bad decoder checkpoint fails before any work.
        decoder = load_template_decoder(config.decoder, config.device) if config.decoder is not None else None
        seconds["load_models"] = time.perf_counter() - t0
        notes += model_notes(model)

        aged, thresholds = generate_and_measure(model, name, faces, targets, readers, config, seconds)
        tables, estimator_real, judged = measurement_tables(aged, readers, thresholds, config)
        readers_record = reader_flags(tables["age_readers"], readers) if "age_readers" in tables else None
        t0 = time.perf_counter()
        tables["diversity"], diversity_flags = measure_diversity(aged, groups.labels, config)
        seconds["diversity"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tables["realism"] = realism_table(aged, readers, config)
        seconds["realism"] = time.perf_counter() - t0
        tables["flagged"] = flagged_outputs(tables["per_output"], thresholds, judged, groups, config.fmrs[0])
        if config.expressivity:
            t0 = time.perf_counter()
            table, note = expressivity_table(aged, readers.nets["train"], readers, config)
            if table is not None:
                tables["expressivity"] = table
            if note:
                notes.append(note)
            seconds["expressivity"] = time.perf_counter() - t0

        gallery_idx = gallery_indices(faces, config.gallery_size)
        gallery = {"indices": gallery_idx.tolist(), "inputs": faces.images[gallery_idx],
                   "outputs": {t: aged.outputs[t][gallery_idx] for t in targets},
                   "flagged": shown_flagged(tables["flagged"], aged, config.flagged_size)}
        decoder_info = None
        if decoder is not None:
            t0 = time.perf_counter()
            tables["decoder"], decoder_info, recon = decoded_faces(decoder, aged, readers, gallery_idx, config)
            gallery.update(recon)
            seconds["decoder"] = time.perf_counter() - t0

        flags = audit_flags(estimator_real, judged, diversity_flags, thresholds, targets, groups.labels,
                            readers_record)
        flags["flagged_outputs"] = flagged_counts(tables["flagged"], tables["per_output"])
        seconds["total"] = time.perf_counter() - started
        return AuditResult(model_record(model, name, targets),
                           data_record(faces, tables["per_face"], selection, config.measure_size),
                           configuration_record(config, readers, decoder_info), tables, flags,
                           [frame_note(size, config.measure_size)] + notes, gallery,
                           {k: round(v, 2) for k, v in seconds.items()},
                           list(command) if command is not None else None)


def audit_targets(groups: AgeGroups, targets: Sequence[int] | None) -> list[int]:
    """The target groups to audit, sorted (all groups when None); AgingError names ``--targets`` if none."""
    targets = (list(range(len(groups))) if targets is None
               else sorted(set(groups.check(targets, argument="--targets").tolist())))
    if not targets:
        raise AgingError("no target group to audit (--targets is empty)")
    return targets


def generate_and_measure(model, name: str, faces: AgingFaces, targets: list[int], readers: FaceReaders,
                         config: AuditConfig, seconds: dict[str, float]) -> tuple[AgedFaces, list[dict]]:
    """Measure the real faces, set the thresholds, then generate and measure every target's outputs.

    Real faces come first: they are the baseline of everything, and thresholds before any
    generation let a missing LFW with too few faces fail early.
    """
    t0 = time.perf_counter()
    labels = model.groups.labels
    with tqdm(total=len(faces) * (1 + 2 * len(targets)), desc=f"audit {name}", unit="img",
              disable=not config.progress) as bar:
        bar.set_postfix_str("real faces")
        real = measure_images(faces.images, readers, config, bar)
        t1 = time.perf_counter()
        thresholds = [row for role in ROLES
                      for row in verification_thresholds(role, readers.nets[role], real.embeddings[role], config)]
        seconds["thresholds"] = time.perf_counter() - t1
        bar.set_postfix_str("generate")
        outputs = generate_outputs(model, faces, targets, f"aging model {name}", config.batch_size, bar)
        measured = {}
        for t in targets:
            bar.set_postfix_str(f"measure {labels[t]}")
            measured[t] = measure_images(outputs[t], readers, config, bar)
    seconds["generate_and_measure"] = time.perf_counter() - t0 - seconds["thresholds"]
    return AgedFaces(faces, targets, outputs, real, measured), thresholds


def measurement_tables(aged: AgedFaces, readers: FaceReaders, thresholds: list[dict], config: AuditConfig
                       ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, dict[int, bool]]:
    """The tidy tables (summary first; the training age reader's beside the judge's when there is one), the
    estimator's table on real faces, and which targets it can judge."""
    groups = aged.faces.groups
    per_face = per_face_table(aged.faces, aged.real)
    per_output = per_output_table(aged, readers.nets, thresholds)
    estimator_real, judged = estimator_on_real_faces(per_face, groups, config)
    summary = summary_table(per_output, groups.labels, readers.nets, judged, config)
    confusion, confusion_real = confusion_tables(per_output, per_face, groups)
    tables = {"summary": summary, "per_output": per_output, "per_face": per_face,
              "thresholds": pd.DataFrame(thresholds), "estimator_real": estimator_real,
              "confusion": confusion, "confusion_real": confusion_real}
    if readers.training_age is not None:
        tables["age_readers"] = reader_table(per_output, per_face, groups.labels, aged.targets, config)
    return tables, estimator_real, judged


def gallery_indices(faces: AgingFaces, size: int) -> np.ndarray:
    """Faces spread over source groups and ages (sorted by group, then age)."""
    k = min(size, len(faces))
    if k == 0:
        return np.zeros(0, int)
    order = np.lexsort((faces.ages, faces.group))
    return order[np.unique(np.linspace(0, len(faces) - 1, k).round().astype(int))]


def default_name(model) -> str:
    """``IPCGANModel step 577`` (class name, plus the training step when the model records one)."""
    step = getattr(model, "step", None)
    return type(model).__name__ + (f" step {step}" if isinstance(step, (int, np.integer)) else "")
