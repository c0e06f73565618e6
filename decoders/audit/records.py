"""What an audit records beside its tables: the verdict flags, the model, the faces and the configuration."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch

from probes.outputs import provenance

from ..aging.data import AgingFaces
from ..dfd.templates import weights_key
from .config import AuditConfig
from .expressivity import PROJECTION_DIM
from .measure import LAYOUT, FaceReaders, accepts_source_groups, is_invertible
from .stats import interval_unit

LOOSE_THRESHOLD_FACTOR = 3.0  # flag thresholds passing distinct audited faces at > 3x their FMR
# The libraries whose versions every results file records.
AUDIT_PACKAGES = ("torch", "numpy", "pandas", "scipy", "scikit-learn", "seaborn", "matplotlib", "lpips", "pillow",
                  "tqdm")


def audit_flags(estimator_real: pd.DataFrame, judged: Mapping[int, bool], diversity_flags: dict,
                thresholds: list[dict], targets: Sequence[int], labels: Sequence[str],
                age_readers: dict | None = None) -> dict:
    """The verdict flags: collapse, ignored target, groups whose age is not judged, thresholds to read with care,
    and whether the generator fools its own age loss (``age_readers``: :func:`~.age_readers.reader_flags`)."""
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
            "threshold_fallback_backbones": fallback, "loose_thresholds": loose,
            "fools_own_age_loss": bool(age_readers and age_readers["fools_own_age_loss"]),
            "age_readers": age_readers}


def model_notes(model) -> list[str]:
    """Notes on how the model was asked for its outputs (inverted once; given the inputs' age groups)."""
    notes = []
    invertible = is_invertible(model)
    if invertible:
        notes.append("The model inverts faces to a latent (invert) and draws them at a group (generate): each "
                     "face was inverted once and drawn at every target from that latent.")
    if accepts_source_groups(model, "invert" if invertible else "age"):
        notes.append("The model takes the inputs' own age groups (source_groups); the groups of their UTKFace "
                     "age labels were passed.")
    return notes


def frame_note(size: int, measure_size: int) -> str:
    """The report's note on the measurement frame every image was read in."""
    return (f"Measurement frame: the GAN works on {size}x{size} faces. Face models refuse faces under half "
            f"their input size, so every image -- real inputs and aged outputs alike -- was brought up to "
            f"UTKFace's {measure_size}x{measure_size} frame by bicubic upsampling "
            f"(decoders.aging.data.resize_faces) and read with the '{LAYOUT}' layout. The real inputs are "
            f"UTKFace crops area-averaged down to {size} px and then brought up the same way, so real and "
            "generated faces pass through the same path.")


def model_record(model, name: str, targets: Sequence[int]) -> dict:
    """The audited model: name, class, groups, image size, targets, and its checkpoint/config/step/inversion."""
    groups, size = model.groups, int(model.image_size)
    invertible = is_invertible(model)
    reader = getattr(model, "training_age_reader", None)
    info = {"name": name, "class": type(model).__name__, "groups": groups.to_dict(), "image_size": size,
            "identity_backbone": getattr(model, "identity_backbone", None),
            "training_age_reader": reader if isinstance(reader, str) else None,
            "given_source_groups": accepts_source_groups(model, "invert" if invertible else "age"),
            "inverted_once": invertible,
            "targets": [int(t) for t in targets], "target_labels": [groups.labels[t] for t in targets]}
    for attr in ("checkpoint", "config", "step", "inversion"):
        value = getattr(model, attr, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {k: v for k, v in dataclasses.asdict(value).items()
                     if isinstance(v, (str, int, float, bool, type(None), list, tuple))}
        if isinstance(value, (str, int, float, dict, Path)):
            info[attr] = str(value) if isinstance(value, Path) else value
    return info


def data_record(faces: AgingFaces, per_face: pd.DataFrame, selection: Mapping | None, measure_size: int) -> dict:
    """The audited faces: how they were chosen, and how many by source group, sex and race."""
    labels = faces.groups.labels
    return {"n_faces": len(faces), "selection": dict(selection or {}),
            "by_source_group": {labels[g]: int((faces.group == g).sum()) for g in range(len(faces.groups))},
            "by_sex": per_face["sex_label"].value_counts().to_dict(),
            "by_race": per_face["race_label"].value_counts().to_dict(),
            "image_size": faces.image_size, "measure_size": measure_size, "layout": LAYOUT,
            "paths_sample": [str(p) for p in faces.paths[:5]]}


def configuration_record(config: AuditConfig, readers: FaceReaders, decoder_info: dict | None) -> dict:
    """Every setting the numbers depend on, the face models' and labellers' identities, and the versions."""
    age_lab, pose_lab = readers.age, readers.pose
    return {
        "backbones": {role: {"name": net.name, "weights_key": weights_key(net),
                             "verification_metric": net.spec.verification_metric,
                             "input_size": list(net.spec.input_size),
                             "crop_utkface": list(net.spec.crop_for(LAYOUT))}
                      for role, net in readers.nets.items()},
        "age_labeller": {"name": age_lab.name, "weights_id": getattr(age_lab, "weights_id", None)},
        "training_age_reader": (None if readers.training_age is None else
                                {"name": readers.training_age.name,
                                 "weights_id": getattr(readers.training_age, "weights_id", None),
                                 "same_network_as_judge": readers.training_is_judge}),
        "pose_labeller": (None if pose_lab is None else
                          {"name": pose_lab.name, "weights_id": getattr(pose_lab, "weights_id", None)}),
        "fmrs": list(config.fmrs), "use_lfw": config.use_lfw, "lfw_max_pairs": config.lfw_max_pairs,
        "data_root": None if config.data_root is None else str(config.data_root),
        "given_thresholds": {k: {str(f): v for f, v in d.items()} for k, d in (config.thresholds or {}).items()},
        "max_estimator_mae": config.max_estimator_mae, "min_real_faces": config.min_real_faces,
        "collapse_fraction": config.collapse_fraction, "target_fraction": config.target_fraction,
        "lpips": {"net": config.lpips_net, "version": "0.1", "pairs": config.lpips_pairs,
                  "frame": "the GAN's image size"},
        "expressivity": expressivity_record(config),
        "decoder": decoder_info, "decoder_faces": config.decoder_faces if config.decoder else None,
        "measure_size": config.measure_size, "layout": LAYOUT, "resize": "bicubic, antialiased when shrinking",
        "ci": ("95%: summary rates and means resample source faces (interval_unit; a rate where every output "
               "succeeds or fails gets a Wilson interval over the source faces); the estimator's accuracy on real "
               "faces is a Wilson interval over those faces"), "interval_unit": interval_unit(config.n_boot),
        "n_boot": config.n_boot, "seed": config.seed, "batch_size": config.batch_size, "device": str(config.device),
        "torch_threads": torch.get_num_threads(), "versions": provenance(AUDIT_PACKAGES),
    }


def expressivity_record(config: AuditConfig) -> dict | None:
    if not config.expressivity:
        return None
    return {"estimator": config.expressivity, "params": config.expressivity_params,
            "layers": list(config.expressivity_layers) if config.expressivity_layers else "tap layers",
            "attributes": list(config.expressivity_attributes), "projection_dim": PROJECTION_DIM,
            "labels": "estimated on each image (age, P(male): age labeller; yaw: pose labeller)",
            "aged set": "one output per face at a seeded random target"}
