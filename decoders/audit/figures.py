"""The audit's figures (seaborn / matplotlib). Every ``plot_*`` function returns a Figure; nothing is shown or
saved (:func:`figure_png` renders one to PNG bytes)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from probes.outputs import COLUMN_WIDTHS_IN

from .stats import ALL_TARGETS

SINGLE, DOUBLE = COLUMN_WIDTHS_IN["single"], COLUMN_WIDTHS_IN["double"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper", font_scale=0.9)  # 7-8 pt text at a journal's width
    return plt, sns


def figure_png(fig, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def summary_rows(result, metric: str, target: str, breakdown: str = "all", role: str | None = None) -> pd.DataFrame:
    """The summary's rows of one metric for one target label (or ``all targets``), indexed by level."""
    summary = result.tables["summary"]
    part = summary[(summary["metric"] == metric) & (summary["target_label"] == target)
                   & (summary["breakdown"] == breakdown)]
    if role is not None:
        part = part[part["role"] == role]
    return part.set_index("level")


def error_bars(part: pd.DataFrame) -> np.ndarray:
    """2 x N distances from each value to its interval's ends (0 where there is no interval)."""
    return np.nan_to_num(np.array([part["value"] - part["ci_low"], part["ci_high"] - part["value"]]))


def _role_names(result) -> dict[str, str]:
    backbones = result.configuration["backbones"]
    return {role: f"{info['name']} ({'GAN training' if role == 'train' else 'independent'})"
            for role, info in backbones.items()}


def plot_identity(result):
    """Identity kept: cosine(input, output) against the age gap, and the verification rate at the first FMR."""
    plt, sns = _plt()
    frame = result.tables["per_output"]
    names = _role_names(result)
    fmr = result.configuration["fmrs"][0]
    long = pd.concat([pd.DataFrame({"age gap (target - source group)": frame["age_gap"],
                                    "cosine(input, output)": frame[f"{role}_cosine"], "face model": name})
                      for role, name in names.items()], ignore_index=True)
    fig, axes = plt.subplots(1, 2, figsize=(DOUBLE, 3.0))
    sns.boxplot(data=long, x="age gap (target - source group)", y="cosine(input, output)", hue="face model",
                ax=axes[0], fliersize=1.5, palette="colorblind")
    axes[0].set_title("identity cosine vs age gap")
    axes[0].legend(fontsize=7, loc="lower left")
    gaps = sorted(frame["age_gap"].unique())
    palette = sns.color_palette("colorblind", len(names))
    for k, (role, name) in enumerate(names.items()):
        # All targets pooled, by age gap: the summary's intervals, over source faces.
        part = summary_rows(result, f"verification_rate_fmr_{fmr:g}", ALL_TARGETS, "age_gap", role)
        part = part.reindex([f"{int(g):+d}" for g in gaps])
        axes[1].errorbar(np.asarray(gaps) + (k - 0.5) * 0.12, part["value"], yerr=error_bars(part), marker="o",
                         capsize=3, label=name, color=palette[k])
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_xticks(gaps)
    axes[1].set_xlabel("age gap (target - source group)")
    axes[1].set_ylabel(f"verification rate @ FMR {fmr:g}")
    axes[1].set_title("outputs verified as their input (95% CI over source faces)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_age(result):
    """Estimated age of outputs per target (target ranges shaded) and the confusion matrices."""
    plt, sns = _plt()
    frame = result.tables["per_output"]
    faces = result.tables["per_face"]
    groups = result.model["groups"]
    labels, lower = groups["labels"], groups["lower"]
    targets = result.model["targets"]
    not_judged = result.flags["age_not_judged"]
    fig, axes = plt.subplots(1, 3, figsize=(DOUBLE, 3.0), gridspec_kw={"width_ratios": [1.5, 1, 1]})
    ax = axes[0]
    outs = pd.DataFrame({"group": frame["target_label"], "estimated age": frame["est_age_out"],
                         "faces": "aged outputs (by target)"})
    reals = pd.DataFrame({"group": faces["source_label"], "estimated age": faces["est_age"],
                          "faces": "real faces (by true group)"})
    order = [labels[t] for t in targets]
    data = pd.concat([outs, reals[reals["group"].isin(order)]], ignore_index=True)
    sns.boxplot(data=data, x="group", y="estimated age", hue="faces", order=order, ax=ax, fliersize=1.5,
                palette="colorblind")
    for k, t in enumerate(targets):
        low = lower[t]
        high = lower[t + 1] if t + 1 < len(lower) else max(low + 20, 80)
        ax.fill_between([k - 0.45, k + 0.45], low, high, color="green", alpha=0.12, lw=0)
        if labels[t] in not_judged:
            ax.text(k, ax.get_ylim()[1] * 0.97, "not judged", ha="center", va="top", fontsize=7, color="firebrick")
    ax.set_xlabel("target group (shaded: its age range)")
    ax.set_title(f"estimated age ({result.configuration['age_labeller']['name']})")
    ax.legend(fontsize=7, loc="upper left")
    for ax, key, title in ((axes[1], "confusion", "aged outputs: target vs estimated group"),
                           (axes[2], "confusion_real", "real faces: true vs estimated group")):
        table = result.tables[key].set_index(result.tables[key].columns[0])
        norm = table.div(table.sum(axis=1).replace(0, np.nan), axis=0)
        sns.heatmap(norm, annot=table.to_numpy(), fmt="d", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax,
                    annot_kws={"fontsize": 7})
        ax.set_xlabel("estimated group")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_attributes(result):
    """Attribute drift: sex flip rate (95% CI over source faces) and yaw change per target."""
    plt, sns = _plt()
    frame = result.tables["per_output"]
    labels = [result.model["groups"]["labels"][t] for t in result.model["targets"]]
    fig, axes = plt.subplots(1, 3, figsize=(DOUBLE, 2.8))
    for ax, col, title in ((axes[0], "sex_flip", "sex flip rate (estimated sex, input vs output)"),
                           (axes[1], "sex_differs_from_label", "output sex differs from UTKFace label")):
        part = pd.concat([summary_rows(result, col, lab) for lab in labels])
        ax.bar(range(len(labels)), part["value"], yerr=error_bars(part), capsize=3,
               color=sns.color_palette("colorblind")[0])
        if col == "sex_differs_from_label":
            real = result.tables["per_face"]["est_sex_correct"]
            ax.axhline(1 - real.mean(), color="black", ls="--", lw=1, label="real faces (estimator error)")
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels)
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("target group")
    sns.boxplot(data=frame, x="target_label", y="yaw_change", order=labels, ax=axes[2], fliersize=1.5,
                color=sns.color_palette("colorblind")[2])
    axes[2].axhline(0, color="black", lw=0.8)
    axes[2].set_title("yaw change, output - input (degrees, estimated)", fontsize=9)
    axes[2].set_xlabel("target group")
    fig.tight_layout()
    return fig


def plot_diversity(result):
    """Mean LPIPS (95% CI) of outputs beside real faces: across inputs, across targets, output vs input."""
    plt, sns = _plt()
    table = result.tables["diversity"]
    overall = table[table["target_label"] == "all"]
    per_target = table[(table["target_label"] != "all") & (table["comparison"] == "different inputs, same target")]
    fig, axes = plt.subplots(1, 2, figsize=(DOUBLE, 3.0))
    comparisons = list(dict.fromkeys(overall["comparison"]))
    palette = dict(zip(["real", "outputs"], sns.color_palette("colorblind", 2)))
    for k, which in enumerate(["real", "outputs"]):
        part = overall[overall["set"] == which].set_index("comparison").reindex(comparisons)
        x = np.arange(len(comparisons)) + (k - 0.5) * 0.38
        err = np.array([part["mean_lpips"] - part["ci_low"], part["ci_high"] - part["mean_lpips"]])
        axes[0].bar(x, part["mean_lpips"], width=0.36, yerr=np.nan_to_num(err), capsize=3, label=which,
                    color=palette[which])
    axes[0].set_xticks(range(len(comparisons)))
    axes[0].set_xticklabels([c.replace(", ", ",\n") for c in comparisons], fontsize=8)
    axes[0].set_ylabel("mean LPIPS")
    axes[0].set_title("diversity (real 'different targets' = real faces of different age groups)", fontsize=9)
    axes[0].legend(fontsize=8)
    real_across = result.flags["diversity"]["real_lpips_across_inputs"]
    err = np.array([per_target["mean_lpips"] - per_target["ci_low"], per_target["ci_high"] - per_target["mean_lpips"]])
    axes[1].bar(range(len(per_target)), per_target["mean_lpips"], yerr=np.nan_to_num(err), capsize=3,
                color=palette["outputs"])
    axes[1].axhline(real_across, color=palette["real"], ls="--", label="real faces")
    axes[1].axhline(real_across * result.flags["diversity"]["collapse_fraction"], color="firebrick", ls=":",
                    label="collapse threshold")
    axes[1].set_xticks(range(len(per_target)))
    axes[1].set_xticklabels(per_target["target_label"])
    axes[1].set_xlabel("target group")
    axes[1].set_ylabel("mean LPIPS between outputs of different inputs")
    axes[1].set_title("per-target diversity", fontsize=9)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_expressivity_sets(table: pd.DataFrame, title: str | None = None):
    """I(layer; attribute) against depth, originals (solid) vs aged outputs (dashed), one panel per attribute."""
    plt, sns = _plt()
    attributes = list(dict.fromkeys(table["attribute"]))
    ncols = min(2, len(attributes))
    nrows = -(-len(attributes) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(DOUBLE if ncols > 1 else SINGLE, 2.5 * nrows + 0.4),
                             squeeze=False)
    layers = table.drop_duplicates("depth").sort_values("depth")
    # One layer name per 8 pt of axis at most (a panel is about 2.6 in = 187 pt wide).
    step = max(1, -(-len(layers) * 8 // 187))
    named = layers.iloc[::step]
    colours = dict(zip(["original", "aged"], sns.color_palette("colorblind", 2)))
    for ax in axes.ravel()[len(attributes):]:
        ax.remove()
    for ax, attr in zip(axes.ravel(), attributes):
        for which, style in (("original", "-"), ("aged", "--")):
            part = table[(table["attribute"] == attr) & (table["set"] == which)].sort_values("depth")
            if part.empty:
                continue
            ax.plot(part["depth"], part["estimate"], style, marker="o", ms=3, color=colours[which], label=which)
            ax.fill_between(part["depth"], part["ci_low"], part["ci_high"], alpha=0.2, color=colours[which])
        ax.set_xticks(named["depth"])
        ax.set_xticklabels(named["layer"], rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("layer (input to output" + (f", one in {step} named)" if step > 1 else ")"))
        ax.set_title(attr)
        ax.set_ylabel("I(layer; attribute) (nats)")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def all_figures(result) -> dict:
    """Every figure the report shows, by name."""
    figures = {"identity": plot_identity(result), "age": plot_age(result), "attributes": plot_attributes(result),
               "diversity": plot_diversity(result)}
    if "expressivity" in result.tables:
        table = result.tables["expressivity"]
        figures["expressivity"] = plot_expressivity_sets(
            table, f"what {table['backbone'].iloc[0]} encodes, layer by layer ({table['estimator'].iloc[0]})")
    return figures
