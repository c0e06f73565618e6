"""A template decoder's view of aging: reconstructions of original and aged faces' templates.

A decoder (DFD) turns a face model's template back into a face; comparing the reconstruction of
an aged face's template with that of its input shows how much of the aging the template carries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from probes.backbones import FaceBackbone
from probes.images import to_uint8
from probes.stats import bootstrap_mean

from ..aging.data import resize_faces
from ..dfd.inputs import load_trained_decoder, rebuild_backbone
from ..dfd.model import FaceDecoder
from ..dfd.scoring import decode, identity_scores
from ..dfd.templates import weights_key
from .config import AuditConfig
from .measure import LAYOUT, AgedFaces, FaceReaders


@dataclass
class TemplateDecoder:
    """A trained decoder, its checkpoint's configuration, and the face model whose templates it decodes."""

    decoder: FaceDecoder
    config: dict
    backbone: FaceBackbone


def load_template_decoder(checkpoint, device: str) -> TemplateDecoder:
    """The decoder of ``checkpoint`` with its face model; CheckpointError for anything else."""
    decoder, config = load_trained_decoder(checkpoint, device)
    return TemplateDecoder(decoder, config, rebuild_backbone(config, device=device))


def decoded_faces(bundle: TemplateDecoder, aged: AgedFaces, readers: FaceReaders, gallery_idx: np.ndarray,
                  config: AuditConfig) -> tuple[pd.DataFrame, dict, dict]:
    """The decoder table (per target, with 95% CIs), a record of the decoder, and the gallery's reconstructions.

    The gallery's faces are decoded, plus a seeded draw of others up to ``decoder_faces``.
    """
    faces, real, measured = aged.faces, aged.real, aged.measured
    dnet = bundle.backbone
    rest = np.setdiff1d(np.arange(len(faces)), gallery_idx)
    extra = np.random.default_rng(config.seed + 3).permutation(rest)[:max(0, config.decoder_faces - len(gallery_idx))]
    idx = np.concatenate([gallery_idx, np.sort(extra)]).astype(int)
    train = readers.nets["train"]
    same = dnet.name == train.name and weights_key(dnet) == weights_key(train)

    def templates(images: np.ndarray, stored: np.ndarray) -> np.ndarray:
        if same:  # the templates the audit measured are the decoder's own
            return stored[idx]
        return dnet.embed(resize_faces(images[idx], config.measure_size), LAYOUT, batch_size=config.batch_size)

    t_in = templates(faces.images, real.embeddings["train"])
    recon_in = to_uint8(decode(bundle.decoder, t_in, config.batch_size))
    age_recon_in = np.asarray(readers.age.predict(recon_in, "chip")["age"], np.float64)
    fid_in = identity_scores(dnet, recon_in, t_in, config.batch_size)["cosine"]
    rows, recon_out, recon_ages = [], {}, {}
    rng = np.random.default_rng(config.seed + 4)
    for t in tqdm(aged.targets, desc="decoder reconstructions", unit="target", disable=not config.progress,
                  leave=False):
        t_out = templates(aged.outputs[t], measured[t].embeddings["train"])
        recon = to_uint8(decode(bundle.decoder, t_out, config.batch_size))
        recon_out[t] = recon
        age_recon = np.asarray(readers.age.predict(recon, "chip")["age"], np.float64)
        recon_ages[t] = age_recon
        quantities = {"cosine recon(aged) vs aged template": identity_scores(dnet, recon, t_out,
                                                                             config.batch_size)["cosine"],
                      "cosine recon(aged) vs input template": identity_scores(dnet, recon, t_in,
                                                                              config.batch_size)["cosine"],
                      "cosine recon(input) vs input template": fid_in,
                      "est. age of aged image": measured[t].age[idx],
                      "est. age of recon(aged)": age_recon,
                      "est. age of recon(input)": age_recon_in,
                      "age shift in images (aged - input)": measured[t].age[idx] - real.age[idx],
                      "age shift through templates (recon(aged) - recon(input))": age_recon - age_recon_in}
        rows += interval_rows(faces.groups.labels[t], quantities, config.n_boot, rng)
    position = {int(f): k for k, f in enumerate(idx)}
    shown = [position[int(f)] for f in gallery_idx]
    recon = {"recon_inputs": recon_in[shown], "recon_outputs": {t: r[shown] for t, r in recon_out.items()},
             "recon_input_age": age_recon_in[shown],
             "recon_output_age": {t: a[shown] for t, a in recon_ages.items()}}
    return pd.DataFrame(rows), decoder_record(bundle, len(idx), same), recon


def interval_rows(target_label: str, quantities: dict[str, np.ndarray], n_boot: int, rng: np.random.Generator
                  ) -> list[dict]:
    """One row per quantity: its mean over the decoded faces with a bootstrap interval."""
    rows = []
    for what, values in quantities.items():
        mean, low, high, k = bootstrap_mean(values, n_boot, rng=rng)
        rows.append({"target_label": target_label, "quantity": what, "n": k, "mean": mean, "ci_low": low,
                     "ci_high": high})
    return rows


def decoder_record(bundle: TemplateDecoder, n_faces: int, shared: bool) -> dict:
    """What the results record of the decoder: checkpoint, training step, face model, training data."""
    config, dnet = bundle.config, bundle.backbone
    return {"checkpoint": config.get("checkpoint"), "step": config.get("step"), "backbone": dnet.name,
            "weights_key": weights_key(dnet), "image_size": bundle.decoder.config.image_size, "n_faces": n_faces,
            "templates_shared_with_train_backbone": shared,
            "training_data": (config.get("data") or {}).get("dataset")}
