"""Age/sex labellers against UTKFace's published labels, one table for all labellers.

    python experiments/utkface_age_sex.py --data-root ../shared/data [--n 2000] [--seed 0] \
        [--labellers faceapi-agegender hse-agegender]

Samples ``--n`` UTKFace crops deterministically (``--seed``), labels them
through each labeller's "utkface" crop, prints per-group tables and writes a
results JSON (``--out``). Targets (issues 2 and 7): faceapi-agegender age MAE
<= 5.0 years and sex accuracy >= 90%; hse-agegender <= 5.5 years and >= 85%.
Age MAE and sex accuracy come with 95% bootstrap intervals over faces.
UTKFace's labels are themselves estimates; unparsable file names are skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from probes.cli import add_data_root, add_seed, make_parser, run_command
from probes.datasets import FaceDataset, load_utkface
from probes.labellers import create_labeller
from probes.labellers.evaluation import label_dataset, score_age_sex
from probes.outputs import atomic_write_bytes, provenance

log = logging.getLogger(__name__)

TARGETS = {"faceapi-agegender": (5.0, 0.90), "hse-agegender": (5.5, 0.85)}


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("utkface_age_sex.py", __doc__)
    add_data_root(parser)
    parser.add_argument("--n", type=int, default=2000)
    add_seed(parser)
    parser.add_argument("--labellers", nargs="+", default=["faceapi-agegender"])
    parser.add_argument("--layout", default="utkface")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/utkface_age_sex.json")
    return parser


def evaluate(name: str, dataset: FaceDataset, layout: str) -> dict:
    """Labeller ``name``'s scores on ``dataset`` and whether they meet its target."""
    age, sex, race = dataset.labels("age"), dataset.labels("sex"), dataset.labels("race")
    labeller = create_labeller(name)
    start = time.perf_counter()
    metrics, rows = score_age_sex(age, sex, race, label_dataset(labeller, dataset, layout))
    mae_max, acc_min = TARGETS.get(name, (float("inf"), 0.0))
    passed = metrics["age_mae"] <= mae_max and metrics["sex_accuracy"] >= acc_min
    return {"labeller": name, "weights_id": getattr(labeller, "weights_id", None), "metrics": metrics,
            "groups": rows, "target": {"age_mae_max": mae_max, "sex_accuracy_min": acc_min, "passed": passed},
            "seconds": time.perf_counter() - start}


def report(args: argparse.Namespace, n: int, results: list[dict]) -> None:
    log.info(f"\nUTKFace crops: n={n} (seed {args.seed}, layout {args.layout!r})")
    names = [r["labeller"] for r in results]
    log.info(f"{'group':<14}{'n':>6}" + "".join(f"{n + ' MAE':>24}{'sex acc':>9}" for n in names))
    for i, row in enumerate(results[0]["groups"]):
        cells = "".join(f"{r['groups'][i]['age_mae']:>24.2f}{100 * r['groups'][i]['sex_acc']:>8.1f}%" for r in results)
        log.info(f"{row['group']:<14}{row['n']:>6}{cells}")
    for r in results:
        m, t = r["metrics"], r["target"]
        (mae_lo, mae_hi), (acc_lo, acc_hi) = m["age_mae_ci95"], m["sex_accuracy_ci95"]
        log.info(f"{r['labeller']}: age MAE {m['age_mae']:.2f} [95% CI {mae_lo:.2f}-{mae_hi:.2f}] (target <= "
                 f"{t['age_mae_max']}), sex accuracy {100 * m['sex_accuracy']:.1f}% [{100 * acc_lo:.1f}-"
                 f"{100 * acc_hi:.1f}%] (target >= {100 * t['sex_accuracy_min']:.0f}%), sex AUC "
                 f"{m['sex_auc']:.4f}: {'PASS' if t['passed'] else 'FAIL'}")


def run(args: argparse.Namespace) -> None:
    dataset = load_utkface(args.data_root, max_images=args.n, seed=args.seed)
    results = [evaluate(name, dataset, args.layout) for name in args.labellers]
    report(args, len(dataset), results)
    record = {"command": "python experiments/utkface_age_sex.py " + " ".join(sys.argv[1:]),
              "n": len(dataset), "seed": args.seed, "layout": args.layout, **provenance(), "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, lambda handle: handle.write(json.dumps(record, indent=2).encode()))
    log.info(f"wrote {out}")


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
