"""The audit's self-contained HTML report: figures and gallery images inlined as data URIs."""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from probes.images import data_uri
from probes.outputs import json_ready

from .figures import figure_png
from .stats import format_ci
from .views import breakdown_table, compact_json, headline_table

_CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:1.5em auto;max-width:1280px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px}
th{background:#f0f3f7;text-align:left}tr:nth-child(even) td{background:#fafafa}
.flag{padding:.6em 1em;border-radius:6px;margin:.4em 0}.bad{background:#fde2e1;border:1px solid #e39a97}
.warn{background:#fff4d6;border:1px solid #e5c66b}.ok{background:#e3f4e3;border:1px solid #8cc68c}
.note{color:#444;font-size:14px;background:#f6f6f6;padding:.5em 1em;border-left:4px solid #8aa}
img.fig{max-width:100%;height:auto;border:1px solid #eee;margin:.5em 0}
table.gallery td{text-align:center;vertical-align:top;font-size:11px;background:#fff !important}
table.gallery th{font-size:10px;max-width:110px;word-break:break-all}
table.gallery img{width:96px;height:96px;display:block;margin:0 auto}
td.recon{background:#f3f0fa !important}pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}
.wide{overflow-x:auto;max-width:100%}
"""


# --------------------------------------------------------------------------- helpers


def _esc(value) -> str:
    return html.escape(str(value))


def _table(frame: pd.DataFrame, index: bool = False) -> str:
    head = ([_esc(frame.index.name or "")] if index else []) + [_esc(c) for c in frame.columns]
    out = ["<div class='wide'><table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for key, row in frame.iterrows():
        cells = ([f"<th>{_esc(key)}</th>"] if index else []) + [f"<td>{_fmt(v)}</td>" for v in row.to_numpy()]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):.3f}"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if value is None:
        return ""
    return _esc(value)


def _flags_html(result) -> str:
    flags = result.flags
    out = []
    div = flags["diversity"]
    if flags["collapsed"]:
        out.append(("bad", (f"COLLAPSED: outputs of different inputs are {div['collapse_ratio']:.2f}x as different "
                           f"(LPIPS) as the real inputs (threshold {div['collapse_fraction']:g}x).")))
    else:
        out.append(("ok", (f"Not collapsed: outputs of different inputs are {div['collapse_ratio']:.2f}x as different "
                          f"(LPIPS) as the real inputs (collapse below {div['collapse_fraction']:g}x).")))
    if flags["ignores_target"]:
        out.append(("bad", (f"IGNORES THE TARGET: outputs of one input for different targets differ by LPIPS "
                           f"{div['outputs_lpips_between_targets']:.3f}, {div['target_ratio']:.2f}x the real faces "
                           f"of different age groups (threshold {div['target_fraction']:g}x).")))
    for label, reason in flags["age_not_judged"].items():
        out.append(("warn", (f"Achieved age NOT JUDGED for target {label}: {reason}. Its age numbers are shown "
                            "but left out of any verdict.")))
    for row in flags.get("loose_thresholds", []):
        out.append(("warn", (f"{row['backbone']}: at its LFW threshold for FMR {row['fmr']:g}, two different audited "
                             f"real faces pass {100 * row['utkface_impostor_accept_rate']:.2f}% of the time in this "
                             f"frame (of {row['n_utkface_impostors']} pairs), over 3x the nominal rate; read its "
                             "verification rates against that, not against the FMR.")))
    for name in flags["threshold_fallback_backbones"]:
        out.append(("warn", (f"{name}: no LFW threshold; the verification threshold comes from impostor pairs of "
                            "the audited UTKFace faces (distinct images taken as different people).")))
    return "\n".join(f"<div class='flag {kind}'>{_esc(text)}</div>" for kind, text in out)


def _img(image: np.ndarray, alt: str) -> str:
    return f"<img alt='{_esc(alt)}' src='{data_uri(np.ascontiguousarray(image))}'>"


def _gallery_html(result) -> str:
    gallery = result.gallery
    if not len(gallery["indices"]):
        return "<p>No faces shown (gallery size 0).</p>"
    faces = result.tables["per_face"]
    frame = result.tables["per_output"]
    targets = result.model["targets"]
    labels = result.model["groups"]["labels"]
    fmr = result.configuration["fmrs"][0]
    has_recon = "recon_inputs" in gallery
    head = ["input"] + [f"&rarr; {_esc(labels[t])}" for t in targets]
    out = ["<table class='gallery'><thead><tr><th>face</th>" + "".join(f"<th>{h}</th>" for h in head)
           + "</tr></thead><tbody>"]
    for k, f in enumerate(gallery["indices"]):
        info = faces.iloc[f]
        caption = (f"{int(info['age'])} y, {info['sex_label']}, {info['race_label']}<br>est {info['est_age']:.0f} y")
        cells = [f"<td>{_img(gallery['inputs'][k], 'input')}{caption}</td>"]
        for t in targets:
            row = frame[(frame["face"] == f) & (frame["target"] == t)].iloc[0]
            ok = "".join("&#10003;" if row[f"{role}_accepted_fmr_{fmr:g}"] else "&#10007;"
                         for role in ("train", "independent"))
            cap = (f"est {row['est_age_out']:.0f} y<br>cos {row['train_cosine']:.2f}/"
                   f"{row['independent_cosine']:.2f} {ok}")
            cells.append(f"<td>{_img(gallery['outputs'][t][k], labels[t])}{cap}</td>")
        out.append(f"<tr><th rowspan='{2 if has_recon else 1}'>{_esc(info['file'])}</th>{''.join(cells)}</tr>")
        if has_recon:
            rc = [(f"<td class='recon'>{_img(gallery['recon_inputs'][k], 'reconstruction of input')}"
                  f"recon, est {gallery['recon_input_age'][k]:.0f} y</td>")]
            for t in targets:
                rc.append(f"<td class='recon'>{_img(gallery['recon_outputs'][t][k], 'reconstruction')}"
                          f"recon, est {gallery['recon_output_age'][t][k]:.0f} y</td>")
            out.append("<tr>" + "".join(rc) + "</tr>")
    out.append("</tbody></table>")
    backbones = result.configuration["backbones"]
    legend = (f"Captions: estimated age ({_esc(result.configuration['age_labeller']['name'])}); cosine of input and "
              f"output templates for {_esc(backbones['train']['name'])} / {_esc(backbones['independent']['name'])}, "
              f"&#10003; = verified as the input at FMR {fmr:g} by each.")
    if has_recon:
        legend += (" Shaded rows: the decoder's reconstructions from each image's template (what the face model "
                   "keeps of it), with the age the same estimator reads from them.")
    return f"<p class='note'>{legend}</p>" + "\n".join(out)


def render_report(result, figures: dict[str, bytes] | None = None) -> str:
    """The report as one HTML string. ``figures``: PNG bytes by name (rendered here when None)."""
    if figures is None:
        figures = {name: figure_png(fig) for name, fig in result.figures().items()}

    def fig(name: str) -> str:
        if name not in figures:
            return ""
        return (f"<img class='fig' alt='{_esc(name)} figure' "
                f"src='data:image/png;base64,{base64.b64encode(figures[name]).decode('ascii')}'>")

    parts = _opening(result)
    for section in (_identity_section, _age_section, _attributes_section, _diversity_section,
                    _expressivity_section):
        parts += section(result, fig)
    parts += _decoder_section(result)
    parts += ["<h2>Gallery</h2>", _gallery_html(result)]
    config = {"command": result.command, "model": result.model, "data": result.data,
              "configuration": result.configuration, "seconds": result.seconds}
    parts += ["<h2>Configuration and versions</h2>", f"<pre>{_esc(compact_json(json_ready(config)))}</pre>",
              "</body></html>"]
    return "\n".join(parts)


def _opening(result) -> list[str]:
    """Title, what was audited, the verdict flags, the per-target headline and the notes."""
    bb = result.configuration["backbones"]
    title = f"Aging audit: {result.model['name']}"
    parts = [(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
             f"<style>{_CSS}</style></head><body>"), f"<h1>{_esc(title)}</h1>",
             (f"<p>{result.data['n_faces']} UTKFace faces ({_esc(result.data['selection'].get('selection', ''))}), "
             f"{result.model['groups']['name']} groups, targets {', '.join(map(_esc, result.model['target_labels']))}; "
             f"GAN image size {result.model['image_size']} px. Face models: {_esc(bb['train']['name'])} (the GAN's "
             f"training model) and {_esc(bb['independent']['name'])} (independent). Generated "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} in "
             f"{result.seconds.get('total', 0):.0f} s.</p>"),
             "<h2>Verdict flags</h2>", _flags_html(result),
             "<h2>Per target</h2>", _table(headline_table(result)),
             (f"<p class='note'>All intervals are 95%. Rates and means over outputs resample source faces "
              f"({_esc(result.configuration.get('interval_unit', ''))}): one face gives one output per target, so "
              "its outputs are not independent. A rate where every output succeeds (or fails) gets a Wilson "
              "interval over the source faces instead. 'all targets' columns pool every target.</p>")]
    parts += [f"<p class='note'>{_esc(n)}</p>" for n in result.notes]
    return parts


def _identity_section(result, fig) -> list[str]:
    """Thresholds, identity figure, and verification rates by group for each face model."""
    fmr = result.configuration["fmrs"][0]
    bb = result.configuration["backbones"]
    thr = result.tables["thresholds"].copy()
    show = ["role", "backbone", "fmr", "describe", "source", "impostor_set", "n_impostors", "lfw_genuine_accept_rate",
            "utkface_impostor_accept_rate", "n_utkface_impostors"]
    parts = ["<h2>Identity preservation</h2>",
             ("<p>Each output is compared with its own input (both in the measurement frame) by each face model; "
             "verified = the score passes the face model's threshold at the FMR. <i>utkface_impostor_accept_rate</i> "
             "is how often two different audited real faces pass that threshold in this frame (the FMR actually "
             "met on these faces).</p>"),
             _table(thr[[c for c in show if c in thr.columns]]), fig("identity")]
    for role in ("train", "independent"):
        table = breakdown_table(result, f"verification_rate_fmr_{fmr:g}", role, percent=True)
        kind = "GAN training" if role == "train" else "independent"
        parts += [f"<h3>Verification rate @ FMR {fmr:g}, {_esc(bb[role]['name'])} ({kind}) by group</h3>",
                  _table(table, index=True)]
    return parts


def _age_section(result, fig) -> list[str]:
    """How well the estimator reads real faces, the age figure, and age hits and shifts by group."""
    cfg = result.configuration
    est = result.tables["estimator_real"].copy()
    parts = ["<h2>Achieved age</h2>",
             (f"<p>Estimator: {_esc(cfg['age_labeller']['name'])} (not the GAN's own age loss). First, how well it "
             f"reads real faces of each group in this same frame; a target group whose real-face MAE exceeds "
             f"{cfg['max_estimator_mae']:g} years (or has fewer than {cfg['min_real_faces']} real faces) is "
             "<b>not judged</b>.</p>"), _table(est), fig("age")]
    for metric, percent, what in (("age_group_hit", True, "outputs estimated in the target group"),
                                  ("achieved_shift", False, "estimated age shift, output - input (years)")):
        parts += [f"<h3>{_esc(what)} by group</h3>",
                  _table(breakdown_table(result, metric, percent=percent), index=True)]
    return parts


def _attributes_section(result, fig) -> list[str]:
    """Sex flips and yaw changes."""
    pose = (result.configuration.get("pose_labeller") or {}).get("name", "none")
    return ["<h2>Attribute drift</h2>",
            ("<p>Sex: the age labeller's estimate on input and output (flip = it changes); yaw: "
             f"{_esc(pose)} (an estimate).</p>"), fig("attributes"),
            "<h3>Sex flip rate by group</h3>", _table(breakdown_table(result, "sex_flip", percent=True), index=True)]


def _diversity_section(result, fig) -> list[str]:
    """LPIPS of outputs beside real faces."""
    net = result.configuration["lpips"]["net"]
    return ["<h2>Diversity and collapse</h2>",
            (f"<p>LPIPS ({_esc(net)}, v0.1) at the GAN's size between outputs of different inputs for "
             "the same target, between outputs of one input for different targets, and between each output and its "
             "input, beside the same on real faces (for 'different targets' the real counterpart is pairs of real "
             "faces from different age groups).</p>"), fig("diversity"), _table(result.tables["diversity"])]


def _expressivity_section(result, fig) -> list[str]:
    """The expressivity sweep, originals beside aged outputs (when measured)."""
    if "expressivity" not in result.tables:
        return []
    table = result.tables["expressivity"]
    wide = table.pivot_table(index=["depth", "layer"], columns=["attribute", "set"], values="estimate")
    order = [(a, s) for a in dict.fromkeys(table["attribute"]) for s in ("original", "aged") if (a, s) in wide]
    wide = wide[order]
    wide.columns = [f"{a} ({s})" for a, s in wide.columns]
    wide = wide.reset_index(level="depth", drop=True)
    return ["<h2>What the face model sees</h2>",
            (f"<p>Expressivity I(layer; attribute) in nats ({_esc(table['estimator'].iloc[0])} estimator) of "
             f"{_esc(table['backbone'].iloc[0])}'s layers for original faces and for aged outputs (one per face, "
             "at a random target). Labels are estimated on each image by the same labellers.</p>"),
            fig("expressivity"), _table(wide, index=True)]


def _decoder_section(result) -> list[str]:
    """The decoder's reconstructions of original and aged templates (when measured)."""
    if "decoder" not in result.tables:
        return []
    d = result.configuration["decoder"]
    wide = result.tables["decoder"].assign(
        cell=lambda f: [format_ci(m, lo, hi, digits=3) for m, lo, hi in zip(f["mean"], f["ci_low"], f["ci_high"])])
    wide = wide.pivot_table(index="quantity", columns="target_label", values="cell", aggfunc="first")
    wide = wide[[t for t in result.model["target_labels"] if t in wide.columns]]
    return ["<h3>Decoder reconstructions of templates</h3>",
            (f"<p>Decoder {_esc(d['checkpoint'])} (step {d['step']}, trained on {_esc(d['training_data'])} "
             f"templates of {_esc(d['backbone'])}), {d['n_faces']} faces. A template is decoded to a "
             f"{d['image_size']} px face; the age labeller reads it as a 'chip'. Comparing recon(aged) with "
             "recon(input) shows how much of the aging the template carries.</p>"), _table(wide, index=True)]
