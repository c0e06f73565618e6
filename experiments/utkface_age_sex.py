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
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from probes.datasets import load_utkface
from probes.labellers import create_labeller
from probes.stats import bootstrap_mean

TARGETS = {"faceapi-agegender": (5.0, 0.90), "hse-agegender": (5.5, 0.85)}
RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Others"}
AGE_BINS = [(0, 12), (13, 19), (20, 29), (30, 44), (45, 59), (60, 200)]


def label_all(labeller, dataset, layout: str, chunk: int = 256) -> dict[str, np.ndarray]:
    parts = {"age": [], "p_male": [], "sex": []}
    for start in tqdm(range(0, len(dataset), chunk), desc=labeller.name, unit="chunk"):
        out = labeller.predict(dataset.load_images(np.arange(start, min(start + chunk, len(dataset)))), layout=layout)
        for key in parts:
            parts[key].append(np.asarray(out[key], np.float64))
    return {k: np.concatenate(v) for k, v in parts.items()}


def bootstrap_ci(values: np.ndarray) -> list[float]:
    """95% percentile interval of the mean of ``values`` over faces resampled with replacement."""
    _, low, high, _ = bootstrap_mean(values, n_boot=2000, rng=0)
    return [low, high]


def score(age, sex, race, pred) -> tuple[dict, list[dict]]:
    err = pred["age"] - age
    correct = pred["sex"].astype(int) == sex  # each labeller's own decision rule (HSE: P(male) >= 0.6)
    metrics = {"age_mae": float(np.abs(err).mean()), "age_mae_ci95": bootstrap_ci(np.abs(err)),
               "age_median_ae": float(np.median(np.abs(err))),
               "age_bias": float(err.mean()), "age_pearson_r": float(np.corrcoef(pred["age"], age)[0, 1]),
               "sex_accuracy": float(correct.mean()), "sex_accuracy_ci95": bootstrap_ci(correct.astype(float)),
               "sex_auc": float(roc_auc_score(sex == 0, pred["p_male"]))}
    groups = {"all": np.ones(len(age), bool), "male": sex == 0, "female": sex == 1}
    groups.update({f"race {name}": race == r for r, name in RACES.items()})
    groups.update({(f"age {lo}-{hi}" if hi < 200 else f"age {lo}+"): (age >= lo) & (age <= hi) for lo, hi in AGE_BINS})
    rows = [{"group": g, "n": int(m.sum()), "age_mae": float(np.abs(err[m]).mean()), "age_bias": float(err[m].mean()),
             "sex_acc": float(correct[m].mean())} for g, m in groups.items() if m.any()]
    return metrics, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None, help="folder holding utkface/ (default: $FACEPROBE_DATA)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labellers", nargs="+", default=["faceapi-agegender"])
    parser.add_argument("--layout", default="utkface")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/utkface_age_sex.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    dataset = load_utkface(args.data_root, max_images=args.n, seed=args.seed)
    age, sex, race = dataset.labels("age"), dataset.labels("sex"), dataset.labels("race")
    results = []
    for name in args.labellers:
        labeller = create_labeller(name)
        start = time.perf_counter()
        metrics, rows = score(age, sex, race, label_all(labeller, dataset, args.layout))
        mae_max, acc_min = TARGETS.get(name, (float("inf"), 0.0))
        passed = metrics["age_mae"] <= mae_max and metrics["sex_accuracy"] >= acc_min
        results.append({"labeller": name, "weights_id": getattr(labeller, "weights_id", None), "metrics": metrics,
                        "groups": rows, "target": {"age_mae_max": mae_max, "sex_accuracy_min": acc_min,
                                                   "passed": passed}, "seconds": time.perf_counter() - start})

    print(f"\nUTKFace crops: n={len(dataset)} (seed {args.seed}, layout {args.layout!r})")
    names = [r["labeller"] for r in results]
    print(f"{'group':<14}{'n':>6}" + "".join(f"{n + ' MAE':>24}{'sex acc':>9}" for n in names))
    for i, row in enumerate(results[0]["groups"]):
        cells = "".join(f"{r['groups'][i]['age_mae']:>24.2f}{100 * r['groups'][i]['sex_acc']:>8.1f}%" for r in results)
        print(f"{row['group']:<14}{row['n']:>6}{cells}")
    for r in results:
        m, t = r["metrics"], r["target"]
        (mae_lo, mae_hi), (acc_lo, acc_hi) = m["age_mae_ci95"], m["sex_accuracy_ci95"]
        print(f"{r['labeller']}: age MAE {m['age_mae']:.2f} [95% CI {mae_lo:.2f}-{mae_hi:.2f}] (target <= "
              f"{t['age_mae_max']}), sex accuracy {100 * m['sex_accuracy']:.1f}% [{100 * acc_lo:.1f}-"
              f"{100 * acc_hi:.1f}%] (target >= {100 * t['sex_accuracy_min']:.0f}%), sex AUC "
              f"{m['sex_auc']:.4f}: {'PASS' if t['passed'] else 'FAIL'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": "python experiments/utkface_age_sex.py " + " ".join(sys.argv[1:]),
                               "n": len(dataset), "seed": args.seed, "layout": args.layout,
                               "torch": torch.__version__, "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
