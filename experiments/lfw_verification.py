"""LFW verification accuracy, official 10-fold protocol (pairs.txt), one table for all backbones.

    python experiments/lfw_verification.py --data-home ../shared/data \
        [--backbones dlib-resnet29 ...] [--align crop landmarks] [--weights NAME=PATH ...]

For each backbone and alignment ("crop": the backbone's documented crop of the
250x250 frame; "landmarks": five-point alignment onto the backbone's template
with the 68-landmark net), each unique image is embedded once; the threshold
of each fold is chosen on the other nine. Writes a JSON with the exact setup.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from probes.align import FaceAligner
from probes.backbones import create_backbone
from probes.datasets import load_lfw_pairs
from probes.verification import pair_scores, ten_fold_accuracy


def embed_pairs_images(backbone, dataset, align: str, batch_size: int, aligner=None) -> np.ndarray:
    out = []
    for start in tqdm(range(0, len(dataset), batch_size), desc=f"{backbone.name} [{align}]", unit="batch"):
        images = dataset.load_images(np.arange(start, min(start + batch_size, len(dataset))))
        if align == "landmarks":
            out.append(backbone.embed(aligner.align(images, layout=dataset.layout), layout="chip"))
        else:
            out.append(backbone.embed(images, layout=dataset.layout))
    return np.concatenate(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-home", default=None, help="folder holding lfw_home/ (default: $FACEPROBE_DATA)")
    parser.add_argument("--backbones", nargs="+", default=["dlib-resnet29"])
    parser.add_argument("--weights", nargs="*", default=[], metavar="NAME=PATH",
                        help="weight file for a backbone whose weights you bring")
    parser.add_argument("--align", nargs="+", default=["crop", "landmarks"], choices=["crop", "landmarks"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/lfw_verification.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    weights = dict(item.split("=", 1) for item in args.weights)

    pairs = load_lfw_pairs(args.data_home, subset="10_folds")
    dataset = pairs.dataset()
    rows = []
    for name in args.backbones:
        backbone = create_backbone(name, weights=weights.get(name))
        for align in args.align:
            aligner = FaceAligner.for_backbone(backbone) if align == "landmarks" else None
            t0 = time.time()
            emb = embed_pairs_images(backbone, dataset, align, args.batch_size, aligner)
            scores = pair_scores(emb[pairs.index_a], emb[pairs.index_b], backbone.spec.verification_metric)
            result = ten_fold_accuracy(scores, pairs.same, pairs.fold)
            rows.append({"backbone": name, "align": align, "metric": backbone.spec.verification_metric,
                         "accuracy": result.accuracy, "std": result.std, "auc": result.auc,
                         "fold_accuracies": list(result.fold_accuracies), "n_pairs": result.n_pairs,
                         "n_images": len(dataset), "embedding_size": backbone.spec.embedding_size,
                         "weights_id": backbone.weights_id, "seconds": round(time.time() - t0, 1)})
    print(f"\nLFW official 10-fold protocol ({len(pairs)} pairs, {len(dataset)} images; shared copy is grayscale)")
    print(f"{'backbone':<24} {'align':<10} {'accuracy':>18} {'AUC':>8} {'dim':>5}")
    for r in rows:
        acc = f"{100 * r['accuracy']:.2f} +- {100 * r['std']:.2f}%"
        print(f"{r['backbone']:<24} {r['align']:<10} {acc:>18} {r['auc']:>8.4f} {r['embedding_size']:>5}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
                               "torch": torch.__version__, "python": platform.python_version(),
                               "results": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
