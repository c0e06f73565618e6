"""The audit's self-contained HTML report: figures and face images inlined as data URIs.

It opens with the aged faces (:mod:`.gallery`), then the verdict flags and the per-target headline,
the flagged faces, and one section per measurement.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone

from probes.outputs import json_ready

from .figures import figure_png
from .gallery import aged_faces_html, flagged_html
from .markup import CSS, esc, table
from .stats import format_ci
from .views import breakdown_table, compact_json, headline_table


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
    out += _reader_flags(flags.get("age_readers"))
    return "\n".join(f"<div class='flag {kind}'>{esc(text)}</div>" for kind, text in out)


def _reader_flags(record: dict | None) -> list[tuple[str, str]]:
    """The training age reader against the judge: fooled, no independent judgement, or consistent."""
    if record is None:
        return []
    if record["same_network"]:
        return [("warn", (f"The GAN's training age reader is the judge's own network ({record['judge']}): no "
                          "independent judgement of the age reached. Audit with another --age-labeller."))]
    if record["fools_own_age_loss"]:
        return [("bad", (f"FOOLS ITS OWN AGE LOSS RATHER THAN AGING THE FACE: {'; '.join(record['reasons'])}. "
                         f"Training reader {record['training_reader']}, judge {record['judge']}."))]
    return [("ok", (f"Training age reader ({record['training_reader']}) and judge ({record['judge']}) agree: judge's "
                    f"span {record['judge_span']:.1f} y vs reader's {record['reader_span']:.1f} y, largest gap "
                    f"{record['max_abs_gap']:.1f} y (flags below {record['span_fraction']:g}x the span or over "
                    f"{record['gap_years']:g} y)."))]


def render_report(result, figures: dict[str, bytes] | None = None) -> str:
    """The report as one HTML string. ``figures``: PNG bytes by name (rendered here when None)."""
    if figures is None:
        figures = {name: figure_png(fig) for name, fig in result.figures().items()}

    def fig(name: str) -> str:
        if name not in figures:
            return ""
        return (f"<img class='fig' alt='{esc(name)} figure' "
                f"src='data:image/png;base64,{base64.b64encode(figures[name]).decode('ascii')}'>")

    parts = _opening(result)
    for section in (_identity_section, _age_section, _attributes_section, _diversity_section, _realism_section,
                    _expressivity_section):
        parts += section(result, fig)
    parts += _decoder_section(result)
    config = {"command": result.command, "model": result.model, "data": result.data,
              "configuration": result.configuration, "seconds": result.seconds}
    parts += ["<h2>Configuration and versions</h2>", f"<pre>{esc(compact_json(json_ready(config)))}</pre>",
              "</body></html>"]
    return "\n".join(parts)


def _opening(result) -> list[str]:
    """Title, what was audited, the aged faces, the verdict flags, the per-target headline, the notes and the
    flagged faces."""
    bb = result.configuration["backbones"]
    title = f"Aging audit: {result.model['name']}"
    parts = [(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{CSS}</style></head><body>"), f"<h1>{esc(title)}</h1>",
             (f"<p>{result.data['n_faces']} UTKFace faces ({esc(result.data['selection'].get('selection', ''))}), "
             f"{result.model['groups']['name']} groups, targets {', '.join(map(esc, result.model['target_labels']))}; "
             f"GAN image size {result.model['image_size']} px. Face models: {esc(bb['train']['name'])} (the GAN's "
             f"training model) and {esc(bb['independent']['name'])} (independent). Generated "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} in "
             f"{result.seconds.get('total', 0):.0f} s.</p>"),
             "<h2>Aged faces</h2>", aged_faces_html(result),
             "<h2>Verdict flags</h2>", _flags_html(result),
             "<h2>Per target</h2>", table(headline_table(result)),
             (f"<p class='note'>All intervals are 95%. Rates and means over outputs resample source faces "
              f"({esc(result.configuration.get('interval_unit', ''))}): one face gives one output per target, so "
              "its outputs are not independent. A rate where every output succeeds (or fails) gets a Wilson "
              "interval over the source faces instead. 'all targets' columns pool every target.</p>")]
    parts += [f"<p class='note'>{esc(n)}</p>" for n in result.notes]
    return parts + ["<h2>Flagged faces</h2>", flagged_html(result)]


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
             table(thr[[c for c in show if c in thr.columns]]), fig("identity")]
    for role in ("train", "independent"):
        rates = breakdown_table(result, f"verification_rate_fmr_{fmr:g}", role, percent=True)
        kind = "GAN training" if role == "train" else "independent"
        parts += [f"<h3>Verification rate @ FMR {fmr:g}, {esc(bb[role]['name'])} ({kind}) by group</h3>",
                  table(rates, index=True)]
    return parts


def _age_section(result, fig) -> list[str]:
    """How well the estimator reads real faces, the age figure, and age hits and shifts by group."""
    cfg = result.configuration
    est = result.tables["estimator_real"].copy()
    parts = ["<h2>Achieved age</h2>",
             (f"<p>Estimator: {esc(cfg['age_labeller']['name'])} (not the GAN's own age loss). First, how well it "
             f"reads real faces of each group in this same frame; a target group whose real-face MAE exceeds "
             f"{cfg['max_estimator_mae']:g} years (or has fewer than {cfg['min_real_faces']} real faces) is "
             "<b>not judged</b>.</p>"), table(est), fig("age")]
    for metric, percent, what in (("age_group_hit", True, "outputs estimated in the target group"),
                                  ("achieved_shift", False, "estimated age shift, output - input (years)")):
        parts += [f"<h3>{esc(what)} by group</h3>",
                  table(breakdown_table(result, metric, percent=percent), index=True)]
    return parts + _readers_part(result)


def _readers_part(result) -> list[str]:
    """The GAN's training age reader beside the judge, per target (when the model names its reader)."""
    if "age_readers" not in result.tables:
        return []
    record = result.flags["age_readers"]
    frame = result.tables["age_readers"]
    wide = frame.assign(**{
        "judge (y)": [format_ci(v, lo, hi, digits=1) for v, lo, hi in
                      zip(frame["judge_age"], frame["judge_age_ci_low"], frame["judge_age_ci_high"])],
        "training reader (y)": [format_ci(v, lo, hi, digits=1) for v, lo, hi in
                                zip(frame["reader_age"], frame["reader_age_ci_low"], frame["reader_age_ci_high"])],
        "gap, reader - judge (y)": [format_ci(v, lo, hi, digits=1) for v, lo, hi in
                                    zip(frame["gap"], frame["gap_ci_low"], frame["gap_ci_high"])]})
    show = ["target_label", "n_outputs", "n_sources", "judge (y)", "training reader (y)", "gap, reader - judge (y)",
            "real_n", "real_judge_age", "real_reader_age", "real_gap"]
    same = (" It is the judge's own network: the two columns are one reading, and say nothing independent."
            if record["same_network"] else "")
    return ["<h3>The GAN's training age reader beside the judge</h3>",
            (f"<p>The generator was trained against {esc(record['training_reader'])}; every output was read by it "
             f"and by the judge ({esc(record['judge'])}). A generator that fools its age loss moves the reader's "
             f"age but not the judge's: flagged when the judge's span over the targets (oldest minus youngest "
             f"target) is under {record['span_fraction']:g}x the reader's, or a target's gap exceeds "
             f"{record['gap_years']:g} years. The real_* columns read the real faces of each group (the two "
             f"networks' disagreement on real faces). Intervals over source faces.{same}</p>"),
            table(wide[show])]


def _attributes_section(result, fig) -> list[str]:
    """Sex flips and yaw changes."""
    pose = (result.configuration.get("pose_labeller") or {}).get("name", "none")
    return ["<h2>Attribute drift</h2>",
            ("<p>Sex: the age labeller's estimate on input and output (flip = it changes); yaw: "
             f"{esc(pose)} (an estimate).</p>"), fig("attributes"),
            "<h3>Sex flip rate by group</h3>", table(breakdown_table(result, "sex_flip", percent=True), index=True)]


def _diversity_section(result, fig) -> list[str]:
    """LPIPS of outputs beside real faces."""
    net = result.configuration["lpips"]["net"]
    return ["<h2>Diversity and collapse</h2>",
            (f"<p>LPIPS ({esc(net)}, v0.1) at the GAN's size between outputs of different inputs for "
             "the same target, between outputs of one input for different targets, and between each output and its "
             "input, beside the same on real faces (for 'different targets' the real counterpart is pairs of real "
             "faces from different age groups).</p>"), fig("diversity"), table(result.tables["diversity"])]


def _realism_section(result, fig) -> list[str]:
    """Fréchet distances of each target's outputs to real faces of its group, beside the floor."""
    if "realism" not in result.tables:
        return []
    frame = result.tables["realism"]
    show = [c for c in ("target_label", "space", "real_faces_of_group", "outputs_of_target", "faces_per_side",
                        "feature_dim", "dim_used", "frechet", "frechet_low", "frechet_high", "floor", "floor_low",
                        "floor_high", "ratio_to_floor", "reduction") if c in frame]
    splits = int(frame["splits"].iloc[0]) if len(frame) else 0
    return ["<h2>Realism</h2>",
            ("<p>Fréchet distance (FID's formula) between the outputs aimed at a group and the audited real faces "
             "whose true age falls in it, beside its floor: the same distance between two random halves of those "
             "real faces. Each split draws the halves (faces_per_side each) and as many outputs of other sources; "
             "distance = FD(outputs, half 1), floor = FD(half 2, half 1), so both compare sets of one size. Spaces: "
             "each face model's embeddings, and LPIPS' AlexNet trunk (conv1-conv5 ReLU outputs, unit-normalised "
             "over channels, averaged over positions, each channel weighted by the square root of its LPIPS v0.1 "
             "weight: 1152 dims). Where a side has fewer than 2x the feature dimension, every set of a split is "
             "projected on the top faces_per_side // 2 principal components of their pooled features "
             f"(dim_used; the reduction column says which). Low/high: 2.5-97.5% over {splits} random splits "
             "(sampling spread, not an interval over faces). ratio_to_floor near 1 = as close to the group's real "
             "faces as they are to each other.</p>"), table(frame[show])]


def _expressivity_section(result, fig) -> list[str]:
    """The expressivity sweep, originals beside aged outputs (when measured)."""
    if "expressivity" not in result.tables:
        return []
    sweep = result.tables["expressivity"]
    wide = sweep.pivot_table(index=["depth", "layer"], columns=["attribute", "set"], values="estimate")
    order = [(a, s) for a in dict.fromkeys(sweep["attribute"]) for s in ("original", "aged") if (a, s) in wide]
    wide = wide[order]
    wide.columns = [f"{a} ({s})" for a, s in wide.columns]
    wide = wide.reset_index(level="depth", drop=True)
    return ["<h2>What the face model sees</h2>",
            (f"<p>Expressivity I(layer; attribute) in nats ({esc(sweep['estimator'].iloc[0])} estimator) of "
             f"{esc(sweep['backbone'].iloc[0])}'s layers for original faces and for aged outputs (one per face, "
             "at a random target). Labels are estimated on each image by the same labellers.</p>"),
            fig("expressivity"), table(wide, index=True)]


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
            (f"<p>Decoder {esc(d['checkpoint'])} (step {d['step']}, trained on {esc(d['training_data'])} "
             f"templates of {esc(d['backbone'])}), {d['n_faces']} faces. A template is decoded to a "
             f"{d['image_size']} px face; the age labeller reads it as a 'chip'. Comparing recon(aged) with "
             "recon(input) shows how much of the aging the template carries.</p>"), table(wide, index=True)]
