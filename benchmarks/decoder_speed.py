"""Deep Face Decoder speed on CPU: inference and training images/s, template caching, memory peak.

    python benchmarks/decoder_speed.py [--data-root DIR] [--n 64] [--batch-size 32] [--threads 2]
                                       [--image-size 112] [--width 1] [--steps 3] [--out FILE.json]

Measured at the default configuration (112 x 112, width 1, dlib-resnet29
templates; the pretrained weights when fetched, else a random-init net of the
same cost):

- decoder inference (eval, no grad), images/s;
- one training step (decoder forward + backward + Adam) with (a) the pixel and
  gradient terms only, (b) plus LPIPS-alex, (c) the default losses (plus the
  identity term through the backbone), images/s;
- template + target-chip caching on ``--n`` LFW images: first call (decode,
  embed, write) vs second (cache hit), seconds and speed-up;
- peak resident memory (``ru_maxrss``) after each phase.

Times are medians over repeats; the machine's load average is printed beside
them, since a shared machine slows everything.
"""

from __future__ import annotations

import os

THREADS_DEFAULT = 2
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS_DEFAULT))

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Table(list):
    """The result rows; each notes the peak resident memory when it is added."""

    def add(self, what: str, value: float, unit: str, note: str = "") -> None:
        self.append({"what": what, "value": round(value, 3), "unit": unit, "max_rss_mib": round(max_rss_mib(), 1),
                     "note": note})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=os.environ.get("FACEPROBE_DATA"))
    p.add_argument("--n", type=int, default=64, help="LFW images for the caching benchmark")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=THREADS_DEFAULT)
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--width", type=float, default=1.0, help="decoder channel multiplier (default 1)")
    p.add_argument("--steps", type=int, default=3, help="repeats per measurement")
    p.add_argument("--out", help="write the table as JSON here")
    return p


def time_decoder(rows: Table, decoder, backbone, templates: torch.Tensor, targets: torch.Tensor, steps: int) -> None:
    """Inference, then one training step under three loss configurations, in images/s."""
    from decoders.dfd.losses import LossConfig, ReconstructionLoss

    b = len(templates)
    decoder.eval()
    with torch.no_grad():
        decoder(templates)  # warm-up
        t = timed(lambda: decoder(templates), steps)
    rows.add("decoder inference", b / t, "img/s", f"batch {b}, eval, no grad")

    decoder.train()
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-4)
    configs = {
        "train step: pixel + gradient (+ local)": LossConfig(perceptual=0, identity=0),
        "train step: + LPIPS-alex": LossConfig(identity=0),
        "train step: default losses (+ identity via dlib)": LossConfig(),
    }
    for name, cfg in configs.items():
        loss = ReconstructionLoss(cfg, backbone if cfg.needs_backbone else None)

        def step(loss=loss):
            total, _ = loss(decoder(templates), targets, templates)
            opt.zero_grad()
            total.backward()
            opt.step()

        step()  # warm-up
        t = timed(step, steps)
        rows.add(name, b / t, "img/s", f"batch {b}, forward + backward + Adam")


def time_template_cache(rows: Table, backbone, data_root: str, n: int, image_size: int) -> None:
    """Templates and target chips of ``n`` LFW images: first call (decode, embed, write) vs a cache hit."""
    from decoders.dfd.templates import compute_targets
    from probes.datasets import load_lfw_people

    lfw = load_lfw_people(data_root, max_images=n, seed=0)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        first = compute_targets(backbone, lfw, image_size, cache_dir=cache, progress=False)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = compute_targets(backbone, lfw, image_size, cache_dir=cache, progress=False)
        t_second = time.perf_counter() - t0
        assert second.cache_hits == (True, True) and np.array_equal(first.templates, second.templates)
        size = sum(f.stat().st_size for f in Path(cache).iterdir()) / 2 ** 20
    rows.add(f"targets for {len(lfw)} LFW images, first call", t_first, "s",
             f"{len(lfw) / t_first:.1f} img/s: decode + embed + write")
    rows.add(f"targets for {len(lfw)} LFW images, cached", t_second, "s", f"cache {size:.1f} MiB on disk")
    rows.add("template cache speed-up", t_first / max(t_second, 1e-9), "x")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)

    from decoders.dfd.model import DecoderConfig, FaceDecoder
    from probes.backbones import create_backbone

    rows = Table()
    try:
        backbone = create_backbone("dlib-resnet29")
        weights = "pretrained"
    except Exception as exc:  # noqa: BLE001 - weights not fetched: same cost with random weights
        backbone = create_backbone("dlib-resnet29", pretrained=False)
        weights = f"random-init ({type(exc).__name__})"
    backbone.requires_grad_(False)
    b, s = args.batch_size, args.image_size
    torch.manual_seed(0)
    decoder = FaceDecoder(DecoderConfig(embedding_size=128, image_size=s, width=args.width))
    templates = torch.randn(b, 128)
    targets = torch.rand(b, 3, s, s)
    rows.add("decoder parameters", decoder.num_parameters() / 1e6, "M")
    time_decoder(rows, decoder, backbone, templates, targets, args.steps)

    if args.data_root:
        time_template_cache(rows, backbone, args.data_root, args.n, s)
    else:
        print("no --data-root / FACEPROBE_DATA: caching benchmark skipped", file=sys.stderr)

    load = os.getloadavg()
    header = (f"decoder_speed: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
              f"{torch.__version__}, {args.threads} threads, backbone {weights}, image {s}x{s}, width {args.width:g}, "
              f"load average {load[0]:.1f}")
    print(header)
    width = max(len(r["what"]) for r in rows)
    print(f"{'what':<{width}}  {'value':>10}  {'unit':<6} {'peak RSS MiB':>12}  note")
    for r in rows:
        print(f"{r['what']:<{width}}  {r['value']:>10.3f}  {r['unit']:<6} {r['max_rss_mib']:>12.1f}  {r['note']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"header": header, "command": sys.argv, "rows": rows}, indent=1))
    return 0

if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sys.exit(main())
