"""Reference check: the SSD face detector and expression ports against face-api.js itself.

    python benchmarks/faceapi_reference.py [--data-root DIR] [--n-lfw 4] [--n-utk 4] [--seed 0] \
        [--faceapi-dir DIR] [--tfjs-dir DIR] [--out results/faceapi_reference/ssd_expression.json]
    python benchmarks/faceapi_reference.py --install     # npm pack @vladmandic/face-api@1.7.15 into the cache

Runs @vladmandic/face-api 1.7.15 (its Node build on TensorFlow.js 4.22.0, CPU backend; see
``benchmarks/faceapi_reference.mjs``) and the PyTorch ports on the same pixels:

- SSD MobileNet V1 (:class:`probes.labellers.ssd.SsdFaceDetector`, ``pad=0``, face-api's settings)
  on ``--n-lfw`` LFW frames and ``--n-utk`` UTKFace crops drawn with ``--seed``, plus three made
  images: an LFW frame cut to a non-square 250 x 170, one shrunk to 96 x 96, and the same frame
  pasted twice into a 600 x 400 canvas (two faces). Compared: the raw decoded boxes and scores of
  all 5,118 anchors (largest absolute difference, in fractions of the input square / score units),
  and the final detections of ``locateFaces`` (same count, largest box difference in pixels and
  score difference);
- FaceExpressionNet (:class:`probes.labellers.expression.ExpressionLabeller`) on the UTKFace crops
  resized to 112 x 112 (the net's input, so no resampling differs) and at their own 200 x 200
  (face-api resizes without antialiasing, the port with it): largest probability difference and
  whether the argmax agrees.

Exit status 1 when the raw SSD outputs differ by more than 1e-3 or the 112 x 112 expression
probabilities by more than 1e-4; 2 when Node.js, TF.js or the face-api package is missing. TF.js
is found in ``--tfjs-dir`` (default ``$FACEPROBE_TFJS_DIR`` or ``$FACEPROBE_HOME/node``); the
face-api package in ``--faceapi-dir`` (default ``$FACEPROBE_HOME/node/face-api``, filled by
``--install``). face-api on TF.js's pure-JavaScript CPU backend takes several seconds per image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tfjs_reference import tfjs_available, tfjs_dir_default

from probes import weights as weight_store
from probes.datasets import load_lfw_people, load_utkface
from probes.labellers.expression import EXPRESSIONS, ExpressionLabeller
from probes.labellers.ssd import SsdFaceDetector

FACEAPI = "@vladmandic/face-api@1.7.15"
SCRIPT = Path(__file__).with_suffix(".mjs")
RAW_TARGET = 1e-3
EXPRESSION_TARGET = 1e-4


def faceapi_dir_default() -> Path:
    return weight_store.cache_home() / "node" / "face-api"


def faceapi_available(faceapi_dir: Path) -> str | None:
    """None when the unpacked face-api package is in ``faceapi_dir``, else what is missing."""
    build = Path(faceapi_dir) / "dist" / "face-api.node-wasm.js"
    if not build.is_file():
        return f"{build} is missing (run this script with --install, or pass --faceapi-dir)"
    return None


def install_faceapi(faceapi_dir: Path) -> None:
    """``npm pack`` the face-api package and unpack it into ``faceapi_dir`` (its dist/ and model/)."""
    if faceapi_available(faceapi_dir) is None:
        print(f"{FACEAPI} already in {faceapi_dir}")
        return
    if shutil.which("npm") is None:
        raise SystemExit(f"error: npm is not installed; it is needed to fetch {FACEAPI}")
    with tempfile.TemporaryDirectory(prefix="faceprobe-faceapi-") as tmp:
        cmd = ["npm", "pack", FACEAPI, "--pack-destination", tmp, "--silent"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"error: `{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
        archive = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        Path(faceapi_dir).parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(faceapi_dir, ignore_errors=True)
        shutil.move(str(Path(tmp) / "package"), str(faceapi_dir))
    print(f"unpacked {FACEAPI} into {faceapi_dir}")


def test_images(data_root: Path | None, n_lfw: int, n_utk: int, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """The images the two runtimes see (seeded LFW frames and UTKFace crops, and three made ones), and
    the files of the real ones."""
    lfw = load_lfw_people(data_root, max_images=n_lfw, seed=seed)
    utk = load_utkface(data_root, max_images=n_utk, seed=seed)
    images = {f"lfw{i}": im for i, im in enumerate(lfw.load_images())}
    images.update({f"utk{i}": im for i, im in enumerate(utk.load_images())})
    files = {f"lfw{i}": "/".join(p.parts[-3:]) for i, p in enumerate(lfw.paths)}
    files.update({f"utk{i}": "/".join(p.parts[-2:]) for i, p in enumerate(utk.paths)})
    frame = images["lfw0"]
    images["lfw0_cut_250x170"] = np.ascontiguousarray(frame[:, 40:210])
    images["lfw0_small_96"] = np.asarray(Image.fromarray(frame).resize((96, 96), Image.BILINEAR))
    canvas = np.full((400, 600, 3), 40, np.uint8)
    canvas[20:270, 20:270] = frame
    canvas[130:380, 330:580] = frame
    images["two_faces_600x400"] = canvas
    return images, files


def run_reference(tfjs_dir: Path, faceapi_dir: Path, images: dict[str, np.ndarray],
                  crops: dict[str, np.ndarray], work: Path, min_confidence: float) -> dict:
    def entries(items):
        out = []
        for key, image in items.items():
            path = work / f"{key}.u8"
            np.ascontiguousarray(image, np.uint8).tofile(path)
            out.append({"key": key, "file": str(path), "shape": list(image.shape)})
        return out

    model_dir = weight_store.weight_path("ssd_mobilenetv1_model-weights_manifest.json").parent
    for name in ("ssd_mobilenetv1_model.bin", "face_expression_model-weights_manifest.json",
                 "face_expression_model.bin"):
        weight_store.weight_path(name)  # verified before face-api reads them
    job = {"out_dir": str(work), "model_dir": str(model_dir), "min_confidence": min_confidence,
           "images": entries(images), "crops": entries(crops)}
    (work / "job.json").write_text(json.dumps(job))
    proc = subprocess.run(["node", str(SCRIPT), str(tfjs_dir), str(faceapi_dir), str(work / "job.json")],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"node {SCRIPT.name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads((work / "result.json").read_text())


def compare_ssd(detector: SsdFaceDetector, images: dict[str, np.ndarray], meta: dict, work: Path) -> list[dict]:
    rows = []
    for key, image in images.items():
        with torch.no_grad():
            boxes, scores = detector(detector.preprocess(image))
        ref_boxes = np.fromfile(work / f"{key}.ssd_boxes.f32", "<f4").reshape(-1, 4)
        ref_scores = np.fromfile(work / f"{key}.ssd_scores.f32", "<f4")
        ref = np.asarray(meta["images"][key]["detections"], np.float64).reshape(-1, 5)
        mine = detector.detect(image)
        same = len(ref) == len(mine)
        rows.append({
            "image": key, "size": f"{image.shape[1]}x{image.shape[0]}",
            "raw_box_diff": float(np.abs(boxes[0].double().numpy() - ref_boxes).max()),
            "raw_score_diff": float(np.abs(scores[0].double().numpy() - ref_scores).max()),
            "faces_ref": len(ref), "faces_port": len(mine),
            "box_px_diff": float(np.abs(mine[:, :4] - ref[:, :4]).max()) if same and len(ref) else None,
            "score_diff": float(np.abs(mine[:, 4] - ref[:, 4]).max()) if same and len(ref) else None,
            "best_ref": ref[0].tolist() if len(ref) else None,
            "faceapi_ms": meta["images"][key]["ms"]})
    return rows


def compare_expressions(labeller: ExpressionLabeller, crops: dict[str, np.ndarray], meta: dict) -> list[dict]:
    rows = []
    for key, crop in crops.items():
        ours = labeller.predict(crop[None], layout="chip")
        p = np.stack([ours[f"p_{e}"][0] for e in EXPRESSIONS])
        ref = np.asarray(meta["crops"][key], np.float64)
        rows.append({"crop": key, "size": f"{crop.shape[1]}x{crop.shape[0]}",
                     "max_p_diff": float(np.abs(p - ref).max()), "p_ref": ref.tolist(),
                     "expression_ref": EXPRESSIONS[int(ref.argmax())], "expression_port": EXPRESSIONS[int(p.argmax())],
                     "p_ref_max": float(ref.max())})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=os.environ.get("FACEPROBE_DATA"))
    parser.add_argument("--n-lfw", type=int, default=4)
    parser.add_argument("--n-utk", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-confidence", type=float, default=0.5)
    parser.add_argument("--tfjs-dir", type=Path, default=None)
    parser.add_argument("--faceapi-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    parser.add_argument("--install", action="store_true", help=f"npm pack {FACEAPI} into --faceapi-dir, then exit")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    faceapi_dir = args.faceapi_dir or faceapi_dir_default()
    if args.install:
        install_faceapi(faceapi_dir)
        return 0
    tfjs_dir = args.tfjs_dir or tfjs_dir_default()
    missing = tfjs_available(tfjs_dir) or faceapi_available(faceapi_dir)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    images, files = test_images(args.data_root, args.n_lfw, args.n_utk, args.seed)
    utk = {k: v for k, v in images.items() if k.startswith("utk")}
    crops = {f"{k}_112": np.asarray(Image.fromarray(v).resize((112, 112), Image.BILINEAR)) for k, v in utk.items()}
    crops.update({f"{k}_200": v for k, v in utk.items()})
    with tempfile.TemporaryDirectory(prefix="faceprobe-faceapi-") as tmp:
        meta = run_reference(tfjs_dir, faceapi_dir, images, crops, Path(tmp), args.min_confidence)
        ssd_rows = compare_ssd(SsdFaceDetector(min_confidence=args.min_confidence), images, meta, Path(tmp))
    expression_rows = compare_expressions(ExpressionLabeller(), crops, meta)

    print(f"PyTorch ports vs face-api {meta['faceapi']} on TensorFlow.js {meta['tfjs']} ({meta['backend']} backend, "
          f"Node.js {meta['node']})")
    print(f"\nSSD MobileNet V1 (min_confidence {args.min_confidence}, pad 0): raw = all 5,118 decoded anchors")
    print(f"{'image':<20} {'size':>9} {'raw box':>9} {'raw score':>9} {'faces':>7} {'box px':>8} {'score':>8}  "
          "best (face-api)")
    for r in ssd_rows:
        faces = f"{r['faces_ref']}/{r['faces_port']}"
        px = "-" if r["box_px_diff"] is None else f"{r['box_px_diff']:.2g}"
        sc = "-" if r["score_diff"] is None else f"{r['score_diff']:.2g}"
        print(f"{r['image']:<20} {r['size']:>9} {r['raw_box_diff']:>9.2g} {r['raw_score_diff']:>9.2g} {faces:>7} "
              f"{px:>8} {sc:>8}  {None if r['best_ref'] is None else np.round(r['best_ref'], 2).tolist()}")
    print("\nFaceExpressionNet: largest probability difference; argmax face-api / port")
    for r in expression_rows:
        print(f"{r['crop']:<20} {r['size']:>9} {r['max_p_diff']:>9.2g}  {r['expression_ref']} / {r['expression_port']} "
              f"(p {r['p_ref_max']:.3f})")
    raw_worst = max(max(r["raw_box_diff"], r["raw_score_diff"]) for r in ssd_rows)
    counts_agree = all(r["faces_ref"] == r["faces_port"] for r in ssd_rows)
    expression_worst = max(r["max_p_diff"] for r in expression_rows if r["crop"].endswith("_112"))
    ok = raw_worst <= RAW_TARGET and counts_agree and expression_worst <= EXPRESSION_TARGET
    print(f"\nSSD raw outputs: largest difference {raw_worst:.3g} (target {RAW_TARGET:g}); detection counts "
          f"{'agree' if counts_agree else 'DIFFER'}; expression at 112 x 112: {expression_worst:.3g} "
          f"(target {EXPRESSION_TARGET:g}) -> {'PASS' if ok else 'FAIL'}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
                                   **{k: meta[k] for k in ("faceapi", "tfjs", "backend", "node")},
                                   "load_average": os.getloadavg()[0], "files": files, "ssd": ssd_rows,
                                   "expression": expression_rows, "pass": ok}, indent=1))
        print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
