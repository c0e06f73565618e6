"""Dhar et al. (FG 2020) final-layer ordering, Age > Sex > Yaw, on UTKFace with true age and sex.

    python experiments/dhar_reproduction.py --data-root ../shared/data \
        [--backbones dlib-resnet29 hse-mobilenet-vggface2] [--max-images 2000] [--estimators probe mine]

Age and sex are UTKFace's own labels, yaw is estimated (faceapi-headpose).
Every tap layer of each backbone is swept; the final layer's estimates and
CIs decide the ordering, which is stated per backbone and estimator ("holds"
only when each gap is larger than the CIs' overlap). Writes a CSV, a JSON and
one figure per backbone next to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

from probes.backbones import create_backbone
from probes.capture import LayerCapture
from probes.datasets import load_utkface
from probes.expressivity.sweep import collect_labels, expressivity_sweep, plot_expressivity

ORDER = ("age", "sex", "yaw")


def ordering_verdict(final: pd.DataFrame) -> dict:
    """Whether Age > Sex > Yaw at the final layer, with CI-separated gaps."""
    row = final.set_index("attribute")
    values = {a: float(row.loc[a, "estimate"]) for a in ORDER}
    strict = all(row.loc[a, "ci_low"] > row.loc[b, "ci_high"] for a, b in zip(ORDER, ORDER[1:]))
    point = values["age"] > values["sex"] > values["yaw"]
    return {"estimates": values, "holds_point_estimates": point, "holds_beyond_ci": strict,
            "observed_order": " > ".join(sorted(values, key=values.get, reverse=True))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--backbones", nargs="+", default=["dlib-resnet29", "hse-mobilenet-vggface2"])
    parser.add_argument("--max-images", type=int, default=2000)
    parser.add_argument("--estimators", nargs="+", default=["probe", "mine"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/dhar_reproduction")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    faces = load_utkface(args.data_root, max_images=args.max_images, seed=args.seed)
    labels = collect_labels(faces, ORDER)
    tables, verdicts = [], []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.backbones:
        backbone = create_backbone(name)
        layers = list(backbone.tap_layers)
        features = LayerCapture(backbone, layers).capture(faces)
        table = expressivity_sweep(features, labels, estimators=args.estimators, seeds=[args.seed],
                                   layer_order=layers)
        table.insert(0, "backbone", name)
        tables.append(table)
        plot_expressivity(table, title=f"{name} on UTKFace (n={len(faces)})").savefig(
            out.with_name(f"{out.name}_{name}.png"), dpi=120)
        final_layer = backbone.spec.embedding_layer
        for est in args.estimators:
            final = table[(table["layer"] == final_layer) & (table["estimator"] == est)]
            verdicts.append({"backbone": name, "layer": final_layer, "estimator": est, **ordering_verdict(final)})
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    print(f"\nDhar et al.'s final-layer ordering Age > Sex > Yaw on UTKFace (n={len(faces)}; age, sex true; "
          f"yaw estimated by {labels['yaw'].source})")
    print(f"{'backbone':<24}{'layer':<16}{'estimator':<10}{'age':>7}{'sex':>7}{'yaw':>7}  order            holds?")
    for v in verdicts:
        e = v["estimates"]
        holds = "yes (CIs apart)" if v["holds_beyond_ci"] else ("yes (point)" if v["holds_point_estimates"] else "no")
        print(f"{v['backbone']:<24}{v['layer']:<16}{v['estimator']:<10}{e['age']:>7.3f}{e['sex']:>7.3f}"
              f"{e['yaw']:>7.3f}  {v['observed_order']:<17}{holds}")
    out.with_suffix(".json").write_text(json.dumps({
        "command": "python experiments/dhar_reproduction.py " + " ".join(sys.argv[1:]),
        "n_images": len(faces), "label_sources": {a: lab.source for a, lab in labels.items()},
        "verdicts": verdicts}, indent=2))
    print(f"wrote {out.with_suffix('.csv')}, {out.with_suffix('.json')} and one figure per backbone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
