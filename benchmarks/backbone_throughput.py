"""Throughput of the three real backbones on CPU, beside their LFW accuracy and embedding size.

Each backbone (``dlib-resnet29``, ``hse-mobilenet-vggface2``, ``mobileface``)
is built with :func:`probes.backbones.create_backbone` and fed through its
public ``embed`` path: random uint8 images at its own input size with layout
``"chip"`` (the default), or, with ``--data-root``, real UTKFace 200 x 200
crops with layout ``"utkface"`` (so the crop and resize are timed too).
Images per second at batch sizes 1, 32 and 128, at ``--threads`` torch
threads and at 1 thread, best of ``--repeats`` passes over at most
``--max-images`` images per measurement.

LFW accuracy is not recomputed: it is read from the JSON files that
``experiments/lfw_verification.py`` writes (official 10-fold protocol), and
the table says which file and which alignment each figure comes from.

    python benchmarks/backbone_throughput.py [--threads 2] [--repeats 3] [--batch-sizes 1 32 128] \
        [--max-images 128] [--data-root DIR] [--out results/backbone_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from functools import partial
from pathlib import Path

import numpy as np
from _timing import load_average, timed, write_record

BACKBONES = ("dlib-resnet29", "hse-mobilenet-vggface2", "mobileface")
LFW_FILES = ("results/lfw_verification.json", "results/lfw_verification_human.json")
# The command that writes each backbone's LFW figures, for the "n/a" hint.
LFW_COMMANDS = {
    "dlib-resnet29": "python experiments/lfw_verification.py --data-home DIR --backbones dlib-resnet29 "
                     "--out results/lfw_verification.json",
    "hse-mobilenet-vggface2": "python experiments/lfw_verification.py --data-home DIR --backbones "
                              "hse-mobilenet-vggface2 mobileface --out results/lfw_verification_human.json",
    "mobileface": "python experiments/lfw_verification.py --data-home DIR --backbones "
                  "hse-mobilenet-vggface2 mobileface --out results/lfw_verification_human.json",
}
ALIGN_NAMES = {"crop": "documented crop", "landmarks": "5-point alignment"}


def fail(message: str) -> None:
    print(f"backbone_throughput: {message}", file=sys.stderr)
    sys.exit(2)


def read_lfw(files) -> tuple[dict, dict]:
    """{(backbone, align): figure} from the LFW result files (first file wins), and each file's status."""
    figures, status = {}, {}
    for name in files:
        path = Path(name)
        if not path.is_file():
            status[name] = "missing"
            continue
        try:
            data = json.loads(path.read_text())
            rows = data["results"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            fail(f"{path}: not a results file of experiments/lfw_verification.py ({exc})")
        status[name] = data.get("command", "?")
        for row in rows:
            key = (row["backbone"], row["align"])
            if key not in figures:  # an earlier file keeps its figure
                figures[key] = {"accuracy": row["accuracy"], "std": row.get("std"), "auc": row.get("auc"),
                                "metric": row.get("metric"), "n_pairs": row.get("n_pairs"),
                                "embedding_size": row.get("embedding_size"),
                                "weights_id": row.get("weights_id"), "file": name, "align": row["align"]}
    return figures, status


def test_images(backbone, n: int, data_root: str | None, seed: int = 0):
    """(N x H x W x 3 uint8 images, layout, description) for ``backbone``."""
    if data_root is None:
        h, w = backbone.spec.input_size
        images = np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
        return images, "chip", f"random uint8 {h}x{w} (layout chip)"
    from probes.datasets import load_utkface

    dataset = load_utkface(data_root, max_images=n, seed=seed)
    images = dataset.load_images()
    return images, "utkface", f"UTKFace {images.shape[1]}x{images.shape[2]} (layout utkface: crop + resize timed)"


def lfw_cell(figure) -> str:
    if figure is None:
        return "n/a"
    return f"{100 * figure['accuracy']:.2f}% [{figure['ref']}]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), help="registered backbone names")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the main columns (default 2)")
    parser.add_argument("--no-single-thread", action="store_true",
                        help="skip the 1-thread columns (they are measured by default when --threads > 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per measurement; the best is reported")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--max-images", type=int, default=128,
                        help="images per timed pass (rounded down to whole batches, at least one batch)")
    parser.add_argument("--data-root", default=None,
                        help="folder holding utkface/: time real UTKFace crops instead of random images")
    parser.add_argument("--lfw-results", nargs="+", default=list(LFW_FILES),
                        help="JSON files of experiments/lfw_verification.py to read accuracy from")
    parser.add_argument("--out", default="results/backbone_throughput.json", help="where to write the JSON")
    return parser


def measure_backbone(backbone, name: str, args, thread_counts: list[int], batch_sizes: list[int],
                     pool_size: int, lfw: dict) -> dict:
    """One table row: ``backbone``'s images/s at every thread count and batch size, beside its LFW figures."""
    import torch
    from tqdm import tqdm

    images, layout, source = test_images(backbone, pool_size, args.data_root)
    dim = backbone.embed(images[:2], layout=layout).shape[1]
    row = {"backbone": name, "input_size": list(backbone.spec.input_size), "embedding_size": dim,
           "images": source, "layout": layout, "weights_id": backbone.weights_id,
           "lfw": {align: lfw.get((name, align)) for align in ALIGN_NAMES}, "timings": []}
    for align, figure in row["lfw"].items():
        if figure and figure.get("weights_id") not in (None, backbone.weights_id):
            print(f"warning: the LFW figure of {name} [{align}] in {figure['file']} was measured with "
                  f"weights {figure['weights_id'][:12]}..., not the loaded {backbone.weights_id[:12]}...")
    jobs = [(t, b) for t in thread_counts for b in batch_sizes]
    for threads, b in tqdm(jobs, desc=name, leave=False):
        torch.set_num_threads(threads)
        n = max(b, args.max_images - args.max_images % b)
        batch = images[:n] if n <= len(images) else np.concatenate([images] * -(-n // len(images)))[:n]
        backbone.embed(batch[:min(b, 4)], layout=layout, batch_size=b)  # warm-up: allocations, caches
        run = partial(backbone.embed, batch, layout=layout, batch_size=b)
        row["timings"].append({"threads": threads, "batch": b, **timed(run, n, args.repeats)})
    return row


def print_table(record: dict, refs: dict[str, str]) -> None:
    """The one table of ``record`` (what the JSON holds), where its LFW figures come from (``refs``: file ->
    its number in the table), and how busy the machine was."""
    rows, thread_counts, batch_sizes = record["backbones"], record["thread_counts"], record["batch_sizes"]
    main_threads, cpus = record["threads"], record["cpu_count"]
    load_before, load_after = record["load_average"]["before"], record["load_average"]["after"]

    def speed(row, threads, b):
        hit = [t for t in row["timings"] if t["threads"] == threads and t["batch"] == b]
        return f"{hit[0]['images_per_s']:.1f}" if hit else "-"

    thr_label = " / ".join(f"{t} thr" for t in thread_counts)
    print(f"\nCPU images/s ({thr_label}); torch {record['torch']}, {record['machine']}, best of {record['repeats']} "
          f"passes of <= {record['max_images']} images; images: {rows[0]['images'] if rows else '-'}")
    head = (f"{'backbone':<24} {'input':>7} {'dim':>5} {'LFW crop':>13} {'LFW 5-point':>13} "
            + " ".join(f"{'b=' + str(b):>13}" for b in batch_sizes))
    print(head)
    print("-" * len(head))
    for row in rows:
        size = "x".join(map(str, row["input_size"]))
        cells = [" / ".join(speed(row, t, b) for t in thread_counts) for b in batch_sizes]
        print(f"{row['backbone']:<24} {size:>7} {row['embedding_size']:>5} "
              f"{lfw_cell(row['lfw']['crop']):>13} {lfw_cell(row['lfw']['landmarks']):>13} "
              + " ".join(f"{c:>13}" for c in cells))
    print("LFW: official 10-fold accuracy, read (not recomputed) from")
    for name, ref in refs.items():
        state = record["lfw_files"][name]
        print(f"  [{ref}] {name}" + (" (missing)" if state == "missing" else f", written by `{state}`"))
    print("  'LFW crop' = the backbone's documented crop of the 250x250 frame; "
          "'LFW 5-point' = 5-point landmark alignment onto its template")
    for row in rows:
        for align, figure in row["lfw"].items():
            if figure is None:
                hint = LFW_COMMANDS.get(row["backbone"],
                                        f"python experiments/lfw_verification.py --backbones {row['backbone']}")
                print(f"  {row['backbone']} [{align}]: n/a (run {hint})")
    busy = {row["backbone"]: max(t["cpu_cores_busy"] for t in row["timings"] if t["threads"] == main_threads)
            for row in rows}
    print(f"cores kept busy at {main_threads} thread(s), max over batch sizes: "
          + ", ".join(f"{k} {v:.2f}" for k, v in busy.items()))
    print(f"load average {load_before:.2f} before, {load_after:.2f} after, on {cpus} CPU(s)")
    if max(load_before, load_after) > 0.75 * cpus:
        print("warning: the machine was busy (load average above 75% of the CPUs); timings are noisy "
              "and low; rerun on an idle machine for reference figures")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or args.max_images < 1 or min(args.batch_sizes) < 1:
        fail("--threads, --repeats, --max-images and --batch-sizes must be at least 1")
    if args.data_root is not None and not Path(args.data_root).is_dir():
        fail(f"--data-root {args.data_root} does not exist (pass the folder holding utkface/)")
    # Pools must be sized before torch starts them; set_num_threads then picks 1 or --threads.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))

    import torch

    from probes.backbones import create_backbone
    from probes.errors import FaceprobeError

    thread_counts = [args.threads] + ([1] if args.threads > 1 and not args.no_single_thread else [])
    batch_sizes = sorted(set(args.batch_sizes))
    load_before = load_average()
    cpus = os.cpu_count() or 1
    print(f"{cpus} CPU(s), load average {load_before:.2f} before the run")
    if load_before > 0.75 * cpus:
        print(f"warning: the machine is busy (load {load_before:.2f} on {cpus} CPUs); "
              "images/s below are lower and noisier than on an idle machine")

    lfw, lfw_status = read_lfw(args.lfw_results)
    refs = {name: str(i + 1) for i, name in enumerate(args.lfw_results)}
    for figure in lfw.values():
        figure["ref"] = refs[figure["file"]]

    pool_size = max(max(batch_sizes), args.max_images)
    rows = []
    for name in args.backbones:
        try:
            backbone = create_backbone(name)
        except FaceprobeError as exc:
            fail(f"cannot build {name}: {exc} (fetch weights with `python -m probes.weights fetch`)")
        rows.append(measure_backbone(backbone, name, args, thread_counts, batch_sizes, pool_size, lfw))
    torch.set_num_threads(args.threads)
    load_after = load_average()
    record = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "threads": args.threads, "thread_counts": thread_counts, "repeats": args.repeats,
        "batch_sizes": batch_sizes, "max_images": args.max_images,
        "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(), "cpu_count": cpus,
        "load_average": {"before": load_before, "after": load_after},
        "lfw_files": {name: lfw_status[name] for name in args.lfw_results},
        "backbones": rows,
    }
    print_table(record, refs)

    write_record(args.out, record)
    return 0

if __name__ == "__main__":
    sys.exit(main())
