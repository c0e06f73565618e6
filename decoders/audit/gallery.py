"""The report's faces: the opening grid of sources x targets (with the decoder's reconstructions beside
them) and the flagged outputs, each with its reasons and scores."""

from __future__ import annotations

import pandas as pd

from .markup import esc, img, table


def aged_faces_html(result) -> str:
    """Sources (rows) aged to every target (columns); a decoder's reconstruction of each template beside it."""
    gallery = result.gallery
    if not len(gallery["indices"]):
        return "<p>No faces shown (gallery size 0).</p>"
    faces, frame = result.tables["per_face"], result.tables["per_output"]
    targets, labels = result.model["targets"], result.model["groups"]["labels"]
    fmr = result.configuration["fmrs"][0]
    has_recon = "recon_inputs" in gallery
    flagged = result.tables.get("flagged")
    flagged = set() if flagged is None else set(zip(flagged["face"], flagged["target"]))
    reader = "training_reader_age_out" in frame
    head = ["source"] + [f"&rarr; {esc(labels[t])}" for t in targets]
    out = ["<div class='wide'><table class='gallery'><thead><tr><th>file</th>"
           + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for k, f in enumerate(gallery["indices"]):
        info = faces.iloc[f]
        pictures = img(gallery["inputs"][k], "source")
        caption = (f"{int(info['age'])} y, {esc(info['sex_label'])}, {esc(info['race_label'])}<br>"
                   f"est {info['est_age']:.0f} y")
        if has_recon:
            pictures += img(gallery["recon_inputs"][k], "reconstruction of the source's template", "recon")
            caption += f", recon {gallery['recon_input_age'][k]:.0f} y"
        cells = [f"<td>{pictures}<br>{caption}</td>"]
        for t in targets:
            row = frame[(frame["face"] == f) & (frame["target"] == t)].iloc[0]
            ok = "".join("&#10003;" if row[f"{role}_accepted_fmr_{fmr:g}"] else "&#10007;"
                         for role in ("train", "independent"))
            pictures = img(gallery["outputs"][t][k], f"aged to {labels[t]}")
            cap = f"est {row['est_age_out']:.0f} y"
            if reader:
                cap += f" (reader {row['training_reader_age_out']:.0f})"
            if has_recon:
                pictures += img(gallery["recon_outputs"][t][k], "reconstruction of the aged face's template", "recon")
                cap += f", recon {gallery['recon_output_age'][t][k]:.0f} y"
            cap += f"<br>cos {row['train_cosine']:.2f}/{row['independent_cosine']:.2f} {ok}"
            if (f, t) in flagged:
                cap += " &#9873;"
            cells.append(f"<td>{pictures}<br>{cap}</td>")
        out.append(f"<tr><th>{esc(info['file'])}</th>{''.join(cells)}</tr>")
    out.append("</tbody></table></div>")
    return f"<p class='note'>{grid_legend(result, has_recon, reader)}</p>" + "\n".join(out)


def grid_legend(result, has_recon: bool, reader: bool) -> str:
    cfg = result.configuration
    backbones, fmr = cfg["backbones"], cfg["fmrs"][0]
    selection = result.data.get("selection", {}).get("selection", "")
    legend = (f"{len(result.gallery['indices'])} audited source faces ({esc(selection) or 'as loaded'}), spread "
              f"over source groups and ages, each aged to every target. Captions: UTKFace label; estimated age "
              f"(judge: {esc(cfg['age_labeller']['name'])})")
    if reader:
        legend += f"; in brackets the GAN's training age reader ({esc(cfg['training_age_reader']['name'])})"
    legend += (f"; cosine of source and output templates for {esc(backbones['train']['name'])} / "
               f"{esc(backbones['independent']['name'])}, &#10003; = verified as the source at FMR {fmr:g} by each; "
               "&#9873; = flagged (see Flagged faces).")
    if has_recon:
        legend += (" Outlined beside each face: the template decoder's reconstruction of its "
                   f"{esc(cfg['decoder']['backbone'])} template (what the face model keeps of it), with the age the "
                   "judge reads from it.")
    return legend


def flagged_html(result) -> str:
    """Counts of flagged outputs by reason, and the worst of each reason with its images, reasons and scores."""
    counts = result.flags.get("flagged_outputs", {})
    fmr = result.configuration["fmrs"][0]
    intro = (f"<p>An output is flagged when a face model no longer verifies it as its source at FMR {fmr:g} "
             "(identity lost), when the judge estimates it outside its target group (only targets the judge can "
             "judge), or when the judge's estimated sex differs from the source's (sex flip). Every flagged output "
             "is listed in <code>tables/flagged.csv</code>; the worst of each reason are shown.</p>")
    if not counts:
        return intro + "<p>No output is flagged.</p>"
    summary = pd.DataFrame([{"reason": key, "flagged outputs": c["outputs"], "of outputs": c["of_outputs"],
                             "source faces": c["source_faces"]} for key, c in counts.items()])
    cards = []
    for item in result.gallery.get("flagged", []):
        reasons = "".join(f"<li>{esc(r)}</li>" for r in item["reasons"])
        cards.append(f"<div>{img(item['input'], 'source')}{img(item['output'], 'flagged output')}<br>"
                     f"{esc(item['file'])} &rarr; {esc(item['target_label'])}<ul>{reasons}</ul></div>")
    return intro + table(summary) + f"<div class='flagged'>{''.join(cards)}</div>"
