"""Corresponding layers of two networks: explicit pairs, the same names, or the same weight shapes."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import preview
from .layers import Layer, LayerMismatchError
from .networks import Network

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
    if pairs is not None:
        return explicit_pairs(net_a, net_b, pairs)
    same_names = [l.name for l in net_a.layers()] == [l.name for l in net_b.layers()]
    if pairing == "name" or (pairing == "auto" and same_names):
        return pairs_by_name(net_a, net_b)
    return pairs_by_shape(net_a, net_b)


def explicit_pairs(net_a: Network, net_b: Network, pairs) -> list[tuple[Layer, Layer]]:
    """The layers named by ``pairs`` (see :func:`parse_pairs`), whose filters must be of one size."""
    out = []
    for a, b in parse_pairs(pairs):
        layer_a, layer_b = net_a.layer(a), net_b.layer(b)
        if layer_a.filter_shape != layer_b.filter_shape:
            raise LayerMismatchError(
                f"layers {a!r} of {net_a.name!r} {layer_a.shape} and {b!r} of {net_b.name!r} {layer_b.shape} "
                f"have filters of different shapes ({layer_a.filter_shape} vs {layer_b.filter_shape})")
        out.append((layer_a, layer_b))
    return out


def pairs_by_name(net_a: Network, net_b: Network) -> list[tuple[Layer, Layer]]:
    """Layers of the same name and shape; any difference of architecture is an error that lists it."""
    la, lb = net_a.layers(), net_b.layers()
    names_a = [l.name for l in la]
    by_b = {l.name: l for l in lb}
    only_a = [n for n in names_a if n not in by_b]
    only_b = [l.name for l in lb if l.name not in set(names_a)]
    differ = [f"{l.name}: {l.shape} vs {by_b[l.name].shape}" for l in la
              if l.name in by_b and l.shape != by_b[l.name].shape]
    if only_a or only_b or differ:
        parts = []
        if differ:
            parts.append(f"shapes differ: {preview(differ, 10, '; ')}")
        if only_a:
            parts.append(f"only in {net_a.name!r}: {', '.join(only_a[:10])}")
        if only_b:
            parts.append(f"only in {net_b.name!r}: {', '.join(only_b[:10])}")
        raise LayerMismatchError(f"{net_a.name!r} and {net_b.name!r} do not have the same architecture "
                                 f"({'; '.join(parts)}); pair layers by shape (pairing='shape') or "
                                 "explicitly (pairs='a=b,...')")
    return [(l, by_b[l.name]) for l in la]


def pairs_by_shape(net_a: Network, net_b: Network) -> list[tuple[Layer, Layer]]:
    """Each layer of a with the next unpaired layer of b of the same weight shape, in order."""
    la, lb = net_a.layers(), net_b.layers()
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
            f"correspond. {net_a.name}: {layer_listing(la)}. {net_b.name}: {layer_listing(lb)}. "
            "Pair layers explicitly with pairs='a=b,...' (filters of equal size) or compare activations only (CKA)")
    return out


def layer_listing(layers: Sequence[Layer], limit: int = 12) -> str:
    """``"name shape, ..."`` of at most ``limit`` layers, for error messages."""
    shown = ", ".join(f"{l.name} {l.shape}" for l in layers[:limit])
    return shown + (f" ... ({len(layers)} in all)" if len(layers) > limit else "")
