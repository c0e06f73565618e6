"""Writing results safely: atomic files, staged output folders, JSON/CSV, and provenance records.

Every command writes through these helpers, so a failure (a full disk, Ctrl-C, a bad input found
late) never leaves a half-written file or destroys the results of an earlier run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import FaceprobeError


def file_safe(name: str, limit: int = 80) -> str:
    """``name`` as one file-name part: characters other than letters, digits, ``.``, ``_`` and ``-`` become
    ``_`` (a backbone reference such as ``path/to/net.py:make`` holds slashes), cut to ``limit``."""
    return re.sub(r"[^0-9A-Za-z._-]", "_", str(name)).strip("._")[:limit] or "unnamed"


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, fsync, then rename it onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~file_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def file_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entry list to disk (best effort: some file systems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

class OutputFolderError(FaceprobeError):
    """An output folder that exists (without overwrite), is a file, or cannot be written."""


def check_output_folder(out: str | Path, overwrite: bool = False, option: str = "--out") -> None:
    """Refuse, before any work, an ``out`` that is a file, a non-empty folder (unless
    ``overwrite``) or under a path where no folder can be created."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"{option} {out} exists and is a file, not a folder; choose another path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputFolderError(f"{option} {out} already exists and is not empty; pass --overwrite to replace "
                                "it (its files are kept until the new results are complete)")
    probe = next((p for p in out.absolute().parents if p.exists()), None)
    if probe is not None and not probe.is_dir():
        raise OutputFolderError(f"{option} {out} is not writable: {probe} is a file, not a folder")
    if probe is None or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputFolderError(f"{option} {out} is not writable ({probe} does not allow creating files)")


@contextlib.contextmanager
def staged_output(out: str | Path, overwrite: bool = False, option: str = "--out") -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``out``; on success it becomes ``out``.

    On an exception the temporary folder is deleted and ``out`` is untouched.
    With ``overwrite`` an existing ``out`` is moved aside, replaced, and only
    then deleted (restored if the final rename fails).
    """
    out = Path(out).expanduser()
    check_output_folder(out, overwrite, option)
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=parent))
    except OSError as exc:
        raise OutputFolderError(f"{option} {out} is not writable: {exc}") from exc
    try:
        yield tmp
        _commit(tmp, out, overwrite, option)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _commit(tmp: Path, out: Path, overwrite: bool, option: str) -> None:
    # mkdtemp makes the folder private (0700); give it the permissions a plain mkdir would.
    os.chmod(tmp, 0o777 & ~file_umask())
    old = None
    if out.exists():
        # Checked again: something may have appeared while we worked.
        check_output_folder(out, overwrite, option)
        if any(out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".old-{out.name}-", dir=out.absolute().parent))
            os.replace(out, old / out.name)
        else:
            out.rmdir()
    try:
        os.replace(tmp, out)
    except OSError as exc:
        if old is not None:
            os.replace(old / out.name, out)
            shutil.rmtree(old, ignore_errors=True)
        raise OutputFolderError(f"could not move the results into {option} {out}: {exc}") from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

def write_csv(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` (dicts with the first row's keys) as a CSV file, atomically."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_bytes(path, lambda h: h.write(buffer.getvalue().encode()))


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically (numpy scalars and arrays become plain JSON)."""
    atomic_write_bytes(path, lambda h: h.write(json.dumps(obj, indent=1, default=json_default).encode()))


def json_default(value):
    """``json.dumps``' fallback: numpy scalars and arrays as Python values, anything else as text."""
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, or None where it is missing, NaN or infinite (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(float(value)) else None


# --------------------------------------------------------------------------- provenance

PROVENANCE_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "scikit-image", "pandas", "matplotlib", "seaborn",
                       "lpips", "pillow", "tqdm")


def provenance(packages: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict:
    """Versions of Python, the platform and ``packages``, and faceprobe's commit (if run from a checkout).

    Every results file records this, so a number can be traced to the code that made it. Git runs
    with ``--no-optional-locks`` so reading the commit never writes to the user's checkout.
    """
    import importlib.metadata as md
    import platform
    import subprocess

    out: dict = {"python": platform.python_version(), "platform": platform.platform()}
    for package in packages:
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = None
    root = Path(__file__).resolve().parents[1]
    try:
        git = ["git", "--no-optional-locks", "-C", str(root)]
        commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                check=False).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain"], capture_output=True, text=True, timeout=10,
                               check=False).stdout.strip()
        out["faceprobe_commit"] = (commit + (" (with uncommitted changes)" if dirty else "")) if commit else None
    except (OSError, subprocess.SubprocessError):
        out["faceprobe_commit"] = None
    return out


# --------------------------------------------------------------------------- JSON and figures


def json_ready(value):
    """JSON-ready: NaN/inf -> None, numpy scalars -> Python, tuples -> lists, recursively."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, Path):
        return str(value)
    return value


def json_records(frame) -> list[dict]:
    """A pandas table's rows as JSON-ready dicts (NaN and infinities as None)."""
    return json_ready(frame.to_dict(orient="records"))


# A journal's single column (89 mm) and full page width (183 mm), in inches; the smallest text at that size.
COLUMN_WIDTHS_IN = {"single": 3.5, "double": 7.2}
MIN_FONT_PT, MAX_FONT_PT = 7.0, 9.0
FIGURE_FORMATS = ("png", "pdf", "svg")


def figure_texts(fig) -> list:
    """Every visible, non-empty text of ``fig`` (titles, labels, tick labels, legends, annotations), as drawn."""
    from matplotlib.text import Text

    fig.draw_without_rendering()  # tick labels exist only once drawn
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
            and (t.axes is None or t.axes.get_visible())]


def print_ready(fig, width: str | None = None) -> None:
    """Make ``fig`` fit a journal column as it will be saved: its width becomes a single column (3.5 in) when
    it is that narrow or narrower, else the page width (7.2 in), its height scaling with it (never below
    0.45 x the width, nor above its own); every text is set between 7 and 9 pt; the layout is redone."""
    import warnings

    w, h = fig.get_size_inches()
    width = width or ("single" if w <= COLUMN_WIDTHS_IN["single"] * 1.1 else "double")
    target = COLUMN_WIDTHS_IN[width]
    if abs(w - target) > 1e-3:
        fig.set_size_inches(target, min(h, max(h * target / w, 0.45 * target)), forward=False)
    for ax in fig.axes:
        ax.tick_params(labelsize=MIN_FONT_PT + 0.5)
    for text in figure_texts(fig):
        text.set_fontsize(min(max(text.get_fontsize(), MIN_FONT_PT), MAX_FONT_PT))
    if fig.get_layout_engine() is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "tight_layout not applied" for a figure it cannot fit
            fig.tight_layout()


def save_figure(fig, path: str | Path, dpi: int = 300, width: str | None = None,
                formats: tuple[str, ...] = FIGURE_FORMATS) -> list[Path]:
    """Write a matplotlib figure, made :func:`print_ready` (a journal column's width, text >= 7 pt), as
    ``path`` (a PNG at ``dpi``) and beside it as PDF and SVG (vector, fonts as text), each atomically;
    close it and return the paths written."""
    import matplotlib.pyplot as plt  # heavy: imported only once a figure exists

    path = Path(path)
    written = []
    try:
        print_ready(fig, width)
        # Text stays text: TrueType in the PDF, <text> in the SVG (editable, searchable).
        with plt.rc_context({"pdf.fonttype": 42, "svg.fonttype": "none", "svg.hashsalt": "faceprobe"}):
            for fmt in formats:
                target = path.with_suffix(f".{fmt}")
                atomic_write_bytes(target, lambda handle, f=fmt: fig.savefig(handle, format=f, dpi=dpi,
                                                                            metadata=_FIXED_METADATA[f]))
                written.append(target)
    finally:
        plt.close(fig)
    return written


# No creation date or tool version in the vector files, so figures of the same numbers are the same files.
_FIXED_METADATA = {"pdf": {"CreationDate": None, "Producer": None}, "svg": {"Date": None}, "png": None}
