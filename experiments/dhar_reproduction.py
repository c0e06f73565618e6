"""Dhar et al. (FG 2020) final-layer ordering, Age > Sex > Yaw, on UTKFace with true age and sex.

    python experiments/dhar_reproduction.py --data-root ../shared/data \
        [--backbones dlib-resnet29 hse-mobilenet-vggface2] [--max-images 2000] [--estimators probe mine]

Age and sex are UTKFace's own labels, yaw is estimated (faceapi-headpose).
Every tap layer of each backbone is swept; the final layer's estimates and
CIs decide the ordering, which is stated per backbone and estimator ("holds"
only when each gap is larger than the CIs' overlap). Writes a CSV, a JSON and
one figure per backbone into the ``--out`` folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import pandas as pd

from probes.backbones import get_spec
from probes.cli import add_data_root, add_max_images, add_seed, make_parser, run_command
from probes.expressivity.pipeline import (
    ExpressivityConfig,
    ExpressivitySweep,
    label_faces,
    load_faces,
    write_summary,
    write_table,
)
from probes.outputs import save_figure

log = logging.getLogger(__name__)

ORDER = ("age", "sex", "yaw")


def ordering_verdict(final: pd.DataFrame) -> dict:
    """Whether Age > Sex > Yaw at the final layer, with CI-separated gaps."""
    row = final.set_index("attribute")
    values = {a: float(row.loc[a, "estimate"]) for a in ORDER}
    strict = all(row.loc[a, "ci_low"] > row.loc[b, "ci_high"] for a, b in zip(ORDER, ORDER[1:]))
    point = values["age"] > values["sex"] > values["yaw"]
    return {"estimates": values, "holds_point_estimates": point, "holds_beyond_ci": strict,
            "observed_order": " > ".join(sorted(values, key=values.get, reverse=True))}


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("experiments/dhar_reproduction.py", __doc__)
    add_data_root(parser)
    parser.add_argument("--backbones", nargs="+", default=["dlib-resnet29", "hse-mobilenet-vggface2"])
    add_max_images(parser, default=2000)
    parser.add_argument("--estimators", nargs="+", default=["probe", "mine"])
    add_seed(parser)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--out", default="results",
                        help="output folder: dhar_reproduction.csv, .json and dhar_reproduction_BACKBONE.png")
    return parser


def run(args: argparse.Namespace) -> None:
    # The whole network at full width (no projection), one worker: the sweep as first published here.
    base = ExpressivityConfig(dataset="utkface", data_root=args.data_root, max_images=args.max_images,
                              seed=args.seed, attributes=ORDER, estimators=tuple(args.estimators),
                              seeds=(args.seed,), projection_dim=None, jobs=1)
    faces = load_faces(base)
    labels = label_faces(base, faces)  # once, for every backbone
    tables, verdicts = [], []
    out = Path(args.out) / "dhar_reproduction"  # --out is a folder, as in every command
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.backbones:
        result = ExpressivitySweep(dataclasses.replace(base, backbone=name)).run(faces, labels)
        table = result.table.drop(columns="dataset")
        tables.append(table)
        save_figure(result.figure(f"{name} on UTKFace (n={len(faces)})"), out.with_name(f"{out.name}_{name}.png"),
                    dpi=120)
        final_layer = get_spec(name).embedding_layer
        for est in args.estimators:
            final = table[(table["layer"] == final_layer) & (table["estimator"] == est)]
            verdicts.append({"backbone": name, "layer": final_layer, "estimator": est, **ordering_verdict(final)})
    write_table(out.with_suffix(".csv"), pd.concat(tables, ignore_index=True))
    log.info(f"\nDhar et al.'s final-layer ordering Age > Sex > Yaw on UTKFace (n={len(faces)}; age, sex true; "
             f"yaw estimated by {labels['yaw'].source})")
    log.info(f"{'backbone':<24}{'layer':<16}{'estimator':<10}{'age':>7}{'sex':>7}{'yaw':>7}  order            holds?")
    for v in verdicts:
        e = v["estimates"]
        holds = "yes (CIs apart)" if v["holds_beyond_ci"] else ("yes (point)" if v["holds_point_estimates"] else "no")
        log.info(f"{v['backbone']:<24}{v['layer']:<16}{v['estimator']:<10}{e['age']:>7.3f}{e['sex']:>7.3f}"
                 f"{e['yaw']:>7.3f}  {v['observed_order']:<17}{holds}")
    write_summary(out.with_suffix(".json"), {
        "command": "python experiments/dhar_reproduction.py " + " ".join(sys.argv[1:]),
        "n_images": len(faces), "label_sources": {a: lab.source for a, lab in labels.items()},
        "verdicts": verdicts})
    log.info(f"wrote {out.with_suffix('.csv')}, {out.with_suffix('.json')} and one figure per backbone")


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
