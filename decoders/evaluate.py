"""A trained decoder as a template-inversion attack: ``python -m decoders.evaluate``.

On the run's **held-out** identities (the test part of its ``split.json``),
each test image's template (backbone A) is decoded; the reconstruction, saved
as uint8 like a PNG, is fed back to A as a ``chip``. Reported:

- **SAR** (success attack rate) at each ``--fmr``: the fraction of attack
  comparisons whose score reaches the backbone's threshold at that false match
  rate, with a 95% Wilson interval. **Type-I**: reconstruction vs the template
  of its own source image. **Type-II**: reconstruction vs *other* images of
  the same person (by default every other LFW image of that held-out person,
  at most ``--type2-max-refs`` per reconstruction, seeded; the rate is over
  all such pairs). People with one image only add no type-II pair.
- **Thresholds** from LFW's ``pairs.txt`` (all 6000 pairs) for the backbone,
  with the score its verification rule uses (cosine, or -L2 for dlib). The
  impostor set per FMR (``--impostors auto``): the 3000 mismatched pairs when
  they can resolve the FMR (``n * fmr >= 1``, :func:`probes.verification.threshold_at_fmr`
  raises otherwise), else the **cross-identity set**: every pair of distinct
  images among the pairs' 7701 images whose LFW names differ (about 29.6 M
  scores), built here because 0.01% needs at least 10,000 impostors. Both
  thresholds are reported where computable, with the number of impostor
  scores each rests on and the genuine (matched-pair) acceptance rate.
- Mean identity cosine (type-I, type-II), LPIPS (AlexNet, ``probes.perceptual``)
  and SSIM (``skimage.metrics.structural_similarity``, RGB, data range 1)
  between each reconstruction and its target chip.
- **Control**: each reconstruction against the templates of every *other*
  held-out person, at the same thresholds -- how often it passes as someone
  else (about the FMR for real faces; far more for a decoder that draws one
  average face that a distance-rule net accepts for many people).
- With ``--backbone-b``: **transfer** SAR -- reconstructions from A's templates
  verified by B at B's own LFW threshold. B cannot take A's chip as its own
  crop, so each reconstruction is put back where A's crop lies in the source
  frame, on black (no source pixel leaks in), and B crops that frame with its
  own crop for the layout. The **ceiling** row applies the same framing to
  A's real target chips: what a perfect reconstruction could reach.

``--out`` receives ``results.json`` (everything, with the exact
configuration, checkpoint config and step, thresholds and counts),
``results.csv`` (one row per figure), ``per_image.csv``, ``gallery.png`` and
``gallery.html`` (``--gallery-size`` test reconstructions with their type-I/II
scores). Templates and chips come through
:func:`decoders.dfd.templates.compute_targets` and are cached.

**Leaked templates** (``--templates FILE.npy --identities FILE.csv``): the attack as it happens, where
only templates leak. The CSV has one row per template, in order, with the columns ``identity`` and
``enrolment`` (that person's enrolment images, ``;``-separated, relative to the CSV's folder or
absolute; ``--layout`` says how they are framed). Each template is decoded and its reconstruction
scored: **type-I** against the leaked template itself, **type-II** against the enrolment images of its
identity (none listed: type-I only), at the same thresholds (LFW pairs with the leak's identities left
out), with the control (other identities' templates) and the mean-face row; no LPIPS/SSIM (there is no
source image), no transfer.

**A folder of uncropped photos** (``--images DIR``): one sub-folder per person (its name is the
identity). Each photo's largest face is detected and aligned (``probes.align.detect_and_align``); type-I
against the photo's own template, type-II against the person's other photos (people with one photo:
type-I only); thresholds at each ``--fmr`` from the folder's own cross-identity impostor pairs (every
pair of its photos of different people; refused when too few for the FMR), with the control, the
mean-face row, LPIPS and SSIM against the aligned face. Photos without a face are named in a note and
in ``results.json``; a person with no face at all is an error.

``--checkpoint`` also takes a shipped decoder's name (``dfd-dlib-resnet29``): it is then evaluated
on its run's held-out people (the split file shipped beside its weights, images under ``--data-root``).

    python -m decoders.evaluate --checkpoint runs/dfd --data-root /data --out runs/dfd/eval
    python -m decoders.evaluate --checkpoint dfd-dlib-resnet29 --images people/ --out runs/people-eval
    python -m decoders.evaluate --checkpoint dfd-dlib-resnet29 --templates leak.npy --identities leak.csv \
        --layout lfw --out runs/leak-eval
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from probes import cli
from probes.datasets import LAYOUTS
from probes.verification import IMPOSTOR_SETS

from .dfd.attack import DEFAULT_FMRS, TYPE2_SOURCES, AttackEvaluation, AttackEvaluationConfig
from .dfd.attack_result import format_table
from .dfd.settings import run_and_save

log = logging.getLogger(__name__)

COMMAND = "decoders.evaluate"


def build_parser():
    p = cli.make_parser(f"python -m {COMMAND}", __doc__)
    p.add_argument("--checkpoint", required=True,
                   help="shipped decoder name, run folder, or a checkpoint inside a run folder (split.json is needed)")
    cli.add_data_root(p)
    cli.add_out(p)
    cli.add_backbone(p, default=None, help="refuse a checkpoint not trained against this backbone (default: "
                                           "the checkpoint's own)")
    p.add_argument("--backbone-b", help="second backbone for the transfer SAR (default: none, no transfer SAR)")
    p.add_argument("--weights-b", help="weights file of --backbone-b (default: its own)")
    p.add_argument("--fmr", type=float, nargs="+", default=list(DEFAULT_FMRS), help="false match rates")
    p.add_argument("--impostors", choices=IMPOSTOR_SETS, default="auto",
                   help="impostor set for thresholds: mismatched pairs, all cross-identity pairs, or auto "
                        "(pairs when they resolve the FMR, else cross)")
    p.add_argument("--max-pairs", type=int,
                   help="seeded subset of LFW pairs for the thresholds (quick runs; default all)")
    cli.add_max_images(p, what="held-out images")
    p.add_argument("--split", default="test", choices=("test", "val"))
    p.add_argument("--type2-references", default="lfw", choices=TYPE2_SOURCES,
                   help="other images of a person: all of LFW's, or only the split's")
    p.add_argument("--type2-max-refs", type=int, default=10, help="per reconstruction (0 = all)")
    p.add_argument("--images", help="folder of uncropped photos, one sub-folder per person (instead of the run's "
                                    "held-out images; default: the run's held-out images)")
    p.add_argument("--templates", help="leaked templates: .npy file of N x d templates (needs --identities; "
                                       "default: none, reconstruct from images)")
    p.add_argument("--identities", help="CSV, one row per template: identity, enrolment (image paths, ';'-separated; "
                                        "default: none)")
    p.add_argument("--layout", default="chip", choices=LAYOUTS,
                   help="with --templates: how the enrolment images are framed (chip = already the backbone's crop)")
    p.add_argument("--gallery-size", type=int, default=24, help="held-out reconstructions shown in the gallery")
    cli.add_seed(p)
    cli.add_cache_dir(p, "templates and target chips")
    cli.add_runtime(p, batch_size=64)
    return p


def evaluate(args, command: list[str]) -> None:
    config = AttackEvaluationConfig(
        checkpoint=args.checkpoint, data_root=args.data_root, backbone=args.backbone, weights=args.weights,
        backbone_b=args.backbone_b, weights_b=args.weights_b, fmrs=tuple(args.fmr), impostors=args.impostors,
        max_pairs=args.max_pairs, max_images=args.max_images, split=args.split,
        type2_references=args.type2_references, type2_max_refs=args.type2_max_refs, templates=args.templates,
        identities=args.identities, images=args.images, layout=args.layout, gallery_size=args.gallery_size,
        seed=args.seed, cache_dir=args.cache_dir, batch_size=args.batch_size, device=args.device,
        progress=not args.no_progress)
    result = run_and_save(AttackEvaluation(config), args, command, fmrs="--fmr")
    for note in result.notes:
        log.warning("note: %s", note)
    out = Path(args.out).absolute()
    log.info(format_table(result.results))
    log.info(f"results: {out / 'results.json'}, gallery: {out / 'gallery.html'}")


def main(argv: Sequence[str] | None = None) -> int:
    command = cli.module_command(COMMAND, argv)
    return cli.run_command(build_parser(), lambda args: evaluate(args, command), argv)


if __name__ == "__main__":
    sys.exit(main())
