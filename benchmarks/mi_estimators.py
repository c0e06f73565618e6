"""Error and wall time of faceprobe's MI estimators beside benchmark-mi's and scikit-learn's, one run.

On closed-form tasks (truth known, see ``probes.expressivity.tasks``) every selected estimator gets the
same samples (one draw per task, n and seed); the table prints truth, estimate, |error| and seconds, the
ratio faceprobe MINE time / benchmark-mi MINE time at equal n, and the issue's targets:

* |error| <= 0.05 nats on every task with truth <= 2 nats, for the best faceprobe estimator;
* faceprobe MINE faster than benchmark-mi's MINE at equal n.

benchmark-mi (import ``bmi``) is optional; it needs jax 0.4.30 (the ``bench`` extra pins it):

    .venv/bin/pip install benchmark-mi==0.1.3 jax==0.4.30 jaxlib==0.4.30

Usage:

    .venv/bin/python benchmarks/mi_estimators.py --quick
    .venv/bin/python benchmarks/mi_estimators.py --n 5000 --tasks gaussian-1x1-rho0.75,additive-uniform-eps0.1 \\
        --seeds 1 --out results/mi_benchmark.json
    .venv/bin/python benchmarks/mi_estimators.py --list
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

FACEPROBE = ("fp-linear", "fp-mine", "fp-nwj", "fp-smile", "fp-infonce")
BMI = ("bmi-mine", "bmi-infonce", "bmi-ksg")
ALL_ESTIMATORS = FACEPROBE + BMI + ("sklearn",)
TOLERANCE = 0.05  # nats, the target
MAX_TARGET_MI = 2.0  # the tolerance applies to tasks with truth up to this many nats

QUICK_TASKS = ("gaussian-1x1-rho0.75", "dense-gaussian-5x1-0.5")
MEDIUM_TASKS = ("gaussian-1x1-rho0.75", "gaussian-1x1-mi2", "dense-gaussian-5x5-0.5",
                "dense-gaussian-5x1-0.5+128nuisance", "additive-uniform-eps0.1", "mixture-m5")


def _limit_threads(n: int) -> None:
    # Before numpy / jax / torch load: BLAS pools and XLA's Eigen pool read these at start-up. Equal
    # thread budgets keep the time ratios about the methods, not about who grabbed more cores.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    if n == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()


def build_tasks() -> dict:
    """Benchmark tasks by name: the standard suite plus sized variants (MI 0.1 / 2 nats, 128-D features)."""
    from probes.expressivity import tasks as T

    def rho_for(mi: float) -> float:  # one Gaussian pair with I = mi nats
        return math.sqrt(1.0 - math.exp(-2.0 * mi))

    out = {t.name: t for t in T.standard_tasks()}
    for label, mi in (("mi0.1", 0.1), ("mi2", 2.0)):
        t = T.correlated_gaussians(1, rho_for(mi))
        out[f"gaussian-1x1-{label}"] = T.ClosedFormTask(f"gaussian-1x1-{label}", t.mi, t.attribute_kind,
                                                        t.sampler, t.description)
    for t in (T.correlated_gaussians(8, 0.5), T.linear_attribute(128, 0.8), T.gaussian_classes(128, 1.0)):
        out[t.name] = t
    return out


def make_estimator(name: str, seed: int, max_steps: int | None, ci: bool, threads: int):
    """(callable (X, y) -> float nats, applicable(X, y, kind) -> reason or None)."""
    import numpy as np

    if name in FACEPROBE:
        from probes import expressivity as E

        extra = {"n_bootstrap": 200 if ci else 0, "n_permutations": 200 if ci else 0, "random_state": seed}
        if name == "fp-linear":
            est = E.LinearProbe(**extra)
        else:
            cls = {"fp-mine": E.MINE, "fp-nwj": E.NWJ, "fp-smile": E.SMILE, "fp-infonce": E.InfoNCE}[name]
            if max_steps is not None:
                extra["max_steps"] = max_steps
            est = cls(n_threads=threads, **extra)
        return (lambda X, y: est.estimate(X, y).estimate), (lambda X, y, kind: None)

    def col(a):
        a = np.asarray(a, dtype=np.float64)
        return a[:, None] if a.ndim == 1 else a

    if name in BMI:
        import bmi

        steps = {} if max_steps is None else {"max_n_steps": max_steps}
        # The "v1" settings of the benchmark-mi paper (hidden (10, 5)); everything else at the library's
        # defaults: batch 256, lr 0.1, <= 10,000 steps, 50/50 split, best test value every 250 steps.
        if name == "bmi-mine":
            est = bmi.estimators.MINEEstimator(hidden_layers=(10, 5), verbose=False, seed=seed, **steps)
        elif name == "bmi-infonce":
            est = bmi.estimators.InfoNCEEstimator(hidden_layers=(10, 5), verbose=False, seed=seed, **steps)
        else:
            est = bmi.estimators.KSGEnsembleFirstEstimator(neighborhoods=(5,), n_jobs=1)
        return (lambda X, y: float(est.estimate(col(X), col(y)))), (lambda X, y, kind: None)

    if name == "sklearn":
        from sklearn.feature_selection import (
            mutual_info_classif,
            mutual_info_regression,
        )

        def run(X, y):
            X = col(X)
            if np.issubdtype(np.asarray(y).dtype, np.integer):
                return float(mutual_info_classif(X, y, random_state=seed)[0])
            return float(mutual_info_regression(X, y, random_state=seed)[0])

        def applicable(X, y, kind):
            # It scores one column of X against a scalar y: the joint MI only when both are 1-D.
            if col(X).shape[1] != 1 or np.asarray(y).ndim != 1:
                return "needs 1-D X and y"
            return None

        return run, applicable
    raise ValueError(name)


def parse_list(text: str, valid, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in valid]
    if bad:
        sys.exit(f"--{what}: unknown {', '.join(bad)}; valid: {', '.join(valid)}")
    return items


def parse_seeds(text: str) -> list[int]:
    try:
        vals = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sys.exit(f"--seeds {text!r}: expected a count (3 -> seeds 0,1,2) or a comma list (0,4,7)")
    if len(vals) == 1 and "," not in text:
        if vals[0] < 1:
            sys.exit(f"--seeds {text!r}: a count must be >= 1")
        return list(range(vals[0]))
    return vals


def check_bmi() -> str:
    try:
        import bmi  # noqa: F401
        import jax  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or a jax/jaxlib mismatch raising anything at import
        sys.exit("benchmark-mi estimators were selected but `bmi` / `jax` cannot be imported "
                 f"({type(exc).__name__}: {exc}).\nInstall the optional reference library (pinned in the "
                 "`bench` extra):\n    .venv/bin/pip install benchmark-mi==0.1.3 jax==0.4.30 jaxlib==0.4.30\n"
                 "or leave them out: --estimators " + ",".join(FACEPROBE + ("sklearn",)))
    from importlib.metadata import version
    return f"benchmark-mi {version('benchmark-mi')}, jax {version('jax')}"


def fmt(v, spec=".3f"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def summarise(rows: list[dict]) -> list[dict]:
    """Mean over seeds per (task, n, estimator)."""
    import numpy as np

    groups: dict = {}
    for r in rows:
        groups.setdefault((r["task"], r["n"], r["estimator"]), []).append(r)
    out = []
    for (task, n, est), rs in groups.items():
        ok = [r for r in rs if r["estimate"] is not None]
        base = {"task": task, "n": n, "estimator": est, "truth": rs[0]["truth"], "seeds": len(rs),
                "skipped": rs[0].get("skipped")}
        if ok:
            e = np.array([r["estimate"] for r in ok])
            base.update(estimate=float(e.mean()), estimate_sd=float(e.std(ddof=1)) if len(e) > 1 else 0.0,
                        abs_error=float(np.mean(np.abs(e - rs[0]["truth"]))),
                        seconds=float(np.mean([r["seconds"] for r in ok])))
        else:
            base.update(estimate=None, estimate_sd=None, abs_error=None, seconds=None)
        out.append(base)
    return out


def print_tables(summary: list[dict], estimators: list[str]) -> dict:
    """Per-task table, MINE time ratios and the targets; returns the verdicts for the JSON."""
    by = {(s["task"], s["n"], s["estimator"]): s for s in summary}
    keys = sorted({(s["task"], s["n"]) for s in summary}, key=lambda k: (k[1], k[0]))
    verdict = {"tasks": [], "mine_ratios": []}
    w = max(len(k[0]) for k in keys) + 2
    for n in sorted({k[1] for k in keys}):
        print(f"\n=== n = {n} (mean over seeds; |err| = mean |estimate - truth|; s = seconds per estimate) ===")
        print(f"{'task':<{w}}{'truth':>7}  " + "  ".join(f"{e:>22}" for e in estimators))
        print(f"{'':<{w}}{'':>7}  " + "  ".join(f"{'est  |err|      s':>22}" for _ in estimators))
        for task, nn in [k for k in keys if k[1] == n]:
            truth = by[(task, nn, estimators[0])]["truth"]
            cells = []
            for e in estimators:
                s = by.get((task, nn, e))
                if s is None or s["estimate"] is None:
                    cells.append(f"{'n/a' if s and s['skipped'] else '-':>22}")
                else:
                    cells.append(f"{fmt(s['estimate']):>6} {fmt(s['abs_error']):>6} {fmt(s['seconds'], '7.1f'):>8}")
            print(f"{task:<{w}}{truth:>7.3f}  " + "  ".join(cells))
            fp = [by[(task, nn, e)] for e in estimators
                  if e in FACEPROBE and by[(task, nn, e)]["abs_error"] is not None]
            if fp:
                best = min(fp, key=lambda s: s["abs_error"])
                in_scope = truth <= MAX_TARGET_MI + 1e-9
                verdict["tasks"].append({"task": task, "n": nn, "truth": truth, "best_faceprobe": best["estimator"],
                                         "abs_error": best["abs_error"], "in_scope": in_scope,
                                         "pass": (best["abs_error"] <= TOLERANCE) if in_scope else None})
            a, b = by.get((task, nn, "fp-mine")), by.get((task, nn, "bmi-mine"))
            if a and b and a["seconds"] and b["seconds"]:
                verdict["mine_ratios"].append({"task": task, "n": nn, "fp_mine_s": a["seconds"],
                                               "bmi_mine_s": b["seconds"], "ratio": a["seconds"] / b["seconds"]})

    if verdict["mine_ratios"]:
        print("\n=== time ratio faceprobe MINE / benchmark-mi MINE at equal n (< 1: faceprobe faster) ===")
        for r in verdict["mine_ratios"]:
            print(f"{r['task']:<{w}} n={r['n']:<6} {r['fp_mine_s']:7.1f} s / {r['bmi_mine_s']:7.1f} s "
                  f"= {r['ratio']:.2f}")
        ratios = [r["ratio"] for r in verdict["mine_ratios"]]
        gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        verdict["mine_ratio_geomean"] = gm
        verdict["mine_faster_everywhere"] = all(r < 1 for r in ratios)
        print(f"geometric mean {gm:.2f}; faceprobe MINE faster on {sum(r < 1 for r in ratios)}/{len(ratios)}"
              f" -> target {'MET' if verdict['mine_faster_everywhere'] else 'NOT MET'}")

    if verdict["tasks"]:
        print(f"\n=== accuracy target: best faceprobe estimator |error| <= {TOLERANCE} nats (tasks with truth "
              f"<= {MAX_TARGET_MI:g}) ===")
        for t in verdict["tasks"]:
            mark = "PASS" if t["pass"] else ("FAIL" if t["pass"] is False else "out of scope")
            print(f"{t['task']:<{w}} n={t['n']:<6} best {t['best_faceprobe']:<11} |err| {t['abs_error']:.3f}  {mark}")
        scoped = [t for t in verdict["tasks"] if t["in_scope"]]
        verdict["accuracy_target_met"] = all(t["pass"] for t in scoped)
        print(f"{sum(t['pass'] for t in scoped)}/{len(scoped)} tasks pass -> target "
              f"{'MET' if verdict['accuracy_target_met'] else 'NOT MET'}")
        per_est = {}
        for s in summary:
            if s["estimator"] in FACEPROBE and s["abs_error"] is not None and s["truth"] <= MAX_TARGET_MI + 1e-9:
                per_est.setdefault(s["estimator"], []).append(s["abs_error"] <= TOLERANCE)
        verdict["per_estimator_pass"] = {e: f"{sum(v)}/{len(v)}" for e, v in per_est.items()}
        print("single estimator within tolerance on: " +
              ", ".join(f"{e} {c}" for e, c in verdict["per_estimator_pass"].items()))
    return verdict


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", default=None, help="sample sizes, comma list (default 5000; --quick: 2000)")
    p.add_argument("--tasks", default=None, help="comma list of task names or 'all' (see --list)")
    p.add_argument("--estimators", default=None, help="comma list from: " + ",".join(ALL_ESTIMATORS))
    p.add_argument("--seeds", default="1", help="count (3 -> seeds 0,1,2) or comma list of seeds")
    p.add_argument("--quick", action="store_true",
                   help=f"n=2000, tasks {','.join(QUICK_TASKS)}, 1 seed, neural estimators capped at 1000 steps")
    p.add_argument("--max-steps", type=int, default=None,
                   help="cap on training steps of every neural estimator (default: each library's own)")
    p.add_argument("--ksg-max-n", type=int, default=20000,
                   help="skip bmi-ksg above this n (its cost grows as n^2 log n)")
    p.add_argument("--ci", action="store_true",
                   help="faceprobe estimators also compute their bootstrap CI and permutation test (timed)")
    p.add_argument("--threads", type=int, default=1, help="threads for every library (default 1)")
    p.add_argument("--out", default="results/mi_benchmark.json")
    p.add_argument("--list", action="store_true", help="list the tasks and exit")
    return p


def estimate(est: str, name: str, task, X, y, n: int, seed: int, config: dict) -> dict:
    """One row: estimator ``est`` on one draw (``X``, ``y``) of task ``name``, timed, or why it was skipped."""
    row = {"task": name, "n": n, "seed": seed, "estimator": est, "truth": float(task.mi),
           "estimate": None, "seconds": None, "skipped": None}
    run, applicable = make_estimator(est, seed, config["max_steps"], config["ci"], config["threads"])
    reason = applicable(X, y, task.attribute_kind)
    if est == "bmi-ksg" and n > config["ksg_max_n"]:
        reason = f"n > --ksg-max-n {config['ksg_max_n']}"
    if reason:
        row["skipped"] = reason
        return row
    start = time.perf_counter()
    try:
        row["estimate"] = float(run(X, y))
    except Exception as exc:  # noqa: BLE001 - a library failing on a task is a result, not a crash
        row["skipped"] = f"error: {type(exc).__name__}: {exc}"
    row["seconds"] = time.perf_counter() - start
    if row["estimate"] is not None and not math.isfinite(row["estimate"]):
        row["skipped"], row["estimate"] = f"non-finite estimate {row['estimate']}", None
    return row


def run_all(tasks: dict, config: dict) -> list[dict]:
    """Every selected estimator on one draw per (n, task, seed) of ``config``, with a progress line each."""
    sizes, task_names, seeds, estimators = config["n"], config["tasks"], config["seeds"], config["estimators"]
    rows = []
    total = len(sizes) * len(task_names) * len(seeds) * len(estimators)
    done = 0
    for n in sizes:
        for name in task_names:
            task = tasks[name]
            for seed in seeds:
                X, y = task.sample(n, random_state=seed)
                for est in estimators:
                    done += 1
                    row = estimate(est, name, task, X, y, n, seed, config)
                    rows.append(row)
                    status = row["skipped"] or (f"{row['estimate']:.3f} (truth {task.mi:.3f}) "
                                                f"{row['seconds']:.1f} s")
                    print(f"[{done}/{total}] n={n} {name} seed={seed} {est}: {status}", flush=True)
    return rows


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _limit_threads(args.threads)

    tasks = build_tasks()
    if args.list:
        for name, t in tasks.items():
            print(f"{name:<40} {t.mi:7.4f} nats  {t.attribute_kind:<10} {t.description}")
        return 0

    import numpy as np
    import torch

    task_names = list(tasks) if args.tasks == "all" else parse_list(
        args.tasks or ",".join(QUICK_TASKS if args.quick else MEDIUM_TASKS), list(tasks), "tasks")
    estimators = parse_list(args.estimators or ",".join(ALL_ESTIMATORS), ALL_ESTIMATORS, "estimators")
    try:
        sizes = [int(s) for s in (args.n or ("2000" if args.quick else "5000")).split(",")]
    except ValueError:
        sys.exit(f"--n {args.n!r}: expected integers, e.g. 5000,20000")
    seeds = parse_seeds("1" if args.quick else args.seeds)
    max_steps = args.max_steps if args.max_steps is not None else (1000 if args.quick else None)
    bmi_version = check_bmi() if any(e in BMI for e in estimators) else "not used"
    torch.set_num_threads(args.threads)

    config = {"n": sizes, "tasks": task_names, "estimators": estimators, "seeds": seeds, "quick": args.quick,
              "max_steps": max_steps, "ksg_max_n": args.ksg_max_n, "ci": args.ci, "threads": args.threads,
              "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))}
    versions = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                "reference": bmi_version}
    print(f"config: {json.dumps(config)}\nversions: {versions}\nload average: {os.getloadavg()}")

    rows = run_all(tasks, config)
    summary = summarise(rows)
    verdict = print_tables(summary, estimators)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": config, "versions": versions, "rows": rows, "summary": summary,
                               "targets": verdict}, indent=1,
                              default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    print(f"\nwrote {out}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
