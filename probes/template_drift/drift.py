"""Measuring template drift: :class:`TemplateDrift` and what it returns, :class:`DriftResult`."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..backbones.registry import FaceBackbone
from ..datasets import FaceDataset
from ..errors import UnknownNameError
from ..images import to_uint8
from .attacks import AttackSetup, batched_templates, fgsm, metric_of, pgd_ascent
from .families import FAMILIES, PADDINGS, Family, PerturbationError, check_positions, face_points, get_family
from .transforms import backbone_view, occlude, rotate, sign_noise, translate, zoom


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
        self.metric = metric_of(backbone, None)
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
        clean = batched_templates(self.backbone, views, "chip", self.batch_size)
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
            t = batched_templates(self.backbone, x, "chip", self.batch_size)
            where = f"{family} {variant + ' ' if variant else ''}at strength {strength:g}"
            self._check_finite(t, names, where)
            cos = F.cosine_similarity(t.double(), clean.double(), dim=1, eps=1e-12).numpy()
            l2 = (t.double() - clean.double()).norm(dim=1).numpy()
            linf = (x - views).abs().flatten(1).max(1).values.numpy()
            score = cos if self.metric == "cosine" else -l2
            for i in range(n):
                if i < keep:
                    perturbed[len(rows)] = to_uint8(x[i:i + 1])[0]
                rows.append({"image": i, "name": names[i], "family": family, "variant": variant,
                             "strength": strength, "unit": fam.unit, "cosine": float(cos[i]), "l2": float(l2[i]),
                             "score": float(score[i]), "metric": self.metric, "threshold": self.threshold,
                             "verified": (bool(score[i] >= self.threshold) if self.threshold is not None else None),
                             "linf": float(linf[i])})
            templates.append(t.numpy())
        table = pd.DataFrame(rows)
        config = dict(self.config(), family=family, strengths=values, variants=variants, layout=layout, n_images=n)
        return DriftResult(table, np.concatenate(templates).astype(np.float32), clean.numpy().astype(np.float32),
                           to_uint8(views[:keep]), perturbed, config)

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
            return pgd_ascent(self.backbone, x, strength, self.pgd_steps, self.pgd_step_size, uniform,
                              AttackSetup("chip", self.metric, clean, self.batch_size))
        raise UnknownNameError(f"unknown perturbation family {name!r}; valid families: {', '.join(FAMILIES)}")

