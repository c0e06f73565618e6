"""Every figure is saved print-ready: PNG, PDF and SVG, a journal column wide, no text under 7 pt."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from figure_checks import assert_print_ready, svg_font_sizes, svg_width_in  # noqa: E402

from decoders.audit.figures import plot_expressivity_sets  # noqa: E402
from probes.outputs import save_figure  # noqa: E402


def test_a_wide_figure_with_small_text_is_saved_a_page_wide_with_readable_text(tmp_path):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for ax in axes:
        ax.plot([0, 1, 2], [2, 0, 1])
        ax.set_title("tiny title", fontsize=5)
        ax.tick_params(labelsize=4)
    written = save_figure(fig, tmp_path / "wide.png")
    assert [p.suffix for p in written] == [".png", ".pdf", ".svg"]
    assert_print_ready(tmp_path / "wide.svg")
    assert svg_width_in(tmp_path / "wide.svg") == pytest.approx(7.2)


def test_a_narrow_figure_becomes_a_single_column(tmp_path):
    fig, ax = plt.subplots(figsize=(3.0, 2.5))
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("x (units)", fontsize=20)
    save_figure(fig, tmp_path / "narrow.png")
    assert svg_width_in(tmp_path / "narrow.svg") == pytest.approx(3.5)
    assert min(svg_font_sizes(tmp_path / "narrow.svg")) >= 7 and max(svg_font_sizes(tmp_path / "narrow.svg")) <= 9


def test_the_audits_expressivity_figure_names_layers_at_7_pt(tmp_path):
    layers = [f"layer_{i}" for i in range(40)]
    table = pd.DataFrame([{"attribute": a, "set": s, "depth": d, "layer": name, "estimate": 0.1 * d,
                           "ci_low": 0.0, "ci_high": 0.2 * d}
                          for a in ("age", "sex", "yaw") for s in ("original", "aged")
                          for d, name in enumerate(layers)])
    fig = plot_expressivity_sets(table, "title")
    ticks = [t for ax in fig.axes for t in ax.get_xticklabels() if t.get_text()]
    assert min(t.get_fontsize() for t in ticks) >= 7 and len(ticks) < 3 * len(layers)
    save_figure(fig, tmp_path / "expressivity.png")
    assert_print_ready(tmp_path / "expressivity.svg")
    assert np.isfinite(svg_font_sizes(tmp_path / "expressivity.svg")).all()
