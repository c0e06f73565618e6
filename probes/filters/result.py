"""What a filter comparison measured: per layer pair matching and CKA, each beside its chance interval.

The chance interval is a 95% *prediction* interval for one more random pair,
``mean +- t(n-1) * sd * sqrt(1 + 1/n)`` over the ``n_baseline`` values
(clipped to [0, 1]), not the (narrower) interval of their mean. With 3
baseline pairs t is 4.3, so the interval is wide; 5 pairs (t = 2.8) are
worth their cost when a verdict is close.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import FaceprobeError
from ..outputs import COLUMN_WIDTHS_IN, MIN_FONT_PT, save_figure, staged_output
from .layers import Layer
from .matching import FilterMatch

MORE, CHANCE, LESS, NA = "more than chance", "chance level", "below chance", "n/a"
# Always written; matched.png (when layers correspond) and cka.png (with images) also as .pdf and .svg.
OUTPUT_FILES = ("filters.csv", "filters.json", "cka.csv")


def chance_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): the ``level`` prediction interval for one more draw like ``values``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (float("nan"),) * 3
    from scipy import stats  # lazy: scipy.stats takes a second to import

    mean = float(v.mean())
    if v.size < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) * math.sqrt(1 + 1 / v.size)
    # |cosine| and CKA live in [0, 1]; so does their interval (a value of 1 is then never "above" a
    # baseline too noisy to exclude 1: add baseline pairs)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def verdict(value: float, lo: float, hi: float) -> str:
    if not all(np.isfinite([value, lo, hi])):
        return NA
    return MORE if value > hi else LESS if value < lo else CHANCE


@dataclass
class LayerPairResult:
    """One pair of corresponding layers: the matching and its chance values (one per baseline pair)."""

    layer_a: Layer
    layer_b: Layer
    match: FilterMatch
    chance_means: np.ndarray
    chance_fractions: np.ndarray
    live_a: np.ndarray | None = None  # filters that took part (constant ones cannot match anything)
    live_b: np.ndarray | None = None


@dataclass
class FilterResult:
    """What :meth:`FilterComparison.compare` measured; ``table`` is the tidy summary."""

    name_a: str
    name_b: str
    pairs: list[LayerPairResult]
    threshold: float
    level: float
    seeds: list[tuple[int, int]]
    layers_a: list[str]
    layers_b: list[str]
    cka: np.ndarray | None = None  # layers_a x layers_b
    cka_chance: np.ndarray | None = None  # n_baseline x layers_a x layers_b
    n_images: int = 0
    pairing_note: str | None = None
    config: dict = field(default_factory=dict)

    # ----------------------------------------------------------------- tables

    def _cka_at(self, a: str, b: str) -> tuple[float, float, float, float]:
        if self.cka is None:
            return (float("nan"),) * 4
        i, j = self.layers_a.index(a), self.layers_b.index(b)
        return (float(self.cka[i, j]), *chance_interval(self.cka_chance[:, i, j], self.level))

    @property
    def table(self) -> pd.DataFrame:
        """One row per layer pair: filter matching and CKA, each beside its chance interval."""
        rows = []
        for p in self.pairs:
            mean, lo, hi = chance_interval(p.chance_means, self.level)
            cka, cka_mean, cka_lo, cka_hi = self._cka_at(p.layer_a.name, p.layer_b.name)
            shape = str(p.layer_a.shape) if p.layer_a.shape == p.layer_b.shape \
                else f"{p.layer_a.shape} vs {p.layer_b.shape}"
            rows.append({
                "layer_a": p.layer_a.name, "layer_b": p.layer_b.name, "shape": shape,
                "n_filters": int(p.match.matched.size),
                "dead_a": 0 if p.live_a is None else int((~p.live_a).sum()),
                "dead_b": 0 if p.live_b is None else int((~p.live_b).sum()),
                "matched_mean": p.match.mean, "frac_above": p.match.fraction_above(self.threshold),
                "chance_mean": mean, "chance_lo": lo, "chance_hi": hi,
                "chance_frac": float(np.mean(p.chance_fractions)),
                "cka": cka, "cka_chance": cka_mean, "cka_chance_lo": cka_lo, "cka_chance_hi": cka_hi,
                "verdict": verdict(p.match.mean, lo, hi), "cka_verdict": verdict(cka, cka_lo, cka_hi),
            })
        columns = ["layer_a", "layer_b", "shape", "n_filters", "dead_a", "dead_b", "matched_mean", "frac_above",
                   "chance_mean", "chance_lo", "chance_hi", "chance_frac", "cka", "cka_chance", "cka_chance_lo",
                   "cka_chance_hi", "verdict", "cka_verdict"]
        return pd.DataFrame(rows, columns=columns)

    def cka_table(self) -> pd.DataFrame:
        """Every (layer_a, layer_b) CKA beside its chance interval, long format."""
        columns = ["layer_a", "layer_b", "cka", "cka_chance", "cka_chance_lo", "cka_chance_hi", "cka_verdict"]
        if self.cka is None:
            return pd.DataFrame(columns=columns)
        rows = []
        for i, a in enumerate(self.layers_a):
            for j, b in enumerate(self.layers_b):
                mean, lo, hi = chance_interval(self.cka_chance[:, i, j], self.level)
                value = float(self.cka[i, j])
                rows.append([a, b, value, mean, lo, hi, verdict(value, lo, hi)])
        return pd.DataFrame(rows, columns=columns)

    def best_cka(self) -> pd.DataFrame:
        """For each layer of a, the layer of b whose activations are most alike (highest CKA), with chance."""
        table = self.cka_table().dropna(subset=["cka"])
        if table.empty:
            return table
        best = table.loc[table.groupby("layer_a", sort=False).cka.idxmax()]
        return best.set_index("layer_a").reindex([a for a in self.layers_a if a in set(best.layer_a)]).reset_index()

    def summary(self) -> str:
        """The table as text, with a header saying what was compared."""
        head = (f"{self.name_a} vs {self.name_b}: {len(self.pairs)} layer pair(s), threshold |cos| > "
                f"{self.threshold}, chance from {len(self.seeds)} random pairs ({self.level:.0%} prediction "
                f"interval), CKA on {self.n_images} images")
        if self.pairs:
            # each verdict is its own test: some layers land above a 95% interval by chance alone
            head += (f"\nby chance alone about {len(self.pairs) * (1 - self.level) / 2:.1f} of {len(self.pairs)} "
                     "layers would be called 'more than chance' (one-sided, per layer); trust runs of layers, "
                     "not single ones")
        if self.pairing_note:
            head += f"\nfilter matching n/a: {self.pairing_note}"
        lines = [head]
        if self.pairs:
            with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_rows", 500):
                lines.append(self.table.drop(columns=["cka_chance_lo", "cka_chance_hi"])
                             .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        if self.cka is not None:
            counts = self.cka_table().cka_verdict.value_counts()
            lines.append(f"CKA, all {self.cka.size} layer x layer cells: "
                         + ", ".join(f"{counts.get(v, 0)} {v}" for v in (MORE, CHANCE, LESS, NA)))
            lines.append("most alike layer of b for each layer of a:")
            with pd.option_context("display.width", 250, "display.max_rows", 500):
                lines.append(self.best_cka().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        table = self.table
        return {
            "network_a": self.name_a, "network_b": self.name_b, "threshold": self.threshold,
            "level": self.level, "baseline_seeds": [list(s) for s in self.seeds], "n_images": self.n_images,
            "pairing_note": self.pairing_note, "config": self.config,
            "unpaired_a": [n for n in self.layers_a if n not in set(table.layer_a)],
            "unpaired_b": [n for n in self.layers_b if n not in set(table.layer_b)],
            "pairs": json.loads(table.to_json(orient="records")),
            "chance_matched_means": {f"{p.layer_a.name}={p.layer_b.name}": p.chance_means.tolist()
                                     for p in self.pairs},
            "layers_a": self.layers_a, "layers_b": self.layers_b,
            "cka": None if self.cka is None else np.where(np.isfinite(self.cka), self.cka, None).tolist(),
            "cka_chance": None if self.cka_chance is None else
            np.where(np.isfinite(self.cka_chance), self.cka_chance, None).tolist(),
        }

    # ----------------------------------------------------------------- figures

    def plot_matched(self, ncols: int = 5):
        """|cosine| matrix of each layer pair, matches on the diagonal (best first); returns the figure.

        One colour scale for every panel, from 0 to the 99.5th percentile of all the values shown (at
        least 0.05), so a pair with a random network is not a black square; its colour bar says so."""
        from matplotlib.figure import Figure

        if not self.pairs:
            raise FaceprobeError("no corresponding layers to show: " + (self.pairing_note or "no layer pairs"))
        n = len(self.pairs)
        ncols = min(ncols, n)
        nrows = math.ceil(n / ncols)
        width = COLUMN_WIDTHS_IN["double" if ncols > 2 else "single"]
        fig = Figure(figsize=(width, 1.55 * nrows + 0.7), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        matrices = [p.match.ordered() for p in self.pairs]
        top = max(0.05, float(np.nanpercentile(np.concatenate([m.ravel() for m in matrices]), 99.5)))
        image = None
        for ax, p, matrix in zip(axes, self.pairs, matrices):
            mean, lo, hi = chance_interval(p.chance_means, self.level)
            image = ax.imshow(matrix, vmin=0, vmax=min(1.0, top), cmap="magma", aspect="auto",
                              interpolation="nearest")
            ax.set_title(f"{p.layer_a.name} / {p.layer_b.name}", fontsize=MIN_FONT_PT)
            ax.set_xlabel(f"mean {p.match.mean:.2f}, chance {mean:.2f}", fontsize=MIN_FONT_PT)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[n:]:
            ax.remove()
        fig.colorbar(image, ax=list(axes[:n]), shrink=0.8,
                     label="|cosine| of filters" + (f" (scale 0-{top:.2f})" if top < 0.995 else ""))
        fig.suptitle(f"Matched filters, {self.name_a} (rows) vs {self.name_b} (columns), best match first",
                     fontsize=8)
        return fig

    def plot_cka(self):
        """CKA of every layer of a (rows) with every layer of b, beside random networks' CKA; returns the figure.

        Layer names are shown at 7 pt; where there are more layers than fit, every k-th is labelled."""
        from matplotlib.figure import Figure

        if self.cka is None:
            raise FaceprobeError("no CKA in this result: compare(..., images=...) computes it")
        chance = np.nanmean(self.cka_chance, axis=0)
        hi = np.array([[chance_interval(self.cka_chance[:, i, j], self.level)[2] for j in range(len(self.layers_b))]
                       for i in range(len(self.layers_a))])
        fig = Figure(figsize=(COLUMN_WIDTHS_IN["double"], 4.2), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, values, title in ((axes[0], self.cka, f"CKA, {self.n_images} images (dots: above chance)"),
                                  (axes[1], chance, f"random networks (mean of {len(self.seeds)})")):
            image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto", interpolation="nearest")
            ax.set_title(title, fontsize=8)
            # About 2.6 in (187 pt) of axis for the names: one label per 8 pt at most.
            for names, name, set_ticks, set_label, rotation in (
                    (self.layers_a, self.name_a, ax.set_yticks, ax.set_ylabel, 0),
                    (self.layers_b, self.name_b, ax.set_xticks, ax.set_xlabel, 90)):
                step = max(1, math.ceil(len(names) * 8 / 187))
                shown = list(range(0, len(names), step))
                set_ticks(shown, [names[i] for i in shown], fontsize=MIN_FONT_PT, rotation=rotation)
                set_label(f"layer of {name}" + (f" (one in {step} named)" if step > 1 else ""))
        ii, jj = np.nonzero(np.nan_to_num(self.cka, nan=-1) > np.nan_to_num(hi, nan=2))
        axes[0].scatter(jj, ii, s=3, c="white", marker="o", linewidths=0)
        fig.colorbar(image, ax=list(axes), shrink=0.7, label="linear CKA (0-1)")
        return fig

    # ----------------------------------------------------------------- files

    def save(self, out: str | Path, overwrite: bool = False) -> list[Path]:
        """Write filters.csv, filters.json, cka.csv and the two PNGs into ``out``; returns their paths.

        Refuses a folder that already holds files unless ``overwrite``; the files are written into a
        temporary folder that replaces ``out`` only when complete.
        """
        out = Path(out)
        with staged_output(out, overwrite) as folder:
            self.table.to_csv(folder / "filters.csv", index=False)
            (folder / "filters.json").write_text(json.dumps(self.to_dict(), indent=2, default=str))
            self.cka_table().to_csv(folder / "cka.csv", index=False)
            written = [folder / name for name in OUTPUT_FILES]
            if self.pairs:  # no corresponding layers: no figure (the summary and filters.json say why)
                written += save_figure(self.plot_matched(), folder / "matched.png")
            if self.cka is not None:
                written += save_figure(self.plot_cka(), folder / "cka.png")
        return [out / p.name for p in written]
