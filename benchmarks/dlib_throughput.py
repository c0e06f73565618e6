"""Throughput of ``dlib-resnet29`` (our PyTorch port) beside dlib's own C++ model.

Both networks get the same aligned 150 x 150 chips, made by dlib itself
(frontal face detector, 5-point shape predictor, ``get_face_chip`` with
padding 0.25), from UTKFace or LFW images. Reported: images/s per batch size
for each, the speed ratio, the cosine agreement of the two 128-D descriptors,
and the mean 5-point landmark template of the chips (dlib's landmarks
detected on the chips, in chip pixels).

    python benchmarks/dlib_throughput.py --data-root DIR [--n 128] [--out results/dlib_throughput.json]

Needs PyPI ``dlib-bin`` and ``face-recognition-models`` (its ``.dat`` files are
opened by path; the package itself is never imported, its ``__init__`` needs
``pkg_resources``). torch runs on 2 threads.
"""

from __future__ import annotations

import os

# Thread counts must be fixed before torch/dlib start their pools.
THREADS = 2
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))

import argparse
import importlib.util
import platform
import sys
from pathlib import Path

import numpy as np
from _timing import load_average, timed, write_record

BATCH_SIZES = (1, 32, 128)
CHIP_SIZE, CHIP_PADDING = 150, 0.25
MODEL_FILES = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")


def fail(message: str) -> None:
    print(f"dlib_throughput: {message}", file=sys.stderr)
    sys.exit(2)


def import_dlib():
    try:
        import dlib
    except ImportError:
        fail("dlib is not installed; install the prebuilt wheel with `.venv/bin/pip install dlib-bin`")
    return dlib


def dlib_models_dir(override: str | None) -> Path:
    """The folder of face-recognition-models' .dat files, found without importing the package."""
    if override:
        folder = Path(override)
    else:
        spec = importlib.util.find_spec("face_recognition_models")  # finds, does not execute
        if spec is None or not spec.submodule_search_locations:
            fail("face-recognition-models is not installed; run "
                 "`.venv/bin/pip install face-recognition-models==0.3.0` (or pass --models-dir)")
        folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing:
        fail(f"{folder} lacks {', '.join(missing)}; is face-recognition-models 0.3.0 installed?")
    return folder


def candidate_files(data_root: Path, dataset: str, count: int) -> list[Path]:
    """A deterministic spread of ``count`` image files (LFW: one per person)."""
    if dataset == "utkface":
        files = sorted((data_root / "utkface").glob("*.jpg"))
    else:
        people = sorted(p for p in (data_root / "lfw_home" / "lfw").iterdir() if p.is_dir())
        files = [p / f"{p.name}_0001.jpg" for p in people]
    if not files:
        fail(f"no {dataset} images under {data_root}; pass --data-root (root holding utkface/ and lfw_home/)")
    step = max(1, len(files) // count)
    return files[::step][:count]


def make_chips(files, detector, predictor, dlib, n: int):
    """dlib-aligned chips of the first ``n`` images where dlib finds a face."""
    from tqdm import tqdm

    from probes.errors import ImageError
    from probes.images import load_image

    chips, used, skipped = [], [], 0
    for path in tqdm(files, desc="dlib chips", leave=False):
        if len(chips) == n:
            break
        try:
            image = load_image(path)
        except ImageError as exc:
            print(f"  skipped: {exc}", file=sys.stderr)
            skipped += 1
            continue
        faces = detector(image, 1)
        if not faces:
            skipped += 1
            continue
        face = max(faces, key=lambda r: r.area())
        chips.append(dlib.get_face_chip(image, predictor(image, face), size=CHIP_SIZE, padding=CHIP_PADDING))
        used.append(path)
    return np.stack(chips) if chips else np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8), used, skipped


def chip_template(chips, detector, predictor):
    """Mean (and std) over chips of dlib's 5 landmarks found on the chips themselves, in chip pixels."""
    points = []
    for chip in chips:
        faces = detector(chip, 1)
        if not faces:
            continue
        shape = predictor(chip, max(faces, key=lambda r: r.area()))
        points.append([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)])
    if not points:
        return None
    points = np.asarray(points, np.float64)
    return {"points_px": points.mean(0).round(2).tolist(), "std_px": points.std(0).round(2).tolist(),
            "chips_with_face": len(points), "chip_size": CHIP_SIZE, "padding": CHIP_PADDING,
            "order": "dlib 5-point: 0/1 = outer/inner corner of the eye on the image's right, "
                     "2/3 = outer/inner corner of the eye on the image's left, 4 = base of the nose"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("FACEPROBE_DATA"),
                        help="folder holding utkface/ and lfw_home/ (default: $FACEPROBE_DATA)")
    parser.add_argument("--dataset", choices=("utkface", "lfw"), default="utkface",
                        help="source images (UTKFace is colour; the shared LFW is grayscale)")
    parser.add_argument("--n", type=int, default=128, help="number of chips (images without a face are skipped)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per batch size; the best is reported")
    parser.add_argument("--models-dir", help="folder with dlib's .dat files (default: face-recognition-models')")
    parser.add_argument("--out", default="results/dlib_throughput.json", help="where to write the JSON results")
    return parser


def time_engines(port, dlib_net, chips: np.ndarray, repeats: int) -> list[dict]:
    """Images/s of the port (at THREADS and at 1 thread) and of dlib's own network, per batch size."""
    import torch

    n, chip_list = len(chips), list(chips)

    def run_port(b, count=n):
        return lambda: [port.embed(chips[i:i + b], layout="chip", batch_size=b) for i in range(0, count, b)]

    def run_dlib(b, count=n):
        if b == 1:  # the single-chip overload
            return lambda: [dlib_net.compute_face_descriptor(c) for c in chip_list[:count]]
        return lambda: [dlib_net.compute_face_descriptor(chip_list[i:i + b]) for i in range(0, count, b)]

    rows = []
    for b in BATCH_SIZES:
        if b > n:
            continue
        # "port-1thread" is the like-for-like row: this dlib build runs its network on one core.
        for name, make, threads in (("port", run_port, THREADS), ("port-1thread", run_port, 1),
                                    ("dlib", run_dlib, THREADS)):
            torch.set_num_threads(threads)
            make(b, b)()  # warm-up: one batch (allocations, caches)
            rows.append({"engine": name, "batch": b, **timed(make(b, n - n % b), n - n % b, repeats)})
    torch.set_num_threads(THREADS)
    return rows


def print_report(record: dict, header: str) -> None:
    """``header``, then the speeds, the descriptors' agreement and the chip template of ``record`` (the JSON)."""
    n, template = record["n_chips"], record["chip_template"]
    cosine, l2 = record["cosine"], record["l2"]
    print(header)
    print(f"{'batch':>5} | {'port img/s':>10} | {'dlib img/s':>10} | {'port/dlib':>9} | "
          f"{'port 1 thread img/s':>19} | {'cores busy port/dlib':>20}")
    for b in BATCH_SIZES:
        by = {r["engine"]: r for r in record["timings"] if r["batch"] == b}
        if len(by) < 3:
            continue
        p, p1, d = by["port"], by["port-1thread"], by["dlib"]
        print(f"{b:>5} | {p['images_per_s']:>10.1f} | {d['images_per_s']:>10.1f} | "
              f"{p['images_per_s'] / d['images_per_s']:>8.2f}x | {p1['images_per_s']:>10.1f} "
              f"({p1['images_per_s'] / d['images_per_s']:>5.2f}x) | "
              f"{p['cpu_cores_busy']:>9.2f} / {d['cpu_cores_busy']:<8.2f}")
    print(f"descriptor agreement over {n} chips: cosine mean {cosine['mean']:.5f}, min {cosine['min']:.5f}; "
          f"L2 mean {l2['mean']:.4f}, max {l2['max']:.4f} (dlib's same-person threshold is 0.6)")
    if template:
        print(f"5-point template on {CHIP_SIZE}x{CHIP_SIZE} chips (dlib landmarks detected on "
              f"{template['chips_with_face']}/{n} chips), x, y in px:")
        for i, ((x, y), (sx, sy)) in enumerate(zip(template["points_px"], template["std_px"])):
            print(f"  {i}: ({x:6.2f}, {y:6.2f})  std ({sx:.2f}, {sy:.2f})")
    if record["load_average"] > 0.75 * (record["cpu_count"] or 1):
        print("note: the machine was busy (load average above 75% of the CPUs); timings are noisy")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.data_root or not Path(args.data_root).is_dir():
        fail("pass --data-root DIR (or set FACEPROBE_DATA): the folder holding utkface/ and lfw_home/")
    if args.n < 1:
        fail("--n must be at least 1")

    dlib = import_dlib()
    models = dlib_models_dir(args.models_dir)
    import torch

    from probes.backbones import create_backbone

    torch.set_num_threads(THREADS)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    dlib_net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    port = create_backbone("dlib-resnet29")

    files = candidate_files(Path(args.data_root), args.dataset, 4 * args.n)
    chips, used, skipped = make_chips(files, detector, predictor, dlib, args.n)
    n = len(chips)
    if n == 0:
        fail(f"dlib found no face in {len(files)} {args.dataset} images")
    print(f"{n} chips {CHIP_SIZE}x{CHIP_SIZE} (padding {CHIP_PADDING}) from {args.dataset}; "
          f"{skipped} image(s) without a face skipped")

    ours = port.embed(chips, layout="chip", batch_size=32)
    theirs = np.asarray([np.asarray(dlib_net.compute_face_descriptor(c)) for c in chips], np.float32)
    cosine = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    l2 = np.linalg.norm(ours - theirs, axis=1)
    rows = time_engines(port, dlib_net, chips, args.repeats)
    template = chip_template(chips, detector, predictor)

    load = load_average()
    header = (f"torch threads = {THREADS} (torch {torch.__version__}); dlib {dlib.__version__} "
              f"(CPU, BLAS {'on' if dlib.DLIB_USE_BLAS else 'off'}, "
              f"AVX {'on' if dlib.USE_AVX_INSTRUCTIONS else 'off'}); "
              f"{os.cpu_count()} CPU(s), load average {load:.2f}; best of {args.repeats} passes over {n} chips")
    record = {
        "n_chips": n, "dataset": args.dataset, "skipped_no_face": skipped,
        "images": [str(p.relative_to(args.data_root)) for p in used],
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "dlib": dlib.__version__,
        "cpu_count": os.cpu_count(), "load_average": load, "machine": platform.processor() or platform.machine(),
        "timings": rows,
        "cosine": {"mean": float(cosine.mean()), "min": float(cosine.min())},
        "l2": {"mean": float(l2.mean()), "max": float(l2.max())},
        "chip_template": template,
    }
    print_report(record, header)

    write_record(args.out, record)
    return 0

if __name__ == "__main__":
    sys.exit(main())
