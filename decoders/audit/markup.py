"""HTML pieces the audit's report is built from: escaping, tables, inline images and the style sheet."""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from probes.images import data_uri

CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:1.5em auto;max-width:1280px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px}
th{background:#f0f3f7;text-align:left}tr:nth-child(even) td{background:#fafafa}
.flag{padding:.6em 1em;border-radius:6px;margin:.4em 0}.bad{background:#fde2e1;border:1px solid #e39a97}
.warn{background:#fff4d6;border:1px solid #e5c66b}.ok{background:#e3f4e3;border:1px solid #8cc68c}
.note{color:#444;font-size:14px;background:#f6f6f6;padding:.5em 1em;border-left:4px solid #8aa}
img.fig{max-width:100%;height:auto;border:1px solid #eee;margin:.5em 0}
table.gallery td{text-align:center;vertical-align:top;font-size:11px;background:#fff !important}
table.gallery th{font-size:10px;max-width:110px;word-break:break-all}
table.gallery img{width:88px;height:88px;display:inline-block;margin:0 1px}
table.gallery img.recon{outline:3px solid #b9a7e0}
.flagged{display:flex;flex-wrap:wrap;gap:8px}.flagged div{border:1px solid #e39a97;border-radius:4px;padding:4px;
width:260px;font-size:11px;background:#fff}.flagged img{width:88px;height:88px}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}
.wide{overflow-x:auto;max-width:100%}
"""


def esc(value) -> str:
    """``value`` as escaped HTML text."""
    return html.escape(str(value))


def fmt(value) -> str:
    """A table cell: floats to 3 decimals (``n/a`` when not finite), booleans as yes/no, None empty."""
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):.3f}"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if value is None:
        return ""
    return esc(value)


def table(frame: pd.DataFrame, index: bool = False) -> str:
    """A DataFrame as an HTML table (its index as the first column when ``index``), scrolling when wide."""
    head = ([esc(frame.index.name or "")] if index else []) + [esc(c) for c in frame.columns]
    out = ["<div class='wide'><table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for key, row in frame.iterrows():
        cells = ([f"<th>{esc(key)}</th>"] if index else []) + [f"<td>{fmt(v)}</td>" for v in row.to_numpy()]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def img(image: np.ndarray, alt: str, css: str = "") -> str:
    """An H x W x 3 uint8 image inlined as a PNG data URI."""
    cls = f" class='{css}'" if css else ""
    return f"<img{cls} alt='{esc(alt)}' src='{data_uri(np.ascontiguousarray(image))}'>"
