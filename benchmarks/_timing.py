"""Timing and output helpers shared by the throughput benchmarks (scripts in this folder import it directly)."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path


def load_average() -> float:
    """One-minute load average (NaN where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def timed(run, n_images: int, repeats: int) -> dict:
    """Wall and CPU time of ``run()`` (which processes ``n_images``), best of ``repeats``."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    best = min(range(repeats), key=walls.__getitem__)
    return {"images": n_images, "images_per_s": n_images / walls[best],
            "median_images_per_s": n_images / statistics.median(walls),
            "cpu_cores_busy": cpus[best] / walls[best], "wall_s": walls}


def write_record(path: str | Path, record: dict) -> None:
    """Write ``record`` as indented JSON to ``path`` (making its folder) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")
