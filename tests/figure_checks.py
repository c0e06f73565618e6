"""What every saved figure must be: a journal column wide, with text of at least 7 pt at that size."""

from __future__ import annotations

import re
from pathlib import Path

from probes.outputs import COLUMN_WIDTHS_IN, MIN_FONT_PT


def svg_font_sizes(svg: Path) -> list[float]:
    """The font size of every text in a figure's SVG (matplotlib's SVG units are points)."""
    return [float(v) for v in re.findall(r"font-size:\s*([0-9.]+)px", svg.read_text())]


def svg_width_in(svg: Path) -> float:
    width = re.search(r'<svg[^>]*\swidth="([0-9.]+)pt"', svg.read_text())
    return float(width.group(1)) / 72


def assert_print_ready(svg: Path) -> bool:
    """``svg`` and its PNG and PDF siblings exist, the width is a single or double column, every text >= 7 pt."""
    svg = Path(svg)
    for ext in (".png", ".pdf", ".svg"):
        assert svg.with_suffix(ext).is_file(), f"{svg.with_suffix(ext)} missing"
    width = svg_width_in(svg)
    assert any(abs(width - w) < 0.01 for w in COLUMN_WIDTHS_IN.values()), f"{svg}: {width:.2f} in wide"
    sizes = svg_font_sizes(svg)
    assert sizes, f"{svg}: no text as text"
    assert min(sizes) >= MIN_FONT_PT, f"{svg}: text of {min(sizes)} pt"
    return True
