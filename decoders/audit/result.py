""":class:`AuditResult`: everything an audit measured, its views, and the output folder it saves."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from probes.outputs import atomic_write_bytes, save_figure, staged_output

from .figures import all_figures
from .report import render_report
from .views import headline_table, results_dict


@dataclass
class AuditResult:
    """Everything an audit measured: tidy tables, flags, thresholds, gallery images and the configuration.

    ``tables`` (pandas DataFrames): ``summary`` (metric x target x breakdown
    level with 95% CIs), ``per_output`` (one row per face and target),
    ``per_face`` (real faces), ``thresholds``, ``estimator_real``,
    ``confusion``, ``confusion_real``, ``diversity``, and, when measured,
    ``expressivity`` and ``decoder``. :meth:`to_html` writes the report,
    :meth:`save` the whole output folder.
    """

    model: dict
    data: dict
    configuration: dict
    tables: dict[str, pd.DataFrame]
    flags: dict
    notes: list[str]
    gallery: dict
    seconds: dict = field(default_factory=dict)
    command: list[str] | None = None

    # ------------------------------------------------------------------ views

    def headline(self) -> pd.DataFrame:
        """One row per target: the key figures (breakdown ``all``), as formatted strings."""
        return headline_table(self)

    def figures(self) -> dict:
        """The report's matplotlib figures by name (the caller closes them)."""
        return all_figures(self)

    def to_dict(self) -> dict:
        """JSON-ready results: configuration, flags, thresholds, the summary rows and small tables."""
        return results_dict(self)

    def to_html(self, path: str | Path | None = None) -> str:
        """The self-contained HTML report (figures and images as data URIs); written to ``path`` if given."""
        text = render_report(self)
        if path is not None:
            data = text.encode("utf-8")
            atomic_write_bytes(Path(path), lambda h: h.write(data))
        return text

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write ``report.html``, ``results.json``, ``tables/*.csv`` and ``figures/*.png`` into ``out``.

        An existing non-empty ``out`` is refused unless ``overwrite``; files go
        to a temporary folder that replaces ``out`` only when complete.
        """
        with staged_output(out, overwrite) as tmp:
            write_outputs(self, tmp)
        return Path(out)


def write_outputs(result: AuditResult, folder: Path) -> None:
    """``report.html``, ``results.json``, ``tables/*.csv``, ``figures/*.png`` (and ``.pdf``, ``.svg``, a
    journal column wide) into an existing ``folder``; the report shows the saved PNGs."""
    folder = Path(folder)
    (folder / "figures").mkdir(exist_ok=True)
    figures = {}
    for name, fig in result.figures().items():
        save_figure(fig, folder / "figures" / f"{name}.png", dpi=200)
        figures[name] = (folder / "figures" / f"{name}.png").read_bytes()
    (folder / "tables").mkdir(exist_ok=True)
    for name, table in result.tables.items():
        text = table.to_csv(index=False).encode()
        atomic_write_bytes(folder / "tables" / f"{name}.csv", lambda h, d=text: h.write(d))
    report = render_report(result, figures).encode("utf-8")
    atomic_write_bytes(folder / "report.html", lambda h: h.write(report))
    payload = json.dumps(results_dict(result), indent=1).encode()
    atomic_write_bytes(folder / "results.json", lambda h: h.write(payload))
