"""What a perturbation analysis found, and its files: tables, drift figures and reconstruction strips
(see :mod:`decoders.dfd.perturbation_analysis`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from probes.images import save_png
from probes.outputs import save_figure, write_csv, write_json
from probes.template_drift import get_family, plot_drift

ATTACK_FAMILIES = ("noise", "fgsm", "pgd")
RECON_LABELS = {"recon_cosine": "reconstruction vs clean template (cosine)",
                "recon_verified": "reconstruction still verified"}
STRENGTH_UNITS = {"rotation": " deg", "translation": " px", "scaling": "x", "occlusion": " side"}


@dataclass
class FamilyDrift:
    """One family's drift table (with the reconstructions' scores), and for the first faces (the
    strips' faces) their clean views, perturbed views and the reconstructions, by table row."""

    family: str
    table: pd.DataFrame
    views: np.ndarray
    perturbed: dict[int, np.ndarray]
    reconstructions: dict[int, np.ndarray]


@dataclass
class CleanDrawings:
    """The decoder's drawings of the strips' faces' clean templates, their cosine to those templates and
    whether they verify."""

    images: np.ndarray
    cosine: np.ndarray
    verified: np.ndarray


@dataclass
class PerturbationResult:
    """``results`` (``results.json`` without its command; its ``files`` are known once saved), the drift
    table of every family, and what the figures and strips are drawn from."""

    results: dict
    table: pd.DataFrame
    summary: pd.DataFrame
    families: list[FamilyDrift]
    clean: CleanDrawings | None  # None without strips
    plots: list[str] = field(default_factory=list)

    def save(self, folder: str | Path, command: list[str] | None = None) -> None:
        """Write ``drift_<family>.png``, ``strip_*.png``, ``drift_attacks.png``, ``results.csv``,
        ``summary.csv`` and ``results.json``."""
        folder = Path(folder)
        conf = self.results["configuration"]
        backbone, figures, strips = conf["backbone"]["name"], [], []
        threshold = describe_threshold(self.results["threshold"]["threshold"], conf["drift"]["metric"])
        for drift in self.families:
            fig = plot_drift(drift.table, self.plots, RECON_LABELS,
                             title=f"{drift.family} on {backbone} ({drift.table['image'].nunique()} held-out faces; "
                                   f"threshold at FMR {conf['fmr']:g}: {threshold})")
            save_figure(fig, folder / f"drift_{drift.family}.png")
            figures.append(f"drift_{drift.family}.png")
            if self.clean is not None:
                strips += write_strips(folder, drift, self.clean, backbone)
        attacks = [f for f in ATTACK_FAMILIES if f in conf["families"]]
        if len(attacks) >= 2:
            part = self.table[self.table["family"].isin(attacks)]
            fig = plot_drift(part, self.plots, RECON_LABELS,
                             title=f"{' vs '.join(attacks)} on {backbone} (same L-inf budget; "
                                   f"{part['image'].nunique()} faces)")
            save_figure(fig, folder / "drift_attacks.png")
            figures.append("drift_attacks.png")
        write_csv(folder / "results.csv", self.table.to_dict("records"))
        write_csv(folder / "summary.csv", self.summary.to_dict("records"))
        files = {"results": "results.csv", "summary": "summary.csv", "figures": figures, "strips": strips}
        write_json(folder / "results.json", {"command": command, **self.results, "files": files})


def describe_threshold(threshold: float, metric: str) -> str:
    return f"L2 <= {-threshold:.3f}" if metric == "euclidean" else f"cos >= {threshold:.3f}"


# --------------------------------------------------------------------------- reconstruction strips


def strength_label(family: str, strength: float) -> str:
    return f"{'eps ' if family in ATTACK_FAMILIES else ''}{strength:g}{STRENGTH_UNITS.get(family, '')}"


@dataclass
class StripRow:
    """One row per face of a strip: its label, per face the first cell (the unperturbed one) and the
    cells at each strength, and the captions under them (per face: the first cell's, then one per strength)."""

    label: str
    first: Sequence[np.ndarray]
    cells: Sequence[Sequence[np.ndarray]]
    captions: Sequence[Sequence[str]] | None = None


def strip_image(rows: Sequence[StripRow], headers: Sequence[str], title: str = "", side: int = 96):
    """A PIL image: per face one line of each of ``rows`` (e.g. ``input``: original | perturbed at each
    strength; ``decoded``: the reconstructions of those templates). ``headers`` label the strength columns."""
    font = ImageFont.load_default()
    k, m = len(rows[0].first), len(headers)
    pad, line, label_w = 4, 12, 58
    cell_h = side + 2 * line + 2
    title_lines = title.split("\n") if title else []
    top = (len(title_lines) + 1) * line + 6
    face_h = len(rows) * cell_h + pad
    canvas = Image.new("RGB", (label_w + (m + 1) * (side + pad) + pad, top + k * face_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for t, text in enumerate(title_lines):
        draw.text((pad, 2 + t * line), text, fill=(0, 0, 0), font=font)
    for j, head in enumerate(["original"] + list(headers)):
        draw.text((label_w + j * (side + pad) + pad, top - line - 2), head, fill=(0, 0, 0), font=font)

    def paste(array, x, y):
        img = Image.fromarray(np.ascontiguousarray(array))
        canvas.paste(img.resize((side, side), Image.BILINEAR if img.size[0] > side else Image.NEAREST), (x, y))

    for i in range(k):
        for r, row in enumerate(rows):
            y = top + i * face_h + r * cell_h
            caps = row.captions[i] if row.captions else None
            draw.text((pad, y + side // 2 - line // 2), row.label, fill=(0, 0, 0), font=font)
            for j, array in enumerate([row.first[i]] + list(row.cells[i])):
                x = label_w + j * (side + pad) + pad
                paste(array, x, y)
                if caps is not None and j < len(caps) and caps[j]:
                    for t, text in enumerate(caps[j].split("\n")[:2]):
                        draw.text((x, y + side + 1 + t * line), text, fill=(0, 0, 0), font=font)
    return canvas


def verdict(cosine: float, verified: bool) -> str:
    return f"cos {cosine:.3f}\n{'verified' if verified else 'REJECTED'}"


def write_strips(folder: Path, drift: FamilyDrift, clean: CleanDrawings, backbone: str) -> list[str]:
    """One strip per variant of a family for the strips' faces; returns the file names written."""
    table, family = drift.table, drift.family
    k = len(drift.views)
    files = []
    for variant in dict.fromkeys(table["variant"]):
        rows = table[(table["variant"] == variant) & (table["strength"] != get_family(family).identity)]
        levels = list(dict.fromkeys(rows["strength"]))
        if not levels:
            continue
        perturbed, recons, caps, rcaps = [], [], [], []
        for i in range(k):
            mine = rows[rows["image"] == i].set_index("strength")
            idx = [int(np.flatnonzero((table["image"] == i) & (table["variant"] == variant)
                                      & (table["strength"] == s))[0]) for s in levels]
            perturbed.append([drift.perturbed[j] for j in idx])
            recons.append([drift.reconstructions[j] for j in idx])
            caps.append([f"{table['name'].iloc[idx[0]][:16]}"]
                        + [verdict(mine.loc[s, "cosine"], mine.loc[s, "verified"]) for s in levels])
            rcaps.append([verdict(clean.cosine[i], clean.verified[i])]
                         + [verdict(mine.loc[s, "recon_cosine"], mine.loc[s, "recon_verified"]) for s in levels])
        title = (f"{family}{' ' + variant if variant else ''} on {backbone}\ninput: cos of its template to the "
                 f"clean one\ndecoded: the decoder's drawing of that\ntemplate; cos of the drawing's template\n"
                 f"to the clean one; verified at the threshold")
        image = strip_image([StripRow("input", drift.views, perturbed, caps),
                             StripRow("decoded", clean.images[:k], recons, rcaps)],
                            [strength_label(family, s) for s in levels], title)
        name = f"strip_{family}{'_' + variant if variant else ''}.png"
        save_png(np.asarray(image), folder / name)
        files.append(name)
    return files


def format_table(results: dict) -> str:
    """Mean cosine, verified rate and reconstruction cosine per family, variant and strength."""
    header = (f"{'family':<12} {'variant':<9} {'strength':>9} {'cosine':>7} {'L2':>7} {'verified':>9} "
              f"{'recon cos':>9} {'recon ok':>9}")
    lines = [header]
    for r in results["summary"]:
        ver = "" if r.get("verified_rate") is None else f"{100 * r['verified_rate']:.0f}%"
        rver = "" if r.get("recon_verified_rate") is None else f"{100 * r['recon_verified_rate']:.0f}%"
        lines.append(f"{r['family']:<12} {r['variant'] or '-':<9} {r['strength']:>9g} {r['cosine_mean']:>7.4f} "
                     f"{r['l2_mean']:>7.4f} {ver:>9} {r['recon_cosine_mean']:>9.4f} {rver:>9}")
    thr = results["threshold"]
    lines.append(f"threshold: {thr.get('describe', thr['threshold'])} ({thr['source']}); "
                 f"{results['data']['n_images']} faces; {results['seconds']} s")
    for f in results["verification_fails_at"]["perturbed"]:
        s = f["strength"]
        lines.append(f"verification fails (< 50% verified): {f['family']}{' ' + f['variant'] if f['variant'] else ''}"
                     f" at {'never' if s is None else f'{s:g}'}")
    return "\n".join(lines)
