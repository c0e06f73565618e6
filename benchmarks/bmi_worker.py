"""benchmark-mi's side of ``benchmarks/bmi_suite.py``: runs inside its own environment (``.venv-bmi``).

benchmark-mi 0.1.3 imports only with jax/jaxlib 0.4.30, which must not share faceprobe's environment, so
the suite calls this script there as a subprocess. One call handles one (task, n, seed) cell: it draws the
task's sample with benchmark-mi's own sampler, saves it for faceprobe's estimators (``--sample-out``),
runs the selected benchmark-mi estimators on it, and prints one JSON object on its last line.

Every estimator runs at the library's defaults (neural: hidden layers (16, 8), batch 256, learning rate
0.1, up to 10,000 steps, a 50/50 train/test split, the best test value of checks every 250 steps; KSG:
k = 5; CCA: standardised). Its seconds include jax's compilation, which is part of what a user waits for,
and exclude importing jax. Made by ``benchmarks/setup_bmi_env.sh``; not imported by faceprobe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ESTIMATORS = ("bmi-mine", "bmi-infonce", "bmi-nwj", "bmi-dv", "bmi-ksg", "bmi-cca")


def _one_thread() -> None:
    # Before jax loads: XLA's Eigen pool and BLAS read these at start-up; faceprobe runs on one thread too.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                               "intra_op_parallelism_threads=1").strip()


def make(name: str, seed: int):
    import bmi

    neural = {"bmi-mine": bmi.estimators.MINEEstimator, "bmi-infonce": bmi.estimators.InfoNCEEstimator,
              "bmi-nwj": bmi.estimators.NWJEstimator, "bmi-dv": bmi.estimators.DonskerVaradhanEstimator}
    if name in neural:
        return neural[name](verbose=False, seed=seed)
    if name == "bmi-ksg":
        return bmi.estimators.KSGEnsembleFirstEstimator(neighborhoods=(5,), n_jobs=1)
    if name == "bmi-cca":
        return bmi.estimators.CCAMutualInformationEstimator()
    raise SystemExit(f"bmi_worker: unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="print the task table as JSON and exit")
    p.add_argument("--task", help="a key of bmi.benchmark.BENCHMARK_TASKS")
    p.add_argument("--n", type=int, help="sample size")
    p.add_argument("--seed", type=int, help="the sampler's and the estimators' seed")
    p.add_argument("--estimators", default="", help="comma list from " + ",".join(ESTIMATORS) + " (may be empty)")
    p.add_argument("--sample-out", help="save the draw as .npz (X, Y) for faceprobe's estimators")
    args = p.parse_args(argv)
    _one_thread()

    import numpy as np
    from bmi.benchmark import BENCHMARK_TASKS

    if args.list:
        print(json.dumps([{"task": k, "dim_x": t.dim_x, "dim_y": t.dim_y, "truth": float(t.mutual_information)}
                          for k, t in BENCHMARK_TASKS.items()]))
        return 0
    if args.task not in BENCHMARK_TASKS:
        raise SystemExit(f"bmi_worker: --task {args.task!r} is not a benchmark-mi task")
    task = BENCHMARK_TASKS[args.task]
    X, Y = (np.asarray(a, dtype=np.float64) for a in task.sample(args.n, seed=args.seed))
    if args.sample_out:
        np.savez(args.sample_out, X=X, Y=Y)
    rows = []
    for name in [e for e in args.estimators.split(",") if e]:
        est = make(name, args.seed)
        start = time.perf_counter()
        try:
            value, error = float(est.estimate(X, Y)), None
        except Exception as exc:  # noqa: BLE001 - a library failing on a task is a result
            value, error = None, f"{type(exc).__name__}: {exc}"
        rows.append({"estimator": name, "estimate": value, "seconds": time.perf_counter() - start,
                     "error": error})
    print(json.dumps({"task": args.task, "n": args.n, "seed": args.seed,
                      "truth": float(task.mutual_information), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
