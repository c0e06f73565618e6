"""Which filters two networks share, beside what two random networks share by chance.

``FilterComparison(threshold=0.5, n_baseline=3).compare(net_a, net_b, images)``
pairs corresponding layers (:func:`~probes.filters.pairing.pair_layers`),
matches each pair's filters one to one (:func:`~probes.filters.matching.match_filters`),
computes linear CKA between every layer of a and every layer of b on the
same images, and repeats all of it for ``n_baseline`` pairs of independently
initialised networks of the same architectures. Random filters already match
at |cosine| 0.06 (2,048-value dense rows) to 0.35-0.45 (3x3 convolutions over a
few channels) and 0.7-0.8 (3x3 depthwise kernels, 9 values), and random
networks' activations on the same images already agree (CKA 0.3-0.97), so a
result is called "more than chance" only above the chance interval
(:func:`~probes.filters.result.chance_interval`).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..datasets import FaceDataset
from ..errors import ImageError
from ..geometry import images_to_tensor
from .cka import cka_matrix, normalised_gram
from .layers import Layer, LayerMismatchError
from .matching import live_filters, match_filters
from .networks import Network, as_network
from .pairing import pair_layers
from .result import FilterResult, LayerPairResult

POOLS = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


def pool_features(t: torch.Tensor, kind: str, grid: int | None, max_dim: int) -> torch.Tensor:
    """An activation batch -> N x D: conv outputs averaged onto at most a grid x grid (x ...) grid,
    the grid shrunk until channels x cells <= max_dim (one cell when even that is too wide)."""
    t = t.detach().float()
    if t.ndim <= 2 or kind == "linear" or grid is None:
        return t.reshape(t.shape[0], -1)
    channels, spatial = t.shape[1], t.shape[2:]
    g = max(1, min(grid, int((max_dim / channels) ** (1 / len(spatial)) + 1e-9)))
    target = tuple(min(g, s) for s in spatial)
    pool = POOLS.get(len(spatial))
    if pool is None:
        return t.reshape(t.shape[0], -1)
    return pool(t, target).flatten(1)


def live_pairs(a: Network, b: Network, layer_pairs: list[tuple[Layer, Layer]]):
    """(pairs, their live-filter masks, names of the pairs left out because one side has no live filter).

    Constant (dead) filters are left out, here and at the same positions in the random twins, so
    the baseline matches as many filters as the real pair.
    """
    live = [(live_filters(a.filters(la.name)), live_filters(b.filters(lb.name))) for la, lb in layer_pairs]
    keep = [i for i, (ma, mb) in enumerate(live) if ma.any() and mb.any()]
    skipped = [f"{la.name}={lb.name}" for i, (la, lb) in enumerate(layer_pairs) if i not in keep]
    return [layer_pairs[i] for i in keep], [live[i] for i in keep], skipped


def matched_filters(a: Network, b: Network, layer_pairs, live) -> list:
    """The one-to-one matching of each layer pair's live filters."""
    return [match_filters(a.filters(la.name)[ma], b.filters(lb.name)[mb])
            for (la, lb), (ma, mb) in zip(layer_pairs, live)]


class FilterComparison:
    """Common filters and CKA of two networks, each beside its chance baseline.

    Parameters (stored as given; :meth:`compare` checks them)
    ----------
    threshold: a matched filter pair "shares" a filter when |cosine| > threshold.
    n_baseline: pairs of independently initialised networks for the chance interval (>= 2).
    random_state: seeds the baseline networks.
    pairing: "auto", "name" or "shape" (see :func:`~probes.filters.pairing.pair_layers`).
    grid, max_dim: conv activations are averaged onto a grid x grid grid (fewer cells for wide
        layers, so channels x cells <= max_dim) before CKA; ``grid=None`` keeps every position.
    batch_size, level, progress: images per forward pass, chance-interval level, progress bars.
    """

    def __init__(self, threshold: float = 0.5, n_baseline: int = 3, random_state: int = 0, pairing: str = "auto",
                 grid: int | None = 4, max_dim: int = 4096, batch_size: int = 32, level: float = 0.95,
                 progress: bool = True):
        self.threshold = threshold
        self.n_baseline = n_baseline
        self.random_state = random_state
        self.pairing = pairing
        self.grid = grid
        self.max_dim = max_dim
        self.batch_size = batch_size
        self.level = level
        self.progress = progress

    def _check_parameters(self) -> None:
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1] (an |cosine|), got {self.threshold}")
        if int(self.n_baseline) != self.n_baseline or self.n_baseline < 2:
            raise ValueError(f"n_baseline must be an integer >= 2 (an interval needs two random pairs), "
                             f"got {self.n_baseline}")
        if self.grid is not None and (int(self.grid) != self.grid or self.grid < 1):
            raise ValueError(f"grid must be a positive integer or None, got {self.grid!r}")
        if self.batch_size <= 0 or self.max_dim <= 0:
            raise ValueError("batch_size and max_dim must be positive")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")

    def baseline_seeds(self) -> list[tuple[int, int]]:
        """(seed of a's random twin, seed of b's) for each baseline pair; never equal within a pair."""
        n = int(self.n_baseline)
        state = np.random.SeedSequence(self.random_state).generate_state(2 * n)
        return [(int(state[2 * k]) % 2**31, int(state[2 * k + 1]) % 2**31) for k in range(n)]

    # ----------------------------------------------------------------- activations

    def _images(self, images, layout: str | None) -> tuple[torch.Tensor, str]:
        if isinstance(images, FaceDataset):
            layout = layout or images.layout
            images = images.load_images()
        x = images_to_tensor(images)
        if len(x) < 3:
            raise ImageError(f"CKA needs at least 3 images, got {len(x)}")
        return x, layout or "chip"

    def grams(self, net: Network, images: torch.Tensor, layout: str, desc: str = "") -> list[np.ndarray]:
        """Normalised centred Gram matrix (N x N) of every layer of ``net`` on ``images``."""
        kinds = {layer.name: layer.kind for layer in net.layers()}
        names = list(kinds)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        batch_size = int(self.batch_size)

        def reduce(name, t):
            return pool_features(t, kinds[name], self.grid, int(self.max_dim)).cpu().numpy()

        n = len(images)
        with tqdm(total=n, desc=f"activations {desc or net.name}", unit="img", disable=not self.progress,
                  leave=False) as bar:
            for start in range(0, n, batch_size):
                out = net.activations(images[start:start + batch_size], names, layout, reduce=reduce)
                for name in names:
                    parts[name].append(out[name])
                bar.update(min(n, start + batch_size) - start)
        return [normalised_gram(np.concatenate(parts.pop(name))) for name in names]

    # ----------------------------------------------------------------- the verb

    def compare(self, net_a, net_b, images=None, pairs=None, layout: str | None = None,
                require_pairs: bool = True) -> FilterResult:
        """Compare two networks (Network, FaceBackbone or nn.Module).

        ``images``: uint8 N x H x W x 3, an N x 3 x H x W [0, 1] tensor or a
        FaceDataset (its layout); ``None`` skips CKA. ``pairs``: explicit
        ``"a=b,..."``. When no layers correspond, :class:`LayerMismatchError`
        is raised, unless ``require_pairs=False`` (then only CKA is computed
        and ``result.pairing_note`` says why).
        """
        self._check_parameters()
        a, b = as_network(net_a, "a"), as_network(net_b, "b")
        note = None
        try:
            layer_pairs = pair_layers(a, b, pairs, self.pairing)
        except LayerMismatchError as exc:
            if require_pairs or pairs is not None or images is None:
                raise
            layer_pairs, note = [], str(exc)
        layer_pairs, live, skipped = live_pairs(a, b, layer_pairs)
        if skipped:  # e.g. a generator's zero-initialised output layer before training
            warnings.warn(f"layer pair(s) {', '.join(skipped)} left out of filter matching: every filter of one "
                          "side is constant (all zero?), so nothing can match", stacklevel=2)
        matches = matched_filters(a, b, layer_pairs, live)
        x = None
        if images is not None:
            x, layout = self._images(images, layout)
        seeds = self.baseline_seeds()
        chance_means, chance_fracs, cka, chance_cka = self._measure(a, b, layer_pairs, live, x, layout, seeds)
        config = {"threshold": float(self.threshold), "n_baseline": int(self.n_baseline),
                  "random_state": self.random_state, "pairing": self.pairing,
                  "pairs": pairs if pairs is None or isinstance(pairs, str) else list(pairs),
                  "skipped_pairs": skipped, "grid": self.grid, "max_dim": int(self.max_dim), "layout": layout,
                  "level": float(self.level)}
        return FilterResult(
            name_a=a.name, name_b=b.name,
            pairs=[LayerPairResult(la, lb, m, chance_means[:, i], chance_fracs[:, i], *live[i])
                   for i, ((la, lb), m) in enumerate(zip(layer_pairs, matches))],
            threshold=float(self.threshold), level=float(self.level), seeds=seeds,
            layers_a=[l.name for l in a.layers()], layers_b=[l.name for l in b.layers()],
            cka=cka, cka_chance=chance_cka, n_images=0 if x is None else len(x), pairing_note=note, config=config)

    def _measure(self, a: Network, b: Network, layer_pairs, live, x, layout, seeds):
        """(chance matched means, chance fractions above threshold, CKA, chance CKA) over the baseline pairs."""
        chance_means = np.zeros((len(seeds), len(layer_pairs)))
        chance_fracs = np.zeros_like(chance_means)
        cka = chance_cka = None
        if x is not None:
            grams_a = self.grams(a, x, layout, f"{a.name}")
            grams_b = grams_a if b.module is a.module and b.layers() == a.layers() else \
                self.grams(b, x, layout, f"{b.name}")
            cka = cka_matrix(grams_a, grams_b)
            chance_cka = np.zeros((len(seeds), *cka.shape))
        for k, (seed_a, seed_b) in enumerate(tqdm(seeds, desc="random baselines", disable=not self.progress,
                                                  leave=False)):
            rand_a, rand_b = a.reinitialised(seed_a), b.reinitialised(seed_b)
            for i, m in enumerate(matched_filters(rand_a, rand_b, layer_pairs, live)):
                chance_means[k, i], chance_fracs[k, i] = m.mean, m.fraction_above(float(self.threshold))
            if x is not None:
                chance_cka[k] = cka_matrix(self.grams(rand_a, x, layout, f"{a.name} random {k}"),
                                           self.grams(rand_b, x, layout, f"{b.name} random {k}"))
        return chance_means, chance_fracs, cka, chance_cka
