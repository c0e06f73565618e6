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
name, or ``package.module:function[=arg]`` imported at run time through
:mod:`probes.resolve` (how modules from outside :mod:`probes` come in without
this package importing them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.hse import random_init
from ..backbones.registry import FaceBackbone, create_backbone, list_backbones
from ..errors import FaceprobeError
from ..geometry import images_to_tensor
from ..nn import evaluating, recording, reinitialised_copy
from ..resolve import ObjectSpec, is_object_spec, parse_object_spec, resolve_object
from ..tfjs_graph import TFJSGraph
from .layers import Layer, LayerMismatchError, NetworkSpecError, graph_layers, module_layers


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
        base = module.net if isinstance(module, FaceBackbone) else module
        self._graph = base if isinstance(base, TFJSGraph) else None
        found = graph_layers(self._graph) if self._graph is not None else module_layers(base)
        self._layers = [layer for layer, _ in found]
        self._source = {layer.name: source for layer, source in found}  # layer -> graph node or module
        if not self._layers:
            raise LayerMismatchError(f"network {self.name!r} ({type(module).__name__}) has no convolution or "
                                     "linear layer to compare")
        # The layer that reads the image: its filters' channel axis follows the network's colour order.
        first = self._layers[0]
        self.input_layer = first.name if first.kind == "conv" and first.filter_shape[:1] == (3,) else None
        order = module.spec.colour_order if isinstance(module, FaceBackbone) else getattr(module, "colour_order", "RGB")
        self.colour_order = str(order).upper()
        if self._only is not None:
            self._layers = self._restricted(self._only)

    def _restricted(self, names: Sequence[str]) -> list[Layer]:
        known = {layer.name for layer in self._layers}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise LayerMismatchError(f"network {self.name!r} has no layer(s) {unknown}; its layers: "
                                     f"{', '.join(sorted(known))}")
        return [layer for layer in self._layers if layer.name in names]

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
            twin = reinitialised_copy(module, seed, NetworkSpecError)
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
        with evaluating(self.module):
            if self._graph is None:
                return self._hooked(x01, names, layout, reduce)
            x = self.module.preprocess(x01, layout) if isinstance(self.module, FaceBackbone) else None
            if x is None:
                x = self._graph_input(x01)
            nodes = [self._source[n] for n in names]
            outs = self._graph(x, outputs=nodes)
            return {n: reduce(n, outs[node]) for n, node in zip(names, nodes)}

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
    """A network from a string: a backbone registry name, ``package.module:function[=arg]`` or
    ``path/to/file.py:function[=arg]``.

    The function is imported when called and run as ``function()`` or
    ``function(arg)`` (``arg`` a string); it must return an ``nn.Module`` (or
    a :class:`Network`). ``weights`` and ``pretrained`` apply to registry
    names only.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise NetworkSpecError(f"network spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if not is_object_spec(spec):
        names = list_backbones()
        if spec not in names:
            raise NetworkSpecError(f"network spec {spec!r} is neither a registered backbone ({', '.join(names)}) "
                                   "nor 'package.module:function[=arg]' or 'path/to/file.py:function[=arg]'")
        return Network(create_backbone(spec, weights=weights, device=device, pretrained=pretrained), spec)
    if weights is not None:
        raise NetworkSpecError(f"weights= applies to registry backbones only, not to {spec!r}; let the function "
                               "load its own weights (pass them as its =arg)")
    function, parsed = network_function(spec)
    arg = parsed.arg
    try:
        made = function() if arg is None else function(arg)
    except FaceprobeError:
        raise
    except Exception as exc:  # any failure of a user function is reported with its spec
        call = f"{parsed.name}()" if arg is None else f"{parsed.name}({arg!r})"
        raise NetworkSpecError(f"network spec {spec!r}: {call} failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(made, Network):
        return made
    if not isinstance(made, nn.Module):
        raise NetworkSpecError(f"network spec {spec!r} returned {type(made).__name__}, not a torch.nn.Module")
    return Network(made.to(device).eval(), spec)


def network_function(spec: str) -> tuple[Callable, ObjectSpec]:
    """The function a ``package.module:function[=arg]`` spec names, and the parsed spec.

    The grammar and the import are :mod:`probes.resolve`'s; the messages say "function", which a
    network spec names (resolve's say "attribute").
    """
    try:
        parsed = parse_object_spec(spec, NetworkSpecError, "network spec")
    except NetworkSpecError:
        raise NetworkSpecError(f"network spec {spec!r} is not 'package.module:function[=arg]' or "
                               "'path/to/file.py:function[=arg]'") from None
    try:
        function = resolve_object(parsed, NetworkSpecError, "network spec")
    except NetworkSpecError as exc:
        if exc.__cause__ is not None:
            raise  # the module cannot be imported
        function = None  # the module has no such attribute
    if not callable(function):
        raise NetworkSpecError(f"network spec {spec!r}: module {parsed.module!r} has no callable "
                               f"{parsed.attribute!r}")
    return function, parsed
