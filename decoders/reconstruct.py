"""Draw faces from templates with a trained decoder: ``python -m decoders.reconstruct``.

Inputs are one of: a folder of images (``--images DIR``, with ``--layout``
saying how they are framed; ``--layout photo``: uncropped photos, each face
detected and aligned through ``probes.align``, photos without a face named),
a data set of the run (``--dataset lfw|utkface`` with ``--split test|val``
from the run's ``split.json``, or ``all``), or raw templates
(``--templates file.npy``, N x d float). Images are embedded by the
checkpoint's own backbone (templates and target chips come through
:func:`decoders.dfd.templates.compute_targets`, so they are cached).

``--out`` receives ``reconstructions/<source name>.png`` (one per input,
uint8 RGB at the decoder's size), ``scores.csv``, ``gallery.png``,
``gallery.html`` (self-contained: images embedded as base64) and
``reconstruct.json`` (configuration and mean scores). Scores per input:
identity cosine and L2 distance between the source template and the
template of the reconstruction (the PNG as saved, fed to the backbone as a
``chip``), and LPIPS (AlexNet) between the reconstruction and the target chip
(the backbone's crop of the source image) -- no original, no LPIPS.

An existing non-empty ``--out`` is refused unless ``--overwrite``; results are
written into a temporary folder beside it and moved into place only when
complete, so a refusal or a failure midway loses nothing.

    python -m decoders.reconstruct --checkpoint runs/dfd --dataset lfw --split test --out recon/
    python -m decoders.reconstruct --checkpoint runs/dfd/checkpoints/latest.pt --templates t.npy --out recon/
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from probes import cli

from .dfd.reconstruction import IMAGE_LAYOUTS, Reconstruction, ReconstructionConfig
from .dfd.settings import run_and_save

log = logging.getLogger(__name__)

COMMAND = "decoders.reconstruct"


def build_parser():
    p = cli.make_parser(f"python -m {COMMAND}", __doc__)
    p.add_argument("--checkpoint", required=True, help="run folder (its checkpoints/latest.pt) or a .pt file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of images (recursive)")
    src.add_argument("--dataset", choices=("lfw", "utkface"), help="a data set of the run (see --split)")
    src.add_argument("--templates", help=".npy file of N x d templates")
    p.add_argument("--split", default="test", choices=("test", "val", "all"),
                   help="with --dataset: the run's held-out test/val images (split.json), or all images")
    p.add_argument("--layout", default="chip", choices=IMAGE_LAYOUTS,
                   help="with --images: how the images are framed (chip = already the backbone's crop; photo = "
                        "uncropped photos: each face detected and aligned)")
    cli.add_out(p)
    p.add_argument("--max-images", type=int, help="reconstruct only the first N inputs (default all)")
    cli.add_backbone(p, default=None, help="refuse a checkpoint that was not trained against this backbone "
                                           "(default: the checkpoint's own)")
    cli.add_data_root(p)
    cli.add_cache_dir(p, "templates and target chips")
    p.add_argument("--gallery-size", type=int, default=48, help="inputs shown in the gallery")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    cli.add_runtime(p, batch_size=64)
    return p


def reconstruct(args, command: list[str]) -> None:
    config = ReconstructionConfig(
        checkpoint=args.checkpoint, images=args.images, dataset=args.dataset, split=args.split,
        templates=args.templates, layout=args.layout, max_images=args.max_images, backbone=args.backbone,
        weights=args.weights, data_root=args.data_root, cache_dir=args.cache_dir,
        lpips=not args.no_lpips, gallery_size=args.gallery_size, batch_size=args.batch_size, device=args.device,
        progress=not args.no_progress)
    result = run_and_save(Reconstruction(config), args, command)
    missing = result.summary["inputs"].get("photos_without_face")
    if missing:
        log.warning(f"no face detected in {len(missing)} photo(s), left out: {', '.join(missing[:10])}"
                    + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    out = Path(args.out).absolute()
    m = result.means
    lp = "n/a" if m["lpips"] is None else f"{m['lpips']:.4f}"
    log.info(f"{len(result.names)} reconstructions in {out} ({result.summary['seconds']} s); mean identity cosine "
             f"{m['identity_cosine']:.4f}, mean L2 {m['l2']:.4f}, mean LPIPS {lp}; gallery: {out / 'gallery.html'}")


def main(argv: Sequence[str] | None = None) -> int:
    command = cli.module_command(COMMAND, argv)
    return cli.run_command(build_parser(), lambda args: reconstruct(args, command), argv)


if __name__ == "__main__":
    sys.exit(main())
