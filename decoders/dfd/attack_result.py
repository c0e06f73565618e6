"""What an attack evaluation found, and its files: ``results.json``, ``results.csv``, ``per_image.csv``,
``gallery.png`` and ``gallery.html`` (see :mod:`decoders.dfd.attack`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probes.datasets import FaceDataset
from probes.outputs import write_csv, write_json
from probes.verification import FMRThreshold

from .gallery import GalleryItem, write_grid, write_html
from .inputs import source_names

ATTACK_LABELS = {"type_I": "type-I", "type_II": "type-II", "control_other_people": "control",
                 "mean_face_control": "mean-face", "framing_ceiling_type_I": "ceiling"}
NO_RATE = {"ci_low": None, "ci_high": None, "threshold": None, "impostor_set": None, "n_impostors": None}
GALLERY_NOTE = ("original = target chip (the backbone's crop of the held-out image); type-II cos and ok: over the "
                "other images of the same person (n/a for people with one image).")
PHOTOS_GALLERY_NOTE = ("original = the photo's face as detected and aligned for the backbone (its target chip); "
                       "type-II cos and ok: over the person's other photos in the folder (n/a for people with one).")
LEAK_GALLERY_NOTE = ("original = the first enrolment image of the template's identity (black when it has none), as "
                     "the backbone crops it: the leaked template's own image is not known; type-I: against the "
                     "leaked template; type-II cos and ok: over the identity's enrolment images.")


@dataclass
class AttackResult:
    """``results`` (``results.json`` without its command), one row per held-out image, and the
    reconstructions (uint8) with their target chips for the gallery."""

    results: dict
    per_image: list[dict]
    reconstructions: np.ndarray
    chips: np.ndarray
    lpips: np.ndarray | None  # None without source images (leaked templates)
    ssim: np.ndarray | None
    thresholds: list[FMRThreshold]  # backbone A's, one per FMR
    gallery_size: int = 24
    notes: list[str] = field(default_factory=list)  # for the user: what was left out of the evaluation
    gallery_note: str = GALLERY_NOTE

    def save(self, folder: str | Path, command: list[str] | None = None) -> None:
        folder = Path(folder)
        write_csv(folder / "per_image.csv", self.per_image)
        write_csv(folder / "results.csv", results_rows(self.results))
        items, meta = self.gallery()
        write_grid(items, folder / "gallery.png")
        write_html(items, folder / "gallery.html",
                   f"Decoder attack on {self.results['attack']['backbone']}: {self.results['data']['test_set']} "
                   "reconstructions", meta, [self.gallery_note])
        write_json(folder / "results.json", {"command": command, **self.results})

    def gallery(self) -> tuple[list[GalleryItem], dict]:
        """Evenly spaced reconstructions with their type-I/II scores, and the page's key figures."""
        n = len(self.per_image)
        shown = np.unique(np.linspace(0, n - 1, min(self.gallery_size, n)).round().astype(int))
        first = self.thresholds[0]
        at = f"{first.fmr:g}"
        items = []
        for k in shown:
            row = self.per_image[k]
            scores = {"type-I cos": row["type1_cosine"]}
            if self.results["attack"]["metric"] == "euclidean":
                scores["type-I L2"] = row["type1_l2"]
            scores[f"type-I ok @{100 * first.fmr:g}%"] = row[f"type1_accepted_fmr_{at}"]
            scores["type-II cos"] = row["type2_mean_cosine"]
            scores[f"type-II ok @{100 * first.fmr:g}%"] = (
                f"{round(row[f'type2_accept_rate_fmr_{at}'] * row['type2_refs'])}/{row['type2_refs']}"
                if row["type2_refs"] else "n/a")
            if "lpips" in row:
                scores["LPIPS"], scores["SSIM"] = row["lpips"], row["ssim"]
            items.append(GalleryItem(row["name"], self.reconstructions[k], self.chips[k], scores))
        conf, data, attack = self.results["configuration"], self.results["data"], self.results["attack"]
        meta = {"checkpoint": f"{conf['checkpoint']} (step {conf['step']})",
                "held-out test images": f"{data['n_test_images']} ({data['test_set']})",
                f"threshold @ FMR {at}": f"{first.describe()} ({first.impostor_set} impostors, "
                                         f"n = {first.n_impostors})",
                f"type-I SAR @ FMR {at}": percent(attack["type_I"]["sar"][at]),
                f"type-II SAR @ FMR {at}": percent(attack["type_II"]["sar"][at])}
        if self.lpips is not None:
            meta["mean LPIPS / SSIM"] = f"{self.lpips.mean():.4f} / {self.ssim.mean():.4f}"
        return items, meta


def image_keys(test: FaceDataset) -> tuple[list[str], list, list[str]]:
    """(a file-safe name, the identity or None, the source path) of each test image, for :func:`per_image_rows`."""
    ids = test.labels("identity") if "identity" in test.attributes else [None] * len(test)
    return source_names(test.paths), list(ids), [str(p) for p in test.paths]


def per_image_rows(keys: tuple[list[str], list, list[str]], ident: dict, thresholds: list[FMRThreshold],
                   type2_pairs: np.ndarray, type2: tuple[np.ndarray, np.ndarray],
                   quality: tuple[np.ndarray, np.ndarray] | None = None,
                   transfer_type1: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict]:
    """One ``per_image.csv`` row per attacked template (``keys``: :func:`image_keys`): type-I scores and
    decisions, type-II (``type2``: scores and cosines of ``type2_pairs``) mean cosine and acceptance rates,
    LPIPS and SSIM (``quality``, when there are source images), and the transfer's type-I score and cosine."""
    names, ids, sources = keys
    t2_score, t2_cos = type2
    rows = []
    for k in range(len(names)):
        mine = type2_pairs[:, 0] == k
        row = {"name": names[k], "identity": ids[k] or "", "source": sources[k],
               "type1_score": float(ident["score"][k]), "type1_cosine": float(ident["cosine"][k]),
               "type1_l2": float(ident["l2"][k])}
        for t in thresholds:
            row[f"type1_accepted_fmr_{t.fmr:g}"] = bool(ident["score"][k] >= t.threshold)
        row["type2_refs"] = int(mine.sum())
        row["type2_mean_cosine"] = float(t2_cos[mine].mean()) if mine.any() else float("nan")
        for t in thresholds:
            row[f"type2_accept_rate_fmr_{t.fmr:g}"] = (float((t2_score[mine] >= t.threshold).mean())
                                                     if mine.any() else float("nan"))
        if quality is not None:
            row["lpips"], row["ssim"] = float(quality[0][k]), float(quality[1][k])
        if transfer_type1 is not None:
            row["transfer_type1_score"] = float(transfer_type1[0][k])
            row["transfer_type1_cosine"] = float(transfer_type1[1][k])
        rows.append(row)
    return rows


def percent(rate: dict) -> str:
    """A success attack rate as ``12.5% [low, high] (accepted/n)``."""
    if not rate["n"]:
        return "n/a"
    return f"{100 * rate['rate']:.1f}% [{100 * rate['ci_low']:.1f}, {100 * rate['ci_high']:.1f}] " \
           f"({rate['accepted']}/{rate['n']})"


def attack_blocks(results: dict, direct: str = "direct", transfer: str = "transfer") -> list[tuple[str, dict, str]]:
    """(label, block, attack) of every attack measured: the direct one's, then the transfer's."""
    blocks = [(direct, results["attack"])] + ([(transfer, results["transfer"])] if results["transfer"] else [])
    return [(label, block, attack) for label, block in blocks
            for attack in ("type_I", "type_II", "control_other_people", "mean_face_control", "framing_ceiling_type_I")
            if block.get(attack) is not None]


def results_rows(results: dict) -> list[dict]:
    """``results.csv``: one row per figure (SAR per FMR and mean cosine of each attack, LPIPS, SSIM)."""
    rows = []
    step = results["configuration"]["step"]
    for kind, block, attack in attack_blocks(results):
        thr = results["thresholds"][block["backbone"]]["at_fmr"]
        a = block[attack]
        for fmr, rate in a["sar"].items():
            rows.append({"evaluation": kind, "backbone": block["backbone"],
                         "metric": "SAR" if attack != "control_other_people" else "accept_rate",
                         "attack": ATTACK_LABELS[attack], "fmr": float(fmr), "value": rate["rate"],
                         "accepted": rate["accepted"], "n": rate["n"], "ci_low": rate["ci_low"],
                         "ci_high": rate["ci_high"], "threshold": rate["threshold"],
                         "impostor_set": thr[fmr]["impostor_set"], "n_impostors": thr[fmr]["n_impostors"],
                         "step": step})
        rows.append({"evaluation": kind, "backbone": block["backbone"], "metric": "mean_identity_cosine",
                     "attack": ATTACK_LABELS[attack], "fmr": None, "value": a["mean_cosine"], "accepted": None,
                     "n": a["n"], **NO_RATE, "step": step})
    q = results["image_quality"] or {}
    for name in ("lpips", "ssim") if q else ():
        rows.append({"evaluation": "direct", "backbone": results["attack"]["backbone"], "metric": name.upper(),
                     "attack": None, "fmr": None, "value": q[f"{name}_mean"], "accepted": None, "n": q["n"],
                     **NO_RATE, "step": step})
    return rows


def format_table(results: dict) -> str:
    """A small text table of the SARs, thresholds and image figures."""
    lines = [(f"{'backbone':<18} {'attack':<8} {'FMR':>7} {'threshold':>16} {'impostors':>17} {'SAR':>7} "
              f"{'95% CI':>15} {'n':>6}")]
    for prefix, block, attack in attack_blocks(results, "", "transfer "):
        thr = results["thresholds"][block["backbone"]]["at_fmr"]
        for fmr, rate in block[attack]["sar"].items():
            t = thr[fmr]
            shown = f"L2<={-t['threshold']:.4f}" if t["metric"] == "euclidean" else f"cos>={t['threshold']:.4f}"
            sar = "n/a" if rate["rate"] is None else f"{100 * rate['rate']:.1f}%"
            ci = "" if rate["ci_low"] is None else f"[{100 * rate['ci_low']:.1f}, {100 * rate['ci_high']:.1f}]"
            imp = f"{t['impostor_set']} {t['n_impostors']}" + ("" if t.get("enough_impostors", True) else "*")
            lines.append(f"{prefix + block['backbone']:<18} {ATTACK_LABELS[attack]:<8} "
                         f"{100 * float(fmr):>6g}% {shown:>16} {imp:>17} {sar:>7} {ci:>15} {rate['n']:>6}")
    a = results["attack"]
    q = results["image_quality"]
    cos2 = a["type_II"]["mean_cosine"]
    quality = (f"LPIPS {q['lpips_mean']:.4f}; SSIM {q['ssim_mean']:.4f}" if q else
               "no LPIPS/SSIM (no source images)")
    lines.append(f"mean identity cosine: type-I {a['type_I']['mean_cosine']:.4f}, type-II "
                 f"{'n/a' if cos2 is None else f'{cos2:.4f}'}; {quality} "
                 f"({results['data']['n_test_images']} attacked templates of {results['data']['test_set']}, "
                 f"{results['data']['n_test_identities']} people; type-II: "
                 f"{a['type_II']['n']} pairs from {a['type_II']['n_reconstructions']} reconstructions)")
    spread = a.get("reconstruction_spread") or {}
    if spread.get("across_people_std") is not None:
        lines.append(f"mean-face = the decoder's face of the mean test template vs every test template (a constant "
                     f"face: the SAR an attack must clearly beat); reconstructions differ across people by "
                     f"{spread['across_people_std']:.1f}/255 (pixel std) against {spread['within_image_std']:.1f} "
                     "within one face")
    if any(not t.get("enough_impostors", True) for block in results["thresholds"].values()
           for t in block["at_fmr"].values()):
        lines.append("* fewer impostors than 10 / FMR: the threshold rests on under 10 accepted impostors and its "
                     "realised FMR on new people is loose")
    lines.append("control = a reconstruction compared with the templates of *other* held-out people: the rate at "
                 "which it passes as someone else (real images: about the FMR)"
                 + ("; ceiling = B on A's real target chips framed like the reconstructions" if results["transfer"]
                    else ""))
    tr = results["training"]
    lines.append(f"checkpoint step {results['configuration']['step']}; training time "
                 f"{tr.get('train_time_s', 'unknown')} s; evaluation {results['seconds']} s")
    return "\n".join(lines)
