"""Networks seen as ordered weight layers plus a way to run images through them.

A :class:`Network` wraps any ``nn.Module`` and answers three questions the
comparison asks: which layers hold filters (:meth:`Network.layers`), what do
those layers compute on images (:meth:`Network.activations`), and what does
the same architecture look like untrained (:meth:`Network.reinitialised`).

- A :class:`~probes.backbones.FaceBackbone` is fed through its own
  preprocessing (crop for the images' layout, resize, normalise). Its
  untrained twin is rebuilt by its spec's builder under a seeded RNG, as
  ``create_backbone(name, pretrained=False)`` does.
- A TF.js graph (:class:`~probes.tfjs_graph.TFJSGraph`, bare or inside a
  backbone) has no conv modules; its filter constants are the layers, named
  after the constant, and its activations are read with ``outputs=``.
- Any other module: its ``Conv*``, ``ConvTranspose*`` and ``Linear``
  submodules, named as in ``named_modules()``, read with forward hooks that
  are removed whatever happens. Its random twin is a deep copy whose
  ``reset_parameters`` are re-run (the network's own, if it defines one,
  else every submodule's, with a warning naming parameters none resets).
  To feed it images it needs a
  ``forward_images(x)`` method (``x``: N x 3 x H x W RGB in [0, 1], any
  size) or an ``image_size`` / ``input_size`` attribute (then ``x`` is
  resized to it and mapped to ``input_range``, default (0, 1)); or pass
  ``forward=`` / ``input_size=`` here.

:func:`load_network` turns a command-line string into a network: a registry
name, or ``package.module:function[=arg]`` imported at run time (how modules
from outside :mod:`probes` come in without this package importing them).
"""

from __future__ import annotations

import copy
import importlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.hse import random_init
from ..backbones.registry import FaceBackbone, create_backbone, list_backbones
from ..errors import FaceprobeError
from ..geometry import images_to_tensor
from ..nn import recording
from ..tfjs_graph import TFJSGraph, node_attr

FILTER_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                  nn.Linear)
_GRAPH_FILTER_OPS = {"Conv2D": "conv", "_FusedConv2D": "conv", "DepthwiseConv2dNative": "depthwise",
                     "FusedDepthwiseConv2dNative": "depthwise", "MatMul": "linear", "_FusedMatMul": "linear"}


class NetworkSpecError(FaceprobeError, ValueError):
    """A network spec string cannot be turned into a network; the message names the spec."""


class LayerMismatchError(FaceprobeError, ValueError):
    """Two networks' layers do not correspond; the message lists the layers and shapes that differ."""


@dataclass(frozen=True)
class Layer:
    """One weight layer: filters along the first axis of ``shape`` (PyTorch layout, OIHW for convs).

    A transposed convolution's weight is stored (in, out, k...); ``shape``
    and :meth:`filters` give it per output channel like every other layer.
    """

    name: str
    kind: str  # "conv", "depthwise", "conv_transpose", "linear"
    shape: tuple[int, ...]
    weight: torch.Tensor = field(repr=False, compare=False)
    groups: int = field(default=1, repr=False)

    @property
    def n_filters(self) -> int:
        return self.shape[0]

    @property
    def filter_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    def filters(self) -> np.ndarray:
        """(n_filters, filter size) float64 array, one flattened filter per row."""
        w = self.weight.detach().float().cpu()
        if self.kind == "conv_transpose":
            g = self.groups
            w = w.reshape(g, w.shape[0] // g, *w.shape[1:]).transpose(1, 2)
            w = w.reshape(g * w.shape[1], *w.shape[2:])
        return w.reshape(w.shape[0], -1).numpy().astype(np.float64)


def _module_layers(module: nn.Module) -> list[tuple[Layer, nn.Module]]:
    out = []
    for name, sub in module.named_modules():
        if not isinstance(sub, FILTER_MODULES) or getattr(sub, "weight", None) is None:
            continue
        w = sub.weight
        if isinstance(sub, nn.Linear):
            kind, shape, groups = "linear", tuple(w.shape), 1
        elif isinstance(sub, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            g = sub.groups
            kind, groups = "conv_transpose", g
            shape = (w.shape[1] * g, w.shape[0] // g, *w.shape[2:])
        else:
            groups = sub.groups
            kind = "depthwise" if groups > 1 and groups == sub.in_channels else "conv"
            shape = tuple(w.shape)
        out.append((Layer(name, kind, tuple(int(s) for s in shape), w, groups), sub))
    return out


def _graph_layers(graph: TFJSGraph) -> list[tuple[Layer, str]]:
    """Filter constants of a TF.js graph, in file order, each with the first node that reads it."""
    # TFJSGraph has no public accessor for a node's inputs; these are read-only uses.
    out, seen = [], set()
    for node in graph._nodes.values():
        kind = _GRAPH_FILTER_OPS.get(node.op)
        if kind is None or len(node.inputs) < 2:
            continue
        const = node.inputs[1]
        key = const.replace(".", "·")
        if const in seen or key not in graph.params:
            continue
        seen.add(const)
        w = graph.params[key]
        if kind == "linear":
            if w.ndim != 2:
                continue
            # TF kernels are [in, out] unless transpose_b; filters are rows
            w = w if node_attr(node, "transpose_b", False) else w.t()
        out.append((Layer(const, kind, tuple(int(s) for s in w.shape), w), node.name))
    return out


def _reinit_module(module: nn.Module, seed: int) -> nn.Module:
    """A deep copy re-initialised under ``seed``: the module's own ``reset_parameters`` when it has one (it
    must then reset everything), else every submodule's; warns about parameters nothing resets."""
    graphs = [name or "(the module itself)" for name, sub in module.named_modules() if isinstance(sub, TFJSGraph)]
    if graphs:
        # A TFJSGraph's compiled ops hold on to the graph they were built for, so a deep copy would
        # still compute with the original's weights; only rebuilding from the file makes a true twin.
        raise NetworkSpecError(f"{type(module).__name__} holds TF.js graph(s) ({', '.join(graphs)}), which cannot "
                               "be copied and re-initialised; register the graph as a backbone (its builder makes "
                               "the random twin) or compare it without a baseline")
    twin = copy.deepcopy(module)
    covered: set[int] = set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if callable(getattr(twin, "reset_parameters", None)) and not isinstance(twin, FILTER_MODULES):
            twin.reset_parameters()  # a network's own reset_parameters is trusted to reset all of it
            return twin
        for sub in twin.modules():
            if callable(getattr(sub, "reset_parameters", None)):
                sub.reset_parameters()
                covered.update(id(p) for p in sub.parameters(recurse=False))
    kept = [n for n, p in twin.named_parameters() if id(p) not in covered]
    if kept:
        warnings.warn(f"{type(module).__name__}: {len(kept)} parameter(s) belong to modules without "
                      f"reset_parameters and keep their trained values in the random copy, e.g. "
                      f"{', '.join(kept[:5])}", stacklevel=3)
    return twin


class Network:
    """A module plus what a filter comparison needs of it (see the module docstring).

    ``layout`` is the dataset layout a :class:`FaceBackbone` crops for; other
    modules ignore it. ``layers=`` restricts the comparison to those names.
    """

    def __init__(self, module: nn.Module, name: str | None = None, *, forward: Callable | None = None,
                 input_size: int | tuple[int, int] | None = None, input_range: tuple[float, float] | None = None,
                 layers: Sequence[str] | None = None):
        if isinstance(module, Network):
            raise TypeError("already a Network")
        if not isinstance(module, nn.Module):
            raise NetworkSpecError(f"a network must be a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self.name = name or getattr(module, "name", None) or type(module).__name__
        self._forward = forward
        self._input_size = input_size
        self._input_range = input_range
        self._only = list(layers) if layers is not None else None
        graph = module.net if isinstance(module, FaceBackbone) else module
        self._graph = graph if isinstance(graph, TFJSGraph) else None
        if self._graph is not None:
            found = _graph_layers(self._graph)
            self._layers = [layer for layer, _ in found]
            self._source = {layer.name: node for layer, node in found}
        else:
            base = module.net if isinstance(module, FaceBackbone) else module
            found = _module_layers(base)
            self._layers = [layer for layer, _ in found]
            self._source = {layer.name: sub for layer, sub in found}
        if not self._layers:
            raise LayerMismatchError(f"network {self.name!r} ({type(module).__name__}) has no convolution or "
                                     "linear layer to compare")
        # The layer that reads the image: its filters' channel axis follows the network's colour order.
        first = self._layers[0]
        self.input_layer = first.name if first.kind == "conv" and first.filter_shape[:1] == (3,) else None
        order = module.spec.colour_order if isinstance(module, FaceBackbone) else getattr(module, "colour_order", "RGB")
        self.colour_order = str(order).upper()
        if self._only is not None:
            known = {layer.name for layer in self._layers}
            unknown = [n for n in self._only if n not in known]
            if unknown:
                raise LayerMismatchError(f"network {self.name!r} has no layer(s) {unknown}; its layers: "
                                         f"{', '.join(sorted(known))}")
            self._layers = [layer for layer in self._layers if layer.name in self._only]

    def __repr__(self) -> str:
        return f"Network({self.name!r}, {type(self.module).__name__}, {len(self._layers)} layers)"

    def layers(self) -> list[Layer]:
        """Weight layers in forward (file) order."""
        return list(self._layers)

    def layer(self, name: str) -> Layer:
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise LayerMismatchError(f"network {self.name!r} has no layer {name!r}; its layers: "
                                 f"{', '.join(l.name for l in self._layers)}")

    def filters(self, name: str) -> np.ndarray:
        """Layer ``name``'s flattened filters; the image-reading layer's in RGB channel order whatever the
        network's own order, so a BGR network's first filters compare with an RGB network's."""
        filters = self.layer(name).filters()
        if name == self.input_layer and self.colour_order == "BGR":
            filters = filters.reshape(filters.shape[0], 3, -1)[:, ::-1].reshape(filters.shape[0], -1)
        return filters

    @property
    def device(self) -> torch.device:
        try:
            return next(self.module.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    # ----------------------------------------------------------------- untrained twin

    def reinitialised(self, seed: int) -> Network:
        """The same architecture with fresh random weights drawn under ``seed`` (the chance baseline)."""
        module = self.module
        if isinstance(module, FaceBackbone):

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = module.spec.builder()
                if isinstance(net, TFJSGraph):
                    random_init(net, seed)
            twin = FaceBackbone(module.spec, net, f"random-init-seed{seed}").to(self.device).eval()
        else:
            twin = _reinit_module(module, seed)
        return Network(twin, f"{self.name} (random init {seed})", forward=self._forward,
                       input_size=self._input_size, input_range=self._input_range, layers=self._only)

    # ----------------------------------------------------------------- running images

    def _size(self) -> tuple[int, int] | None:
        size = self._input_size
        if size is None:
            size = getattr(self.module, "image_size", None) or getattr(self.module, "input_size", None)
        if size is None:
            return None
        return (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)

    def _run(self, x01: torch.Tensor, layout: str):
        """Forward ``x01`` (N x 3 x H x W, [0, 1] RGB) the way this network is meant to be fed."""
        if isinstance(self.module, FaceBackbone):
            return self.module(x01, layout)
        if self._forward is not None:
            return self._forward(x01)
        if callable(getattr(self.module, "forward_images", None)):
            return self.module.forward_images(x01)
        size = self._size()
        if size is None:
            raise NetworkSpecError(
                f"network {self.name!r} ({type(self.module).__name__}) cannot be fed images: give the module a "
                "forward_images(x) method (x: N x 3 x H x W RGB in [0, 1]) or an image_size attribute, or "
                "pass forward= / input_size= to Network; or compare filters only (no images / --no-cka)")
        if tuple(x01.shape[-2:]) != size:
            x01 = F.interpolate(x01, size=size, mode="bilinear", align_corners=False,
                                antialias=x01.shape[-1] > size[1])
        lo, hi = self._input_range or getattr(self.module, "input_range", None) or (0.0, 1.0)
        return self.module(lo + (hi - lo) * x01)

    @torch.no_grad()
    def activations(self, images, names: Sequence[str] | None = None, layout: str = "chip",
                    reduce: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """``{layer: output}`` of one batch (uint8 N x H x W x 3 or an N x 3 x H x W [0, 1] tensor).

        ``reduce(name, output)`` is applied to each output as soon as it is
        produced, so only the reduced batch is kept.
        """
        names = [layer.name for layer in self._layers] if names is None else list(names)
        for name in names:
            if name not in self._source:
                self.layer(name)  # raises, listing the layers
        x01 = images_to_tensor(images).to(self.device)
        reduce = reduce or (lambda name, t: t)
        was_training = self.module.training
        self.module.eval()
        try:
            if self._graph is not None:
                x = self.module.preprocess(x01, layout) if isinstance(self.module, FaceBackbone) else None
                if x is None:
                    x = self._graph_input(x01)
                nodes = [self._source[n] for n in names]
                outs = self._graph(x, outputs=nodes)
                return {n: reduce(n, outs[node]) for n, node in zip(names, nodes)}
            return self._hooked(x01, names, layout, reduce)
        finally:
            self.module.train(was_training)

    def _graph_input(self, x01: torch.Tensor) -> torch.Tensor:
        size = self._size()
        if size is None:
            raise NetworkSpecError(f"bare graph {self.name!r} needs input_size= (and input_range=) to be fed images")
        if tuple(x01.shape[-2:]) != size:
            x01 = F.interpolate(x01, size=size, mode="bilinear", align_corners=False)
        lo, hi = self._input_range or (0.0, 1.0)
        return lo + (hi - lo) * x01

    def _hooked(self, x01, names, layout, reduce) -> dict[str, torch.Tensor]:
        with recording({name: self._source[name] for name in names}, reduce, repr(self.name)) as out:
            self._run(x01, layout)
        out.check_complete(names, repr(self.name))
        return dict(out)


# --------------------------------------------------------------------------- from strings


def as_network(obj, name: str | None = None) -> Network:
    """A :class:`Network` from a Network (returned as is), a FaceBackbone or any ``nn.Module``."""
    if isinstance(obj, Network):
        return obj
    return Network(obj, name)


def load_network(spec: str, weights: str | None = None, device: str | torch.device = "cpu",
                 pretrained: bool = True) -> Network:
    """A network from a string: a backbone registry name, or ``package.module:function[=arg]``.

    The function is imported when called and run as ``function()`` or
    ``function(arg)`` (``arg`` a string); it must return an ``nn.Module`` (or
    a :class:`Network`). ``weights`` and ``pretrained`` apply to registry
    names only.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise NetworkSpecError(f"network spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if ":" not in spec:
        names = list_backbones()
        if spec not in names:
            raise NetworkSpecError(f"network spec {spec!r} is neither a registered backbone ({', '.join(names)}) "
                                   "nor 'package.module:function[=arg]'")
        return Network(create_backbone(spec, weights=weights, device=device, pretrained=pretrained), spec)
    if weights is not None:
        raise NetworkSpecError(f"weights= applies to registry backbones only, not to {spec!r}; let the function "
                               "load its own weights (pass them as its =arg)")
    target, _, arg = spec.partition("=")
    module_name, _, func_name = target.partition(":")
    if not module_name or not func_name or not all(p.isidentifier() for p in module_name.split(".")) \
            or not func_name.isidentifier():
        raise NetworkSpecError(f"network spec {spec!r} is not 'package.module:function[=arg]'")
    try:
        mod = importlib.import_module(module_name)
    except ImportError as exc:
        raise NetworkSpecError(f"network spec {spec!r}: cannot import module {module_name!r} ({exc})") from exc
    func = getattr(mod, func_name, None)
    if not callable(func):
        raise NetworkSpecError(f"network spec {spec!r}: module {module_name!r} has no callable {func_name!r}")
    try:
        made = func(arg) if "=" in spec else func()
    except FaceprobeError:
        raise
    except Exception as exc:  # any failure of a user function is reported with its spec
        call = f"{func_name}({arg!r})" if "=" in spec else f"{func_name}()"
        raise NetworkSpecError(f"network spec {spec!r}: {call} failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(made, Network):
        return made
    if not isinstance(made, nn.Module):
        raise NetworkSpecError(f"network spec {spec!r} returned {type(made).__name__}, not a torch.nn.Module")
    made = made.to(device).eval()
    return Network(made, spec)


# --------------------------------------------------------------------------- corresponding layers


PAIRINGS = ("auto", "name", "shape")


def parse_pairs(text: str | Sequence) -> list[tuple[str, str]]:
    """``"a=b,c=d"`` (or a list of ``"a=b"`` / ``(a, b)``) -> ``[(a, b), (c, d)]``."""
    items = [p for p in text.split(",")] if isinstance(text, str) else list(text)
    pairs = []
    for item in items:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            pairs.append((str(item[0]), str(item[1])))
            continue
        a, sep, b = str(item).strip().partition("=")
        if not sep or not a.strip() or not b.strip():
            raise LayerMismatchError(f"layer pair {item!r} is not 'layer_a=layer_b'")
        pairs.append((a.strip(), b.strip()))
    if not pairs:
        raise LayerMismatchError("no layer pairs given")
    return pairs


def _listing(layers: Sequence[Layer], limit: int = 12) -> str:
    shown = ", ".join(f"{l.name} {l.shape}" for l in layers[:limit])
    return shown + (f" ... ({len(layers)} in all)" if len(layers) > limit else "")


def pair_layers(net_a: Network, net_b: Network, pairs=None, pairing: str = "auto") -> list[tuple[Layer, Layer]]:
    """Corresponding layers of two networks.

    - ``pairs``: explicit ``[(name_a, name_b), ...]`` or ``"a=b,..."``; the
      two filters of a pair must have the same size (in x kernel).
    - ``pairing="name"``: same layer names and shapes (same architecture).
    - ``pairing="shape"``: by order among layers of the same weight shape.
    - ``"auto"``: by name when both have the same layer names, else by shape.

    Raises :class:`LayerMismatchError` naming the layers and shapes that
    differ, or listing both networks' shapes when none match.
    """
    if pairing not in PAIRINGS:
        raise LayerMismatchError(f"unknown pairing {pairing!r}; valid: {', '.join(PAIRINGS)}")
    la, lb = net_a.layers(), net_b.layers()
    if pairs is not None:
        out = []
        for a, b in parse_pairs(pairs):
            layer_a, layer_b = net_a.layer(a), net_b.layer(b)
            if layer_a.filter_shape != layer_b.filter_shape:
                raise LayerMismatchError(
                    f"layers {a!r} of {net_a.name!r} {layer_a.shape} and {b!r} of {net_b.name!r} {layer_b.shape} "
                    f"have filters of different shapes ({layer_a.filter_shape} vs {layer_b.filter_shape})")
            out.append((layer_a, layer_b))
        return out
    names_a, names_b = [l.name for l in la], [l.name for l in lb]
    if pairing == "name" or (pairing == "auto" and names_a == names_b):
        by_b = {l.name: l for l in lb}
        only_a = [n for n in names_a if n not in by_b]
        only_b = [n for n in names_b if n not in set(names_a)]
        differ = [f"{l.name}: {l.shape} vs {by_b[l.name].shape}" for l in la
                  if l.name in by_b and l.shape != by_b[l.name].shape]
        if only_a or only_b or differ:
            parts = []
            if differ:
                parts.append(f"shapes differ: {'; '.join(differ[:10])}{' ...' if len(differ) > 10 else ''}")
            if only_a:
                parts.append(f"only in {net_a.name!r}: {', '.join(only_a[:10])}")
            if only_b:
                parts.append(f"only in {net_b.name!r}: {', '.join(only_b[:10])}")
            raise LayerMismatchError(f"{net_a.name!r} and {net_b.name!r} do not have the same architecture "
                                     f"({'; '.join(parts)}); pair layers by shape (pairing='shape') or "
                                     "explicitly (pairs='a=b,...')")
        return [(l, by_b[l.name]) for l in la]
    queues: dict[tuple[int, ...], list[Layer]] = {}
    for layer in lb:
        queues.setdefault(layer.shape, []).append(layer)
    out = []
    for layer in la:
        queue = queues.get(layer.shape)
        if queue:
            out.append((layer, queue.pop(0)))
    if not out:
        raise LayerMismatchError(
            f"no layer of {net_a.name!r} has the weight shape of a layer of {net_b.name!r}, so no filters "
            f"correspond. {net_a.name}: {_listing(la)}. {net_b.name}: {_listing(lb)}. "
            "Pair layers explicitly with pairs='a=b,...' (filters of equal size) or compare activations only (CKA)")
    return out
