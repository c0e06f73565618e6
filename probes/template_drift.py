"""Template drift under image perturbations (the perturbation analysis of Križaj et al., EAAI 2024).

Every image is first turned into the backbone's own view of it
(:func:`backbone_view`): the crop for its layout, square padding and resize to
the network's input size, as RGB in [0, 1]. Perturbations act on that view, so
their strengths are in the units the network sees, and the reference template
is the template of the unperturbed view (strength 0 gives cosine 1 exactly).

Families (:data:`FAMILIES`; ``describe_families()`` lists them):

- ``rotation``: degrees about the view's centre, direction (+/-) drawn per image;
- ``translation``: pixels of the network input, direction drawn per image;
- ``scaling``: zoom factor about the centre (1 = none, < 1 shrinks the face);
- ``occlusion``: a square patch whose side is a fraction of the input side,
  centred on a face point (``eyes`` = one patch per eye, ``left_eye``,
  ``right_eye``, ``nose``, ``mouth``, ``centre``, ``random`` = drawn per image);
  points come from the backbone's ``align_template``;
- ``noise``: random +/-eps per pixel (the L-inf budget spent at random; the
  baseline for the attacks);
- ``fgsm``, ``pgd``: untargeted white-box attacks on the backbone that push
  the template away from the clean one within an L-inf ball of radius eps
  ([0, 1] pixel units); see :func:`fgsm` and :func:`pgd` for their objectives.

Per-image random choices come from ``seed`` and the family name only, so a
family gives the same images whatever else is measured.

>>> drift = TemplateDrift(backbone, threshold=-0.6)          # dlib: score = -L2
>>> table = drift.measure(images, "rotation", [0, 10, 20], layout="lfw")
>>> fig = plot_drift(table)
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .backbones.registry import FaceBackbone
from .datasets import FaceDataset
from .errors import FaceprobeError, ImageError, UnknownNameError
from .geometry import images_to_tensor
from .images import load_image
from .nn import evaluating


class PerturbationError(FaceprobeError, ValueError):
    """Perturbation arguments that cannot be used, or templates that are not finite."""


# --------------------------------------------------------------------------- families


@dataclass(frozen=True)
class Family:
    """One kind of perturbation: its unit, valid strengths and the strength that changes nothing."""

    name: str
    unit: str
    default_strengths: tuple[float, ...]
    low: float
    high: float
    identity: float
    adversarial: bool
    description: str

    def check(self, strengths, input_side: int | None = None) -> list[float]:
        """``strengths`` (default: :attr:`default_strengths`) as floats, or a clear error."""
        if strengths is None:
            return [float(s) for s in self.default_strengths]
        if isinstance(strengths, (int, float, np.number)):
            strengths = [strengths]
        try:
            values = [float(s) for s in strengths]
        except (TypeError, ValueError):
            raise PerturbationError(f"{self.name} strengths must be numbers ({self.unit}), got {strengths!r}") from None
        if not values:
            raise PerturbationError(f"no strengths given for {self.name}; e.g. {_fmt(self.default_strengths)}")
        high = self.high if input_side is None or self.name != "translation" else min(self.high, input_side)
        bad = [v for v in values if not (math.isfinite(v) and self.low <= v <= high)]
        if self.name == "scaling":
            bad += [v for v in values if v == 0 and v not in bad]
        if bad:
            low = f"{self.low:g}" if self.name != "scaling" else f"{self.low:g} (exclusive)"
            raise PerturbationError(
                f"invalid {self.name} strength(s) {_fmt(bad)}: valid strengths lie in [{low}, {high:g}] "
                f"({self.unit}); defaults: {_fmt(self.default_strengths)}")
        return values


def _fmt(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


_EPS = (0.0, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064)
FAMILIES: Mapping[str, Family] = {f.name: f for f in (
    Family("rotation", "degrees", (0, 5, 10, 20, 30, 45), 0, 180, 0, False,
           "in-plane rotation about the centre of the view; direction drawn per image"),
    Family("translation", "pixels of the network input", (0, 5, 10, 15, 20, 30), 0, 10_000, 0, False,
           "shift of the view; direction drawn per image"),
    Family("scaling", "zoom factor", (0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5), 0, 10, 1, False,
           "zoom about the centre of the view (1 = unchanged, < 1 shrinks the face)"),
    Family("occlusion", "fraction of the input side", (0, 0.1, 0.2, 0.3, 0.4), 0, 1, 0, False,
           "square patch(es) of this side centred on a face point (see positions)"),
    Family("noise", "L-inf eps, [0, 1] pixel units", _EPS, 0, 1, 0, False,
           "random +/-eps on every pixel (clipped to [0, 1]): the attacks' random baseline"),
    Family("fgsm", "L-inf eps, [0, 1] pixel units", _EPS, 0, 1, 0, True,
           "one signed-gradient step pushing the template away from the clean one"),
    Family("pgd", "L-inf eps, [0, 1] pixel units", _EPS, 0, 1, 0, True,
           "signed-gradient ascent of the drift from a random start; best of its iterates and the FGSM point"),
)}
OCCLUSION_POSITIONS = ("eyes", "left_eye", "right_eye", "nose", "mouth", "centre", "random")
DEFAULT_POSITIONS = ("eyes", "nose", "mouth", "random")
PADDINGS = ("zeros", "border", "reflection")
PGD_STARTS = ("fgsm", "random")
# Face points as fractions of the input (x, y) when a backbone defines no align_template.
_FALLBACK_POINTS = {"left_eye": (0.33, 0.33), "right_eye": (0.67, 0.33), "nose": (0.5, 0.52), "mouth": (0.5, 0.68)}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise UnknownNameError(f"unknown perturbation family {name!r}; valid families: "
                               f"{', '.join(FAMILIES)}") from None


def describe_families() -> str:
    """One line per family: name, unit, default strengths, what it does."""
    return "\n".join(f"{f.name:<12} {f.unit:<32} defaults {_fmt(f.default_strengths):<36} {f.description}"
                     for f in FAMILIES.values())


def check_positions(positions) -> list[str]:
    """Occlusion positions (default :data:`DEFAULT_POSITIONS`), or an error listing valid ones."""
    if positions is None:
        return list(DEFAULT_POSITIONS)
    if isinstance(positions, str):
        positions = [positions]
    positions = list(dict.fromkeys(positions))
    bad = [p for p in positions if p not in OCCLUSION_POSITIONS]
    if bad or not positions:
        raise UnknownNameError(f"unknown occlusion position(s) {', '.join(map(repr, bad)) or '(none given)'}; "
                               f"valid positions: {', '.join(OCCLUSION_POSITIONS)}")
    return positions


def face_points(backbone: FaceBackbone) -> dict[str, tuple[float, float]]:
    """Eye, nose and mouth centres (x, y) in pixels of the network input.

    From the backbone's ``align_template`` (left eye, right eye, nose tip,
    mouth corners) where it has one, else typical positions in an aligned chip.
    """
    h, w = backbone.spec.input_size
    t = backbone.spec.align_template
    if t is not None and len(t) >= 5:
        pts = {"left_eye": t[0], "right_eye": t[1], "nose": t[2],
               "mouth": ((t[3][0] + t[4][0]) / 2, (t[3][1] + t[4][1]) / 2)}
        return {k: (float(x), float(y)) for k, (x, y) in pts.items()}
    return {k: (fx * w, fy * h) for k, (fx, fy) in _FALLBACK_POINTS.items()}


# --------------------------------------------------------------------------- the backbone's view


def _image_batches(images, batch_size: int):
    """Yield [0, 1] float tensors (N x 3 x H x W) from uint8 arrays, lists of them, tensors or a FaceDataset."""
    if isinstance(images, FaceDataset):

        for p in images.paths:
            yield images_to_tensor(load_image(p))
        return
    if isinstance(images, torch.Tensor) or (isinstance(images, np.ndarray) and images.ndim in (3, 4)):
        x = images_to_tensor(images)
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size]
        return
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        for image in images:  # sizes may differ: one at a time
            yield images_to_tensor(image)
        return
    raise ImageError(f"images must be a uint8 N x H x W x 3 array, a list of H x W x 3 arrays, an "
                     f"N x 3 x H x W [0, 1] tensor or a FaceDataset, got {type(images).__name__}")


@torch.no_grad()
def backbone_view(backbone: FaceBackbone, images, layout: str = "chip", batch_size: int = 32) -> torch.Tensor:
    """What the backbone reads of ``images``: its crop for ``layout``, padding and resize, as RGB [0, 1].

    Returns N x 3 x H x W at the network's input size; feeding it back with
    layout ``"chip"`` gives the images' templates. Images whose face region is
    under half the input size raise :class:`ImageError` (as ``embed`` does).
    """
    device = backbone._mean.device
    out = []
    for x in _image_batches(images, batch_size):
        if not torch.isfinite(x).all():
            raise ImageError("images contain NaN or infinite values")
        backbone.check_size(tuple(x.shape[-2:]), layout)
        out.append(backbone.to_rgb(backbone.preprocess(x.to(device), layout)).cpu())
    if not out:
        raise ImageError("no images given")
    return torch.cat(out)


# --------------------------------------------------------------------------- geometric and occlusion


def _as_batch_values(values, n: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise PerturbationError(f"{name}: need one value or one per image ({n}), got {t.numel()}")
    return t


def affine(images: torch.Tensor, matrix: torch.Tensor, shift: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Resample N x 3 x H x W images: output pixel p (pixels, from the centre) reads source ``matrix @ p + shift``."""
    if padding not in PADDINGS:
        raise PerturbationError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    n, _, h, w = images.shape
    # align_corners=False: normalised u = 2 p / size with p measured from the image centre.
    d = torch.tensor([2.0 / w, 2.0 / h], dtype=images.dtype, device=images.device)
    a = matrix.to(images) * d.view(1, 2, 1) / d.view(1, 1, 2)
    theta = torch.cat([a, (shift.to(images) * d).unsqueeze(-1)], dim=2)
    grid = F.affine_grid(theta, (n, 3, h, w), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False).clamp_(0, 1)


def rotate(images: torch.Tensor, degrees, padding: str = "zeros") -> torch.Tensor:
    """Rotate each image about its centre by ``degrees`` (one value or one per image)."""
    angle = _as_batch_values(degrees, len(images), "degrees")
    if not angle.any():
        return images.clone()
    r = torch.deg2rad(angle)
    c, s = torch.cos(r), torch.sin(r)
    matrix = torch.stack([torch.stack([c, s], 1), torch.stack([-s, c], 1)], 1)
    return affine(images, matrix, torch.zeros(len(images), 2), padding)


def translate(images: torch.Tensor, dx, dy, padding: str = "zeros") -> torch.Tensor:
    """Move each image's content by (``dx``, ``dy``) pixels (right, down)."""
    n = len(images)
    shift = torch.stack([_as_batch_values(dx, n, "dx"), _as_batch_values(dy, n, "dy")], 1)
    if not shift.any():
        return images.clone()
    return affine(images, torch.eye(2).expand(n, 2, 2), -shift, padding)


def zoom(images: torch.Tensor, factor, padding: str = "zeros") -> torch.Tensor:
    """Enlarge (``factor`` > 1) or shrink (< 1) each image's content about its centre."""
    f = _as_batch_values(factor, len(images), "factor")
    if (f <= 0).any():
        raise PerturbationError(f"zoom factors must be positive, got {f.min().item():g}")
    if (f == 1).all():
        return images.clone()
    return affine(images, torch.eye(2) / f.view(-1, 1, 1), torch.zeros(len(images), 2), padding)


def occlude(images: torch.Tensor, centres, side: float, fill: float = 0.0) -> torch.Tensor:
    """Paint square patches of ``side`` pixels with ``fill``; ``centres`` is N x K x 2 (x, y) pixels."""
    out = images.clone()
    c = torch.as_tensor(centres, dtype=torch.float32)
    if c.ndim == 2:
        c = c.unsqueeze(1)
    if c.shape[0] != len(images) or c.shape[-1] != 2:
        raise PerturbationError(f"centres must be N x K x 2 with N = {len(images)}, got {tuple(c.shape)}")
    side = round(side)
    if side <= 0:
        return out
    h, w = images.shape[-2:]
    for i in range(len(images)):
        for x, y in c[i].tolist():
            x0, y0 = round(x - side / 2), round(y - side / 2)
            out[i, :, max(0, y0):min(h, y0 + side), max(0, x0):min(w, x0 + side)] = fill
    return out


def sign_noise(images: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add +/-``eps`` (random sign) to every pixel, clipped to [0, 1]: L-inf distance at most ``eps``."""
    if eps == 0:
        return images.clone()
    signs = torch.randint(0, 2, images.shape, generator=generator).to(images) * 2 - 1
    return (images + eps * signs).clamp_(0, 1)


# --------------------------------------------------------------------------- attacks


def _metric_of(backbone: FaceBackbone, metric: str | None) -> str:
    metric = metric or backbone.spec.verification_metric
    if metric not in ("cosine", "euclidean"):
        raise PerturbationError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    return metric


def _drift(emb: torch.Tensor, ref: torch.Tensor, metric: str) -> torch.Tensor:
    """Per-image template drift to maximise: squared L2 distance, or 1 - cosine."""
    if metric == "euclidean":
        return (emb - ref).pow(2).sum(1)
    return 1 - F.cosine_similarity(emb, ref, dim=1, eps=1e-12)


@torch.no_grad()
def _templates(backbone: FaceBackbone, x: torch.Tensor, layout: str, batch_size: int = 32) -> torch.Tensor:
    device = backbone._mean.device
    with evaluating(backbone):
        return torch.cat([backbone(x[i:i + batch_size].to(device), layout).float().cpu()
                          for i in range(0, len(x), batch_size)])


def _input_gradient(backbone: FaceBackbone, x: torch.Tensor, ref: torch.Tensor, layout: str,
                    objective) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of ``objective(emb, ref)`` summed over images w.r.t. ``x``, per-image objective)."""
    device = backbone._mean.device
    x = x.detach().to(device).requires_grad_(True)
    with torch.enable_grad(), evaluating(backbone):
        value = objective(backbone(x, layout).float(), ref.to(device))
        (grad,) = torch.autograd.grad(value.sum(), x)
    return grad.cpu(), value.detach().cpu()


def _check_attack_args(images, eps: float) -> torch.Tensor:
    x = images_to_tensor(images)
    if x.dtype not in (torch.float16, torch.float32, torch.float64) or not torch.isfinite(x).all():
        raise ImageError("attack images must be a finite float tensor in [0, 1]")
    if not (isinstance(eps, (int, float, np.number)) and math.isfinite(eps) and 0 <= eps <= 1):
        raise PerturbationError(f"eps must be a number in [0, 1] ([0, 1] pixel units, L-inf), got {eps!r}")
    return x.detach().float().cpu()


def fgsm(backbone: FaceBackbone, images, eps: float, layout: str = "chip", reference: torch.Tensor | None = None,
         batch_size: int = 32) -> torch.Tensor:
    """Untargeted FGSM in L-inf: ``x + eps * sign(grad)``, clipped to [0, 1].

    The drift from the clean template (L2 or cosine) has zero gradient at the
    clean image itself (the template is its own best match), so the step
    ascends its first-order surrogate: minus the projection of the template
    onto the clean one, ``-<f(x'), f(x)> / |f(x)|^2``. ``reference``: the clean
    templates (computed from ``images`` when None).
    """
    x = _check_attack_args(images, eps)
    if eps == 0:
        return x.clone()
    ref = _templates(backbone, x, layout, batch_size) if reference is None else reference.float().cpu()

    def surrogate(emb, r):
        return -(emb * r).sum(1) / r.pow(2).sum(1).clamp_min(1e-12)

    out = []
    for i in range(0, len(x), batch_size):
        grad, _ = _input_gradient(backbone, x[i:i + batch_size], ref[i:i + batch_size], layout, surrogate)
        out.append((x[i:i + batch_size] + eps * grad.sign()).clamp_(0, 1))
    return torch.cat(out)


def pgd(backbone: FaceBackbone, images, eps: float, steps: int = 10, step_size: float | None = None,
        layout: str = "chip", metric: str | None = None, start: str = "random",
        generator: torch.Generator | None = None, reference: torch.Tensor | None = None,
        batch_size: int = 32) -> torch.Tensor:
    """Untargeted L-inf PGD maximising the template drift from the clean template.

    Drift: squared L2 distance for ``euclidean`` backbones, 1 - cosine otherwise
    (``metric`` overrides). The drift has zero gradient at the clean image, so
    the ascent starts at a uniform random point of the eps ball (``"random"``,
    drawn from ``generator``) or at the :func:`fgsm` point (``"fgsm"``). It
    takes ``steps`` signed-gradient steps of ``step_size`` (default
    ``2.5 eps / steps``), projecting onto the ball and [0, 1] after each, and
    returns each image's point of largest drift among its iterates and the
    FGSM point (so PGD never does worse than FGSM). Results lie within ``eps``
    of ``images``.
    """
    x = _check_attack_args(images, eps)
    if start not in PGD_STARTS:
        raise PerturbationError(f"PGD start must be one of {', '.join(PGD_STARTS)}, got {start!r}")
    uniform = torch.rand(x.shape, generator=generator) if start == "random" else None
    return _pgd(backbone, x, eps, steps, step_size, _metric_of(backbone, metric), uniform, reference, layout,
                batch_size)


def _pgd(backbone: FaceBackbone, x: torch.Tensor, eps: float, steps: int, step_size: float | None, metric: str,
         uniform: torch.Tensor | None, reference: torch.Tensor | None, layout: str = "chip",
         batch_size: int = 32) -> torch.Tensor:
    """:func:`pgd` with its random start given as ``uniform`` ([0, 1) noise like ``x``; None = start at FGSM)."""
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise PerturbationError(f"PGD steps must be a positive integer, got {steps!r}")
    if eps == 0:
        return x.clone()
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    if not (math.isfinite(alpha) and alpha > 0):
        raise PerturbationError(f"PGD step size must be positive, got {step_size!r}")
    ref = _templates(backbone, x, layout, batch_size) if reference is None else reference.float().cpu()

    def objective(emb, r):
        return _drift(emb, r, metric)

    out = []
    for i in range(0, len(x), batch_size):
        clean, r = x[i:i + batch_size], ref[i:i + batch_size]
        best = fgsm(backbone, clean, eps, layout, r, batch_size)
        best_drift = _drift(_templates(backbone, best, layout, batch_size), r, metric)
        adv = best.clone() if uniform is None else (clean + eps * (uniform[i:i + batch_size] * 2 - 1)).clamp_(0, 1)
        for step in range(steps + 1):
            if step < steps:
                grad, value = _input_gradient(backbone, adv, r, layout, objective)
            else:
                value = _drift(_templates(backbone, adv, layout, batch_size), r, metric)
            better = value > best_drift  # drift of the current iterate, before it steps
            best[better], best_drift[better] = adv[better], value[better]
            if step < steps:
                adv = torch.min(torch.max(adv + alpha * grad.sign(), clean - eps), clean + eps).clamp_(0, 1)
        out.append(best)
    return torch.cat(out)


# --------------------------------------------------------------------------- measurement


def _family_rng(seed: int, family: str) -> np.random.Generator:
    # crc32 of the name: stable across runs and independent of which other families are measured.
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(family.encode())])


@dataclass
class DriftResult:
    """What :meth:`TemplateDrift.run` measured.

    ``table``: one row per (image, variant, strength); ``templates``: the
    perturbed templates in the table's row order; ``clean``: the templates of
    the unperturbed views; ``views``: the unperturbed views (uint8) and
    ``perturbed``: row -> perturbed view (uint8), both for the first
    ``keep_images`` images only.
    """

    table: pd.DataFrame
    templates: np.ndarray
    clean: np.ndarray
    views: np.ndarray
    perturbed: dict[int, np.ndarray] = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round_().byte().permute(0, 2, 3, 1).numpy()


class TemplateDrift:
    """How far perturbations move a backbone's templates, and whether they still verify.

    ``TemplateDrift(backbone, threshold).measure(images, family, strengths, layout)``
    returns a tidy DataFrame: one row per image, variant (occlusion position)
    and strength, with the cosine and L2 distance between the perturbed and
    the clean template, the backbone's verification ``score`` (cosine, or
    -L2 for ``euclidean`` backbones), ``verified`` (score >= ``threshold``;
    missing without a threshold) and the L-inf size of the perturbation.

    ``threshold`` is in score units: a cosine, or minus a distance for
    ``euclidean`` backbones (dlib: -0.6). ``padding`` fills what geometric
    transforms bring in from outside the view; ``fill`` is the occluder's grey
    level in [0, 1].
    """

    def __init__(self, backbone: FaceBackbone, threshold: float | None = None, *, padding: str = "zeros",
                 fill: float = 0.0, pgd_steps: int = 10, pgd_step_size: float | None = None, seed: int = 0,
                 batch_size: int = 32, progress: bool = False):
        self.backbone = backbone
        self.metric = _metric_of(backbone, None)
        if threshold is not None:
            if not (isinstance(threshold, (int, float, np.number)) and math.isfinite(threshold)):
                raise PerturbationError(f"threshold must be a finite number, got {threshold!r}")
            if self.metric == "euclidean" and threshold > 0:
                raise PerturbationError(
                    f"threshold {threshold:g} is impossible for {backbone.name!r}: its verification score is minus "
                    f"the L2 distance (higher = same person), so pass e.g. -0.6 for 'distance < 0.6'")
            threshold = float(threshold)
        if padding not in PADDINGS:
            raise PerturbationError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        if not (isinstance(fill, (int, float, np.number)) and 0 <= fill <= 1):
            raise PerturbationError(f"occlusion fill must be a grey level in [0, 1], got {fill!r}")
        if not (isinstance(pgd_steps, (int, np.integer)) and pgd_steps >= 1):
            raise PerturbationError(f"pgd_steps must be a positive integer, got {pgd_steps!r}")
        if pgd_step_size is not None and not (isinstance(pgd_step_size, (int, float, np.number))
                                              and math.isfinite(pgd_step_size) and pgd_step_size > 0):
            raise PerturbationError(f"pgd_step_size must be a positive number, got {pgd_step_size!r}")
        if batch_size <= 0:
            raise PerturbationError(f"batch_size must be positive, got {batch_size}")
        self.threshold = threshold
        self.padding, self.fill = padding, float(fill)
        self.pgd_steps, self.pgd_step_size = int(pgd_steps), pgd_step_size
        self.seed, self.batch_size, self.progress = int(seed), int(batch_size), progress

    def config(self) -> dict:
        return {"backbone": self.backbone.name, "weights_id": self.backbone.weights_id, "metric": self.metric,
                "threshold": self.threshold, "padding": self.padding, "occlusion_fill": self.fill,
                "pgd_steps": self.pgd_steps,
                "pgd_start": ("uniform random in the eps ball (seeded per image); "
                              "best of the iterates and the FGSM point"),
                "pgd_step_size": self.pgd_step_size if self.pgd_step_size is not None else "2.5 * eps / steps",
                "seed": self.seed, "input_size": list(self.backbone.spec.input_size),
                "frame": "the backbone's view: crop for the layout, square padding, resized to the input size"}

    def measure(self, images, family: str, strengths: Sequence[float] | None = None, layout: str | None = None,
                positions: Sequence[str] | None = None, names: Sequence[str] | None = None) -> pd.DataFrame:
        """Tidy DataFrame of template drift per image, variant and strength (see the class doc)."""
        return self.run(images, family, strengths, layout, positions, names).table

    def run(self, images, family: str, strengths: Sequence[float] | None = None, layout: str | None = None,
            positions: Sequence[str] | None = None, names: Sequence[str] | None = None,
            keep_images: int = 0) -> DriftResult:
        """:meth:`measure`, also returning the templates and (first ``keep_images``) perturbed views."""
        fam = get_family(family)
        side = min(self.backbone.spec.input_size)
        values = fam.check(strengths, side)
        if family == "occlusion":
            variants = check_positions(positions)
        elif positions is not None:
            raise PerturbationError(f"positions apply to occlusion only, not to {family!r}")
        else:
            variants = [""]
        if layout is None:
            layout = images.layout if isinstance(images, FaceDataset) else "chip"
        views = backbone_view(self.backbone, images, layout, self.batch_size)
        n = len(views)
        if names is None:
            names = [str(p) for p in images.paths] if isinstance(images, FaceDataset) else \
                [f"image_{i}" for i in range(n)]
        names = list(map(str, names))
        if len(names) != n:
            raise PerturbationError(f"{len(names)} names for {n} images")
        clean = _templates(self.backbone, views, "chip", self.batch_size)
        self._check_finite(clean, names, "the unperturbed images")
        params = self._draw(family, n)

        rows, templates, perturbed = [], [], {}
        keep = min(max(0, int(keep_images)), n)
        jobs = [(v, s) for v in variants for s in values]
        for variant, strength in tqdm(jobs, desc=f"{family} {self.backbone.name}", disable=not self.progress,
                                      leave=False):
            chunks = []
            for start in range(0, n, self.batch_size):
                stop = min(n, start + self.batch_size)
                chunks.append(self._apply(fam, variant, strength, views[start:stop], clean[start:stop],
                                          {k: v[start:stop] for k, v in params.items()}))
            x = torch.cat(chunks)
            t = _templates(self.backbone, x, "chip", self.batch_size)
            where = f"{family} {variant + ' ' if variant else ''}at strength {strength:g}"
            self._check_finite(t, names, where)
            cos = F.cosine_similarity(t.double(), clean.double(), dim=1, eps=1e-12).numpy()
            l2 = (t.double() - clean.double()).norm(dim=1).numpy()
            linf = (x - views).abs().flatten(1).max(1).values.numpy()
            score = cos if self.metric == "cosine" else -l2
            for i in range(n):
                if i < keep:
                    perturbed[len(rows)] = _to_uint8(x[i:i + 1])[0]
                rows.append({"image": i, "name": names[i], "family": family, "variant": variant,
                             "strength": strength, "unit": fam.unit, "cosine": float(cos[i]), "l2": float(l2[i]),
                             "score": float(score[i]), "metric": self.metric, "threshold": self.threshold,
                             "verified": (bool(score[i] >= self.threshold) if self.threshold is not None else None),
                             "linf": float(linf[i])})
            templates.append(t.numpy())
        table = pd.DataFrame(rows)
        config = dict(self.config(), family=family, strengths=values, variants=variants, layout=layout, n_images=n)
        return DriftResult(table, np.concatenate(templates).astype(np.float32), clean.numpy().astype(np.float32),
                           _to_uint8(views[:keep]), perturbed, config)

    @staticmethod
    def _check_finite(t: torch.Tensor, names: Sequence[str], where: str) -> None:
        bad = ~torch.isfinite(t).all(1)
        if bad.any():
            first = int(torch.nonzero(bad)[0])
            raise PerturbationError(f"{int(bad.sum())} template(s) of {where} contain NaN or infinite values, "
                                    f"e.g. {names[first]}")

    def _draw(self, family: str, n: int) -> dict[str, np.ndarray]:
        """Per-image random choices of a family (same for every strength, so each image traces one path)."""
        rng = _family_rng(self.seed, family)
        h, w = self.backbone.spec.input_size
        return {"sign": rng.choice([-1.0, 1.0], n), "direction": rng.uniform(0, 2 * np.pi, n),
                "centre": np.stack([rng.uniform(0.25 * w, 0.75 * w, n), rng.uniform(0.25 * h, 0.75 * h, n)], 1),
                "seeds": rng.integers(0, 2 ** 62, n)}

    def _apply(self, fam: Family, variant: str, strength: float, x: torch.Tensor, clean: torch.Tensor,
               params: dict) -> torch.Tensor:
        name = fam.name
        if name == "rotation":
            return rotate(x, strength * params["sign"], self.padding)
        if name == "translation":
            d = params["direction"]
            return translate(x, strength * np.cos(d), strength * np.sin(d), self.padding)
        if name == "scaling":
            return zoom(x, strength, self.padding)
        if name == "occlusion":
            side = strength * min(x.shape[-2:])
            if variant == "random":
                centres = params["centre"][:, None, :]
            else:
                pts = face_points(self.backbone)
                pts["centre"] = ((x.shape[-1]) / 2, (x.shape[-2]) / 2)
                keys = ("left_eye", "right_eye") if variant == "eyes" else (variant,)
                centres = np.repeat(np.array([pts[k] for k in keys])[None], len(x), axis=0)
            return occlude(x, centres, side, self.fill)
        if strength == 0:
            return x.clone()
        if name == "noise":
            # One generator per image: an image's noise does not depend on the batch it falls in.
            return torch.cat([sign_noise(x[i:i + 1], strength, torch.Generator().manual_seed(int(s)))
                              for i, s in enumerate(params["seeds"])])
        if name == "fgsm":
            return fgsm(self.backbone, x, strength, "chip", clean, self.batch_size)
        if name == "pgd":
            # Random starts drawn per image (seeded): an image's attack does not depend on its batch.
            uniform = torch.stack([torch.rand(x.shape[1:], generator=torch.Generator().manual_seed(int(s)))
                                   for s in params["seeds"]])
            return _pgd(self.backbone, x, strength, self.pgd_steps, self.pgd_step_size, self.metric, uniform, clean,
                        "chip", self.batch_size)
        raise UnknownNameError(f"unknown perturbation family {name!r}; valid families: {', '.join(FAMILIES)}")


# --------------------------------------------------------------------------- summaries and figures


def summarise(table: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per family, variant and strength: mean cosine and L2 with t-intervals, verified rate with a Wilson interval."""
    from scipy import stats

    if table.empty:
        raise PerturbationError("the drift table is empty: nothing to summarise")
    out = []
    for (family, variant, strength), g in table.groupby(["family", "variant", "strength"], sort=False):
        n = len(g)
        row = {"family": family, "variant": variant, "strength": strength, "unit": g["unit"].iloc[0], "n": n}
        for col in ("cosine", "l2") + tuple(c for c in g.columns if c.startswith("recon_") and
                                            c not in ("recon_verified",) and g[c].dtype != object):
            m, sd = float(g[col].mean()), float(g[col].std(ddof=1)) if n > 1 else float("nan")
            half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else float("nan")
            row.update({f"{col}_mean": m, f"{col}_ci_low": m - half, f"{col}_ci_high": m + half})
        for col in ("verified", "recon_verified"):
            if col in g.columns and g[col].notna().all():
                k = int(g[col].astype(bool).sum())
                ci = stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
                row.update({f"{col}_rate": k / n, f"{col}_ci_low": float(ci.low), f"{col}_ci_high": float(ci.high)})
        row["linf_max"] = float(g["linf"].max())
        out.append(row)
    return pd.DataFrame(out)


def failure_strengths(summary: pd.DataFrame, below: float = 0.5, column: str = "verified_rate") -> pd.DataFrame:
    """Per family and variant, the smallest strength (in the family's order of increasing effect) at which
    the ``column`` rate falls below ``below``; NaN when it never does."""
    if column not in summary.columns:
        raise PerturbationError(f"the summary has no {column!r} column (measure with a threshold)")
    out = []
    for (family, variant), g in summary.groupby(["family", "variant"], sort=False):
        fam = get_family(family)
        # Effect grows with the distance from the identity strength (scaling: both ways from 1).
        g = g.assign(_effect=(g["strength"] - fam.identity).abs()).sort_values("_effect")
        hit = g[g[column] < below]
        out.append({"family": family, "variant": variant, "below": below,
                    "strength": float(hit["strength"].iloc[0]) if len(hit) else float("nan")})
    return pd.DataFrame(out)


_LABELS = {"cosine": "cosine to the clean template", "l2": "L2 distance to the clean template",
           "verified": "fraction still verified"}


def plot_drift(table: pd.DataFrame, metrics: Sequence[str] | None = None, labels: Mapping[str, str] | None = None,
               title: str | None = None, ci: float = 95, seed: int = 0):
    """Drift against strength, mean over images with a ``ci``% bootstrap band, one panel per metric.

    Default panels: cosine, L2 (``euclidean`` backbones) and the fraction still
    verified (when measured with a threshold; its threshold is drawn on the
    score panel). One line per family when the table holds several, else one
    per variant (occlusion position). Returns the matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    if table.empty:
        raise PerturbationError("the drift table is empty: nothing to plot")
    families = list(dict.fromkeys(table["family"]))
    metric = table["metric"].iloc[0]
    has_threshold = table["verified"].notna().all()
    if metrics is None:
        metrics = ["cosine"] + (["l2"] if metric == "euclidean" else []) + (["verified"] if has_threshold else [])
    missing = [m for m in metrics if m not in table.columns]
    if missing:
        raise PerturbationError(f"no column(s) {', '.join(missing)} in the drift table; columns: "
                                f"{', '.join(table.columns)}")
    labels = {**_LABELS, **(labels or {})}
    data = table.copy()
    for m in metrics:
        if data[m].dtype == object or data[m].dtype == bool:
            data[m] = data[m].astype(float)
    if len(families) > 1:
        hue = "family"
    elif data["variant"].nunique() > 1:
        hue = "variant"
    else:
        hue = None
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        sns.lineplot(data=data, x="strength", y=m, hue=hue, marker="o", errorbar=("ci", ci), n_boot=1000,
                     seed=seed, ax=ax, palette="colorblind" if hue else None, legend=ax is axes[0][0])
        ax.set_ylabel(labels.get(m, m))
        ax.set_xlabel(f"{families[0] if len(families) == 1 else 'strength'} ({data['unit'].iloc[0]})")
        ax.grid(alpha=0.3)
        threshold = table["threshold"].iloc[0] if has_threshold else None
        if threshold is not None and ((m == "cosine" and metric == "cosine") or (m == "l2" and metric == "euclidean")):
            value = threshold if m == "cosine" else -threshold
            ax.axhline(value, ls="--", color="grey", lw=1)
            ax.annotate("verification threshold", (ax.get_xlim()[0], value), fontsize=7, color="grey",
                        xytext=(3, 3), textcoords="offset points")
        if m in ("verified",) or m.endswith("_verified"):
            ax.set_ylim(-0.03, 1.03)
    n = table["image"].nunique()
    fig.suptitle(title or f"{', '.join(families)}: template drift on {table['metric'].iloc[0]} backbone "
                 f"({n} images, mean and {ci:g}% CI)", fontsize=10)
    fig.tight_layout()
    return fig
