"""Verification thresholds of each face model at the audit's false match rates.

From LFW's ``pairs.txt`` when it is there; else from impostor pairs of the audited real faces
(distinct UTKFace images taken as different people); ``thresholds`` given by hand override both.
"""

from __future__ import annotations

import numpy as np

from probes.backbones import FaceBackbone
from probes.errors import DatasetError
from probes.verification import (
    LFWScores,
    VerificationError,
    cross_identity_scores,
    threshold_at_fmr,
    thresholds_at_fmrs,
)

from ..dfd.lfw_scores import lfw_pair_scores
from .config import AuditConfig
from .sources import AuditError


def verification_thresholds(role: str, net: FaceBackbone, real_emb: np.ndarray, config: AuditConfig) -> list[dict]:
    """One row per FMR: the threshold, where it comes from, and how often distinct audited faces pass it."""
    metric = net.spec.verification_metric
    n = len(real_emb)
    # UTKFace has no identity labels: distinct images are taken as different people.
    utk = cross_identity_scores(real_emb, np.arange(n).astype(str), metric)
    given = (config.thresholds or {}).get(net.name)
    lfw, lfw_error = None, None
    if given is None and config.use_lfw:
        try:
            lfw = lfw_pair_scores(net, config.data_root, cache_dir=config.cache_dir, max_pairs=config.lfw_max_pairs,
                                  seed=config.seed, progress=config.progress)
        except DatasetError as exc:
            lfw_error = str(exc)
    elif given is None:
        lfw_error = "LFW not used (use_lfw=False / --no-lfw)"
    rows = []
    for fmr in config.fmrs:
        row = {"role": role, "backbone": net.name, "metric": metric, "fmr": fmr, "lfw_genuine_accept_rate": None,
               "n_lfw_genuine": None, "note": ""}
        row.update(threshold_source(net.name, fmr, given, lfw, utk, lfw_error))
        accepted = int((utk >= row["threshold"]).sum())
        row.update(utkface_impostor_accept_rate=accepted / len(utk) if len(utk) else float("nan"),
                   n_utkface_impostors=len(utk),
                   describe=(f"L2 <= {-row['threshold']:.4f}" if metric == "euclidean"
                             else f"cos >= {row['threshold']:.4f}"))
        rows.append(row)
    return rows


def threshold_source(name: str, fmr: float, given: dict | None, lfw: LFWScores | None, utk: np.ndarray,
                     lfw_error: str | None) -> dict:
    """The threshold of face model ``name`` at ``fmr``: given, from LFW, or from the UTKFace impostor scores."""
    if given is not None:
        if fmr not in given:
            raise AuditError(f"thresholds for {name} give no value at FMR {fmr:g}")
        return {"threshold": float(given[fmr]), "source": "given", "impostor_set": "given", "n_impostors": None}
    if lfw is not None:
        t = thresholds_at_fmrs(lfw, [fmr], "auto")[0]
        return {"threshold": t.threshold, "source": "LFW pairs.txt", "impostor_set": t.impostor_set,
                "n_impostors": t.n_impostors, "lfw_genuine_accept_rate": t.genuine_accept_rate,
                "n_lfw_genuine": t.n_genuine}
    try:
        threshold = threshold_at_fmr(utk, fmr)
    except VerificationError as exc:
        raise AuditError(f"no LFW for {name} ({lfw_error}) and too few audited faces for a UTKFace "
                         f"threshold at FMR {fmr:g}: {exc}; audit more faces (--max-images) or raise "
                         "--fmr") from exc
    return {"threshold": threshold, "source": "UTKFace impostor pairs (fallback)",
            "impostor_set": "utkface-distinct-images", "n_impostors": len(utk), "note": f"LFW unavailable: {lfw_error}"}
