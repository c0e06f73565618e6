"""Figures of expressivity: against depth (one network) and against training step (its checkpoints).

matplotlib and seaborn are imported when a figure is drawn (the Agg backend unless one is set),
so the estimators and the sweep do not load them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .labels import KNOWN_ATTRIBUTES


def plot_expressivity(table: pd.DataFrame, title: str | None = None):
    """Expressivity against depth, one line per attribute with its CI band; one panel per estimator.

    Returns the matplotlib Figure (nothing is shown or saved).
    """
    plt, sns = _pyplot()
    if table.empty:
        raise ValueError("the expressivity table is empty: nothing to plot")
    estimators = list(dict.fromkeys(table["estimator"]))
    attributes = list(dict.fromkeys(table["attribute"]))
    palette = dict(zip(attributes, sns.color_palette("colorblind", len(attributes))))
    layers = table.drop_duplicates("depth").sort_values("depth")
    fig, axes = plt.subplots(1, len(estimators), figsize=(3.5 * len(estimators) if len(estimators) < 3 else 7.2, 3.2),
                             squeeze=False, sharey=False)
    # One layer name per 8 pt of axis at most.
    step = max(1, -(-len(layers) * 8 * len(estimators) // 200))
    named = layers.iloc[::step]
    for ax, est in zip(axes[0], estimators):
        part = table[table["estimator"] == est]
        # Over seeds (new splits and training seeds): the mean, and the envelope of their intervals.
        mean = part.groupby(["attribute", "depth"], sort=True).agg(
            estimate=("estimate", "mean"), ci_low=("ci_low", "min"), ci_high=("ci_high", "max")).reset_index()
        for attr in attributes:
            line = mean[mean["attribute"] == attr]
            if line.empty:
                continue
            ax.plot(line["depth"], line["estimate"], marker="o", ms=3, label=attr, color=palette[attr])
            ax.fill_between(line["depth"], line["ci_low"], line["ci_high"], alpha=0.2, color=palette[attr])
        ax.set_xticks(named["depth"])
        ax.set_xticklabels(named["layer"], rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("layer (input to output" + (f", one in {step} named)" if step > 1 else ")"))
        ax.set_ylabel("I(layer; attribute) (nats)")
        ax.set_title(f"estimator: {est}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(title="attribute", fontsize=7, title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def plot_expressivity_over_training(table: pd.DataFrame, layer: str | Sequence[str] | None = None,
                                    estimator: str | None = None, normalise: bool = False,
                                    xscale: str = "linear", title: str | None = None):
    """Expressivity against training step, one line per attribute with its CI band.

    ``layer``: one tap layer, several (one panel each) or None (every layer in
    the table, one panel each, input to output). ``estimator``: which
    estimator's rows (default the first in the table). Rows of several seeds
    are averaged. ``normalise=True`` divides each (layer, attribute) curve by
    its largest estimate, so attributes on very different scales (identity vs
    sex) show their trends on one 0-1 axis; the confidence bands are left out
    there (an upper bound over a small peak would run far above 1: the
    figure in nats shows them). ``xscale`` is a
    matplotlib scale (``"linear"``, ``"symlog"``). Returns the Figure.
    """
    plt, sns = _pyplot()
    part, chosen, estimator = _over_training_rows(table, layer, estimator)
    attributes = list(dict.fromkeys(part["attribute"]))
    # One colour per attribute name, whatever the table holds, so figures of several eval sets agree.
    names = list(KNOWN_ATTRIBUTES) + [a for a in attributes if a not in KNOWN_ATTRIBUTES]
    palette = dict(zip(names, sns.color_palette("colorblind", len(names))))
    cols = min(3, len(chosen))
    rows = -(-len(chosen) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.2 if cols > 1 else 3.5, 1.9 * rows + 0.9), squeeze=False,
                             sharex=True, sharey=normalise)
    mean = (part[part["layer"].isin(chosen)]
            .groupby(["layer", "attribute", "step"], sort=True)[["estimate", "ci_low", "ci_high"]].mean()
            .reset_index())
    for ax, name in zip(axes.flat, chosen):
        for attr in attributes:
            line = mean[(mean["layer"] == name) & (mean["attribute"] == attr)].sort_values("step")
            if not line.empty:
                _draw_curve(ax, line, normalise, label=attr, color=palette[attr])
        ax.set_xscale(xscale)
        ax.set_title(f"layer {name}", fontsize=8)
        ax.grid(alpha=0.3)
        if normalise:
            ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)
    for ax in axes.flat[len(chosen):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("training step (optimiser updates)")
    for ax in axes[:, 0]:
        ax.set_ylabel("estimate / curve's peak" if normalise else "I(layer; attribute) (nats)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="attribute", loc="lower center", ncol=len(labels), fontsize=7,
               title_fontsize=7)
    fig.suptitle(title or f"expressivity over training ({estimator})", fontsize=8)
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    return fig


def _over_training_rows(table: pd.DataFrame, layer, estimator: str | None) -> tuple[pd.DataFrame, list[str], str]:
    """The rows of ``estimator`` (default the table's first), the layers to draw, and the estimator."""
    if table.empty:
        raise ValueError("the table is empty: nothing to plot")
    missing = [c for c in ("step", "layer", "depth", "attribute", "estimator", "estimate", "ci_low", "ci_high")
               if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; pass expressivity_over_training's output")
    estimators = list(dict.fromkeys(table["estimator"]))
    estimator = estimator or estimators[0]
    if estimator not in estimators:
        raise ValueError(f"no rows for estimator {estimator!r}; the table has {', '.join(estimators)}")
    part = table[table["estimator"] == estimator]
    ordered = list(part.drop_duplicates("layer").sort_values("depth")["layer"])
    chosen = ordered if layer is None else ([layer] if isinstance(layer, str) else list(layer))
    unknown = [name for name in chosen if name not in ordered]
    if unknown:
        raise ValueError(f"no rows for layer(s) {unknown}; the table has {', '.join(ordered)}")
    return part, chosen, estimator


def _draw_curve(ax, line: pd.DataFrame, normalise: bool, label: str, color) -> None:
    """One attribute's estimate against step with its CI band (each divided by the curve's peak if asked)."""
    values = line[["estimate", "ci_low", "ci_high"]].to_numpy(dtype=np.float64)
    if normalise:
        peak = np.nanmax(values[:, 0])
        values = values / peak if peak > 0 else np.full_like(values, np.nan)
    ax.plot(line["step"], values[:, 0], marker="o", ms=3, label=label, color=color)
    if not normalise:
        ax.fill_between(line["step"], values[:, 1], values[:, 2], alpha=0.2, color=color)


def _pyplot():
    """(pyplot, seaborn), on the Agg backend unless one is set already."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    return plt, sns
