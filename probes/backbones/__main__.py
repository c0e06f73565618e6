"""Preprocessing self-check: pinned inputs through the public API must give pinned embeddings.

    python -m probes.backbones list
    python -m probes.backbones check NAME [NAME ...] [--data-root DIR] [--weights PATH]
    python -m probes.backbones check NAME --write-reference      # maintainers only

What is checked, and against what: :mod:`probes.backbones.check`. Exit code 1
when a backbone fails its check or cannot be checked (e.g. it has no pinned
reference), 0 when every named backbone passes.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..cli import EXIT_FAILURE, EXIT_OK, add_data_root, make_parser, run_command
from ..errors import FaceprobeError
from .check import reference_path, run_check, write_reference
from .registry import get_spec, list_backbones

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m probes.backbones", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registered backbones and whether a reference is pinned")
    p_check = sub.add_parser("check", help="compare embeddings of pinned inputs with the pinned reference")
    p_check.add_argument("names", nargs="+", metavar="NAME")
    add_data_root(p_check)
    p_check.add_argument("--weights", default=None, help="weight file to check (default: the pinned one)")
    p_check.add_argument("--threads", type=int, default=1)
    p_check.add_argument("--write-reference", action="store_true",
                         help="(maintainers) embed the inputs now and overwrite the pinned reference")
    return parser


def list_command() -> None:
    for name in list_backbones():
        spec = get_spec(name)
        ref = "reference pinned" if reference_path(name).is_file() else "no reference"
        log.info(f"{name:<26} {spec.input_size[0]}x{spec.input_size[1]} {spec.colour_order} "
                 f"{spec.embedding_size:>5}-D  {ref}")


def check_command(args: argparse.Namespace) -> bool:
    """Check (or, with --write-reference, pin) every named backbone; False when one fails or errs.

    One backbone's error is reported and the others are still checked.
    """
    ok = True
    for name in args.names:
        try:
            if args.write_reference:
                log.info(f"wrote {write_reference(name, args.data_root, args.weights)}")
            else:
                check = run_check(name, args.data_root, args.weights)
                log.info(check.report())
                ok &= check.passed
        except FaceprobeError as exc:
            log.error("%s", exc)
            ok = False
    return ok


def main(argv=None) -> int:
    passed = []

    def run(args: argparse.Namespace) -> None:
        if args.command == "list":
            list_command()
        else:
            passed.append(check_command(args))

    code = run_command(build_parser(), run, argv)
    # a failed check has reported itself: exit 1 without a further message
    return EXIT_FAILURE if code == EXIT_OK and not all(passed) else code


if __name__ == "__main__":
    sys.exit(main())
