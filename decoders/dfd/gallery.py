"""Galleries of reconstructions (PNG grid, self-contained HTML) and staged output folders.

A gallery is a list of :class:`GalleryItem` (a reconstruction, optionally the
original it came from, and named scores). :func:`write_grid` draws them as one
PNG (PIL), :func:`write_html` as one HTML page whose images are embedded as
base64 ``data:`` URIs, so the page opens anywhere without its folder.

>>> items = [GalleryItem("Aaron_0001", recon_u8, original_u8, {"cosine": 0.93, "LPIPS": 0.31})]
>>> write_grid(items, "gallery.png"); write_html(items, "gallery.html", title="dlib-resnet29 decoder")

:func:`staged_output` gives commands an all-or-nothing output folder: they
write into a temporary folder beside ``--out``, which replaces ``--out`` only
when everything succeeded. A refusal (existing ``--out`` without
``overwrite``) or a failure midway leaves what was there untouched.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probes.images import data_uri
from probes.outputs import atomic_write_bytes

# --------------------------------------------------------------------------- images


# --------------------------------------------------------------------------- gallery


@dataclass
class GalleryItem:
    """One gallery row: a reconstruction, optionally its original, and named scores."""

    name: str
    reconstruction: np.ndarray  # H x W x 3 uint8
    original: np.ndarray | None = None  # H x W x 3 uint8, or None (template-only input)
    scores: dict[str, float | str] = field(default_factory=dict)


def format_score(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):.3f}"
    return str(value)


def _check_items(items: Sequence[GalleryItem]) -> None:
    if not items:
        raise ValueError("a gallery needs at least one item")
    for item in items:
        for what, image in (("reconstruction", item.reconstruction), ("original", item.original)):
            if image is None and what == "original":
                continue
            if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                    and image.shape[-1] == 3):
                raise ValueError(f"gallery item {item.name!r}: {what} must be an H x W x 3 uint8 array")


def grid_image(items: Sequence[GalleryItem], columns: int = 4, min_side: int = 96):
    """The gallery as one PIL image: cells of [original | reconstruction] with name and scores below.

    Images smaller than ``min_side`` are enlarged (nearest neighbour) so the
    captions fit under them.
    """
    from PIL import Image, ImageDraw, ImageFont

    _check_items(items)
    font = ImageFont.load_default()
    side = max(min_side, max(max(i.reconstruction.shape[:2]) for i in items))
    with_original = any(i.original is not None for i in items)
    panels = 2 if with_original else 1
    pad, line = 6, 12
    n_lines = 1 + max(len(i.scores) for i in items)
    cell_w, cell_h = panels * side + (panels - 1) * 2, side + n_lines * line + 4
    cols = max(1, min(columns, len(items)))
    rows = math.ceil(len(items) / cols)
    canvas = Image.new("RGB", (pad + cols * (cell_w + pad), pad + rows * (cell_h + pad)), "white")
    draw = ImageDraw.Draw(canvas)

    def fit(array: np.ndarray):
        img = Image.fromarray(array)
        scale = side / max(img.size)
        size = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
        return img.resize(size, Image.NEAREST if scale >= 1 else Image.BILINEAR)

    for k, item in enumerate(items):
        r, c = divmod(k, cols)
        x, y = pad + c * (cell_w + pad), pad + r * (cell_h + pad)
        shown = ([item.original] if with_original else []) + [item.reconstruction]
        for p, array in enumerate(shown):
            px = x + p * (side + 2)
            if array is None:
                draw.rectangle([px, y, px + side - 1, y + side - 1], fill=(230, 230, 230))
                continue
            canvas.paste(fit(array), (px, y))
        text = [_shorten(item.name, cell_w // 6)] + [
            _shorten(f"{k_}: {format_score(v)}", cell_w // 6) for k_, v in item.scores.items()]
        for j, t in enumerate(text):
            draw.text((x, y + side + 2 + j * line), t, fill=(0, 0, 0), font=font)
    return canvas


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(1, width - 1)] + "~"


def write_grid(items: Sequence[GalleryItem], path: str | Path, columns: int = 4) -> Path:
    """Save :func:`grid_image` as a PNG (atomically); returns the path."""
    path = Path(path)
    image = grid_image(items, columns)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, lambda h: h.write(buffer.getvalue()))
    return path


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:middle}
th{background:#f2f2f2}img{width:%dpx;height:auto;image-rendering:pixelated;display:block}
td.scores{font-family:monospace;white-space:pre}dl.meta{font-size:90%%}dl.meta dt{font-weight:bold}
"""


def render_html(items: Sequence[GalleryItem], title: str = "Reconstructions",
                meta: Mapping[str, object] | None = None, notes: Sequence[str] = (), display_side: int = 128) -> str:
    """A self-contained HTML page: a table original | reconstruction | scores (images as data URIs)."""
    _check_items(items)
    esc = html.escape
    with_original = any(i.original is not None for i in items)
    head = ["#", "name"] + (["original"] if with_original else []) + ["reconstruction", "scores"]
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>", f"<title>{esc(title)}</title>",
           f"<style>{_STYLE % display_side}</style></head><body>", f"<h1>{esc(title)}</h1>"]
    if meta:
        out.append("<dl class='meta'>")
        for key, value in meta.items():
            out.append(f"<dt>{esc(str(key))}</dt><dd>{esc(str(value))}</dd>")
        out.append("</dl>")
    for note in notes:
        out.append(f"<p>{esc(note)}</p>")
    out.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>")
    for k, item in enumerate(items):
        cells = [str(k + 1), esc(item.name)]
        if with_original:
            cells.append(f"<img alt='original {esc(item.name)}' src='{data_uri(item.original)}'>"
                         if item.original is not None else "")
        cells.append(f"<img alt='reconstruction {esc(item.name)}' src='{data_uri(item.reconstruction)}'>")
        scores = "\n".join(f"{esc(str(key))}: {esc(format_score(v))}" for key, v in item.scores.items())
        row = "".join(f"<td>{c}</td>" for c in cells)
        out.append(f"<tr>{row}<td class='scores'>{scores}</td></tr>")
    out.append("</tbody></table></body></html>")
    return "\n".join(out)


def write_html(items: Sequence[GalleryItem], path: str | Path, title: str = "Reconstructions",
               meta: Mapping[str, object] | None = None, notes: Sequence[str] = ()) -> Path:
    """Save :func:`render_html` (atomically); returns the path."""
    path = Path(path)
    text = render_html(items, title, meta, notes).encode("utf-8")
    atomic_write_bytes(path, lambda h: h.write(text))
    return path


# --------------------------------------------------------------------------- output folders


