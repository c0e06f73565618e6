"""Reference check: the PyTorch graph port against TensorFlow.js itself, per model and output.

    python benchmarks/tfjs_reference.py [--tfjs-dir DIR] [--n-inputs 3] [--models hse-mobilenet-vggface2 mobileface]

Runs each pinned TF.js graph model (``faceres``, ``mobileface``) on the same
fixed inputs in TensorFlow.js 4.22.0 (CPU backend, under Node.js; see
``benchmarks/tfjs_reference.mjs``) and in :class:`probes.tfjs_graph.TFJSGraph`,
and prints the largest absolute difference per output, relative to the output's
scale (its largest absolute value). Target: <= 1e-4. Exit status 1 when a
difference exceeds the target, 2 when Node.js or TF.js is missing.

TF.js is found in ``--tfjs-dir`` / ``$FACEPROBE_TFJS_DIR`` (default
``$FACEPROBE_HOME/node``); ``--install`` puts it there (``npm install --prefix DIR
@tensorflow/tfjs@4.22.0``).
Inputs: image 0 is a smooth deterministic pattern, the others uniform noise
from ``numpy.random.default_rng(seed)``, both in the input units the graph
expects (BGR minus the ImageNet mean for faceres, 0..255 for mobileface); the
Python side writes them as float32 files, so both runtimes read identical bits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from probes import weights as weight_store
from probes.tfjs_graph import load_graph_model

TARGET = 1e-4
TFJS_VERSION = "4.22.0"
SCRIPT = Path(__file__).with_suffix(".mjs")

# Per model: the graph file, input size, input offset (so the values are in the graph's units),
# and the outputs compared (final ones plus an early and a middle node).
MODELS = {
    "hse-mobilenet-vggface2": {
        "file": "faceres.json", "size": 224, "offset": -120.0,
        "outputs": ["conv1_relu/clip_by_value", "conv_pw_6_relu/clip_by_value", "global_pooling/Mean",
                    "age_pred/Softmax", "gender_pred/Sigmoid"],
    },
    "mobileface": {
        "file": "mobileface.json", "size": 112, "offset": 0.0,
        "outputs": ["add", "add_8", "add_16", "batchnorm0/add_1"],
    },
}


def tfjs_dir_default() -> Path:
    env = os.environ.get("FACEPROBE_TFJS_DIR")
    return Path(env) if env else weight_store.cache_home() / "node"


def tfjs_available(tfjs_dir: Path) -> str | None:
    """None when Node.js and TF.js are usable, else the reason they are not."""
    if shutil.which("node") is None:
        return "node (Node.js) is not on PATH"
    package = Path(tfjs_dir) / "node_modules" / "@tensorflow" / "tfjs" / "package.json"
    if not package.is_file():
        return (f"@tensorflow/tfjs is not installed in {tfjs_dir} (npm install --prefix {tfjs_dir} "
                f"@tensorflow/tfjs@{TFJS_VERSION})")
    version = json.loads(package.read_text()).get("version")
    if version != TFJS_VERSION:
        return f"{package} is version {version}, the check pins {TFJS_VERSION}"
    return None


def install_tfjs(tfjs_dir: Path) -> None:
    """``npm install --prefix tfjs_dir @tensorflow/tfjs@4.22.0`` unless that version is there already."""
    if tfjs_available(tfjs_dir) is None:
        print(f"@tensorflow/tfjs@{TFJS_VERSION} already in {tfjs_dir}")
        return
    if shutil.which("npm") is None:
        raise SystemExit("error: npm is not installed; it is needed to install @tensorflow/tfjs")
    Path(tfjs_dir).mkdir(parents=True, exist_ok=True)
    cmd = ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(tfjs_dir),
           f"@tensorflow/tfjs@{TFJS_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"error: `{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    print(f"installed @tensorflow/tfjs@{TFJS_VERSION} in {tfjs_dir}")


def reference_inputs(size: int, n: int, offset: float, seed: int = 0) -> np.ndarray:
    """n x size x size x 3 float32 (NHWC): a smooth pattern, then uniform noise, in 0..255 + offset."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    pattern = np.stack([np.sin(2 * np.pi * (1.5 * xx + 0.5 * yy)), np.cos(2 * np.pi * (yy - 0.7 * xx)),
                        np.sin(2 * np.pi * 2.0 * xx * yy)], axis=-1)
    images = [127.5 + 120.0 * pattern]
    rng = np.random.default_rng(seed)
    images += [rng.uniform(0.0, 255.0, (size, size, 3)) for _ in range(n - 1)]
    return (np.stack(images[:n]) + offset).astype(np.float32)


def run_tfjs(tfjs_dir: Path, jobs: list[dict], work: Path) -> dict:
    job_file = work / "job.json"
    job_file.write_text(json.dumps({"out_dir": str(work), "models": jobs}))
    proc = subprocess.run(["node", str(SCRIPT), str(tfjs_dir), str(job_file)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"node {SCRIPT.name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads((work / "result.json").read_text())


def compare(models: list[str], tfjs_dir: Path, n_inputs: int, seed: int = 0) -> tuple[list[dict], dict]:
    """One row per (model, output): max abs difference, output scale, their ratio."""
    with tempfile.TemporaryDirectory(prefix="faceprobe-tfjs-") as tmp:
        work = Path(tmp)
        jobs, graphs, inputs = [], {}, {}
        for key in models:
            spec = MODELS[key]
            model_json = weight_store.weight_path(spec["file"])
            weight_store.weight_path(spec["file"].replace(".json", ".bin"))  # verify the shard too
            graph = load_graph_model(model_json)
            x = reference_inputs(spec["size"], n_inputs, spec["offset"], seed)
            x.tofile(work / f"{key}.in.f32")
            graphs[key], inputs[key] = graph, x
            jobs.append({"key": key, "model_json": str(model_json), "input_name": graph.input_name,
                         "input_file": str(work / f"{key}.in.f32"), "input_shape": list(x.shape),
                         "outputs": spec["outputs"]})
        meta = run_tfjs(tfjs_dir, jobs, work)
        rows = []
        for key in models:
            ref_meta = meta["models"][key]
            with torch.no_grad():
                ours = graphs[key](torch.from_numpy(inputs[key]).permute(0, 3, 1, 2), outputs=MODELS[key]["outputs"])
            for i, (name, shape) in enumerate(zip(ref_meta["outputs"], ref_meta["shapes"])):
                ref = np.fromfile(work / f"{key}__{i}.f32", dtype="<f4").reshape(shape)
                mine = ours[name]
                mine = (mine.permute(0, 2, 3, 1) if mine.ndim == 4 else mine).numpy()
                if mine.shape != ref.shape:
                    raise RuntimeError(f"{key} {name}: PyTorch shape {mine.shape} vs TF.js {ref.shape}")
                diff = float(np.abs(mine.astype(np.float64) - ref).max())
                scale = float(np.abs(ref).max())
                rows.append({"model": key, "output": name, "shape": list(ref.shape), "max_abs_diff": diff,
                             "scale": scale, "relative": diff / scale if scale > 0 else diff,
                             "tfjs_ms": ref_meta["ms"]})
    return rows, {k: meta[k] for k in ("tfjs", "backend", "node")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tfjs-dir", type=Path, default=None,
                        help="folder holding node_modules/@tensorflow/tfjs (default $FACEPROBE_TFJS_DIR "
                             "or $FACEPROBE_HOME/node)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--n-inputs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    parser.add_argument("--install", action="store_true",
                        help="install @tensorflow/tfjs@4.22.0 into the TF.js folder with npm, then exit")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tfjs_dir = args.tfjs_dir or tfjs_dir_default()
    if args.install:
        install_tfjs(tfjs_dir)
        return 0
    missing = tfjs_available(tfjs_dir)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    rows, meta = compare(args.models, tfjs_dir, args.n_inputs, args.seed)
    print(f"PyTorch port vs TensorFlow.js {meta['tfjs']} ({meta['backend']} backend, Node.js {meta['node']}), "
          f"{args.n_inputs} fixed input(s) per model; target max|diff| / max|ref| <= {TARGET:g}")
    print(f"{'model':<24} {'output':<30} {'shape':<18} {'max|diff|':>10} {'max|ref|':>10} {'relative':>10}")
    worst: dict[str, float] = {}
    for r in rows:
        print(f"{r['model']:<24} {r['output']:<30} {tuple(r['shape'])!s:<18} {r['max_abs_diff']:>10.3g} "
              f"{r['scale']:>10.4g} {r['relative']:>10.3g}")
        worst[r["model"]] = max(worst.get(r["model"], 0.0), r["relative"])
    for model, rel in worst.items():
        print(f"{model}: largest relative difference {rel:.3g} ({'PASS' if rel <= TARGET else 'FAIL'})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
                                              "target": TARGET, **meta, "rows": rows}, indent=2))
    return 0 if all(rel <= TARGET for rel in worst.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
