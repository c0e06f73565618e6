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
import logging
import sys
import time
from pathlib import Path

from probes.align import FaceAligner
from probes.backbones import create_backbone
from probes.capture import embed_dataset
from probes.cli import add_data_root, make_parser, run_command
from probes.datasets import LFWPairs, load_lfw_pairs
from probes.outputs import atomic_write_bytes, provenance
from probes.verification import pair_scores, ten_fold_accuracy

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("lfw_verification.py", __doc__)
    add_data_root(parser)
    parser.add_argument("--backbones", nargs="+", default=["dlib-resnet29"])
    parser.add_argument("--weights", nargs="*", default=[], metavar="NAME=PATH",
                        help="weight file for a backbone whose weights you bring")
    parser.add_argument("--align", nargs="+", default=["crop", "landmarks"], choices=["crop", "landmarks"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/lfw_verification.json")
    return parser


def evaluate(pairs: LFWPairs, name: str, weights: str | None, aligns: list[str], batch_size: int) -> list[dict]:
    """One result row per alignment of backbone ``name`` on the LFW ``pairs``."""
    dataset = pairs.dataset()
    backbone = create_backbone(name, weights=weights)
    rows = []
    for align in aligns:
        aligner = FaceAligner.for_backbone(backbone) if align == "landmarks" else None
        t0 = time.time()
        emb = embed_dataset(backbone, dataset, batch_size=batch_size, aligner=aligner)
        scores = pair_scores(emb[pairs.index_a], emb[pairs.index_b], backbone.spec.verification_metric)
        result = ten_fold_accuracy(scores, pairs.same, pairs.fold)
        rows.append({"backbone": name, "align": align, "metric": backbone.spec.verification_metric,
                     "accuracy": result.accuracy, "std": result.std, "auc": result.auc,
                     "fold_accuracies": list(result.fold_accuracies), "n_pairs": result.n_pairs,
                     "n_images": len(dataset), "embedding_size": backbone.spec.embedding_size,
                     "weights_id": backbone.weights_id, "seconds": round(time.time() - t0, 1)})
    return rows


def report(pairs: LFWPairs, rows: list[dict]) -> None:
    log.info(f"\nLFW official 10-fold protocol ({len(pairs)} pairs, {len(pairs.unique_paths())} images; "
             "shared copy is grayscale)")
    log.info(f"{'backbone':<24} {'align':<10} {'accuracy':>18} {'AUC':>8} {'dim':>5}")
    for r in rows:
        acc = f"{100 * r['accuracy']:.2f} +- {100 * r['std']:.2f}%"
        log.info(f"{r['backbone']:<24} {r['align']:<10} {acc:>18} {r['auc']:>8.4f} {r['embedding_size']:>5}")


def main(argv=None) -> int:
    def run(args: argparse.Namespace) -> None:
        weights = dict(item.split("=", 1) for item in args.weights)
        pairs = load_lfw_pairs(args.data_root, subset="10_folds")
        rows = [row for name in args.backbones
                for row in evaluate(pairs, name, weights.get(name), args.align, args.batch_size)]
        report(pairs, rows)
        record = {"command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]), **provenance(),
                  "results": rows}
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, lambda handle: handle.write(json.dumps(record, indent=2).encode()))
        log.info(f"wrote {out}")

    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
