"""Compiling a TF.js graph into a program: topological order, folded convolution chains, freeing values.

:class:`GraphProgram` is a mixin of :class:`~probes.tfjs_graph.TFJSGraph`; programs are cached per
requested outputs, taps and ``fuse`` setting (``invalidate`` forgets them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

from ..errors import WeightFileError
from .ops import FILTER_OPS
from .values import param_key

Step = tuple[str, Callable, tuple[str, ...]]  # (node name, fn, input names)


class FoldedChain(NamedTuple):
    """What follows a convolution and can be folded into it: the chain's last node and the folded parts."""

    end: str
    scale: str | None
    bias: str | None
    clamp: tuple[float, float] | None


class GraphProgram:
    """Turns requested nodes into a list of steps (see the module doc)."""

    def _order(self, roots: Iterable[str]) -> list[str]:
        """Topological order of ``roots`` and everything they read."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        for root in roots:
            stack = [(root, False)]
            while stack:
                name, expanded = stack.pop()
                if expanded:
                    state[name] = 2
                    order.append(name)
                    continue
                if state.get(name) == 2:
                    continue
                if state.get(name) == 1:
                    raise WeightFileError(f"{self.source}: the graph has a cycle through {name!r}")
                state[name] = 1
                stack.append((name, True))
                for ref in reversed(self._nodes[name].inputs):
                    if state.get(ref) != 2:
                        stack.append((ref, False))
        return order

    def _scalar_const(self, name: str) -> float | None:
        key = param_key(name)
        if self._nodes[name].op == "Const" and key in self.params and self.params[key].numel() == 1:
            return float(self.params[key].detach().reshape(()))
        return None

    def _per_channel_const(self, name: str, out_channels: int) -> bool:
        """Whether ``name`` is a float constant that scales or shifts each output channel (or all alike)."""
        key = param_key(name)
        return self._nodes[name].op == "Const" and key in self.params \
            and self.params[key].numel() in (1, out_channels) \
            and self.params[key].shape[-1:] in ((), (1,), (out_channels,))

    def _fold_chain(self, name: str, readers: dict[str, list[str]], in_program: set[str],
                    visible: set[str]) -> FoldedChain:
        """The per-channel Mul, Add and clamp nodes after convolution ``name`` that can be folded into it."""
        node = self._nodes[name]
        out_channels = self.params[param_key(node.inputs[1])].shape[0]
        scale = bias = None
        lo, hi = -math.inf, math.inf
        end = name
        # 0: scale allowed, 1: bias allowed, 2: clamps only (a fused conv has its own bias/activation)
        stage = 2 if node.op.startswith(("_", "Fused")) else 0
        while end not in visible and len(readers.get(end, [])) == 1:
            nxt = self._nodes[readers[end][0]]
            if nxt.name not in in_program:
                break
            other = [r for r in nxt.inputs if r != end]
            if nxt.op in ("Relu", "Relu6"):
                lo, hi = max(lo, 0.0), max(hi, 0.0)
                if nxt.op == "Relu6":
                    hi = min(hi, 6.0)
                stage = 2
            elif nxt.op in ("Minimum", "Maximum") and len(other) == 1 and len(nxt.inputs) == 2 \
                    and self._scalar_const(other[0]) is not None:
                c = self._scalar_const(other[0])
                lo, hi = (lo, min(hi, c)) if nxt.op == "Minimum" else (max(lo, c), max(hi, c))
                stage = 2
            elif nxt.op in ("Mul", "Add", "AddV2", "BiasAdd") and len(nxt.inputs) == 2 and len(other) == 1 \
                    and self._per_channel_const(other[0], out_channels) and stage < (1 if nxt.op == "Mul" else 2):
                if nxt.op == "Mul":
                    scale, stage = other[0], 1
                else:
                    bias, stage = other[0], 2
            else:
                break
            end = nxt.name
        clamp = None if (lo, hi) == (-math.inf, math.inf) else (lo, hi)
        return FoldedChain(end, scale, bias, clamp)

    def _fuse(self, order: list[str], visible: set[str]) -> dict[str, tuple[str, Callable, tuple[str, ...]]]:
        """Fold a convolution's following per-channel Mul, Add and clamp chain into one step.

        Keras exports batch norm as Mul + Add after the convolution and ReLU6
        as Relu, Minimum(6), Maximum(0): four passes over each activation that
        one convolution with a scaled filter, a bias and a clamp replace. A node
        is folded only when the convolution chain is its sole reader and it is
        neither requested nor tapped (``visible``), so every value a caller can
        see is the graph's own. Returns {last node of chain: (first node, fn, inputs)};
        the chain's inner nodes are dropped from the program.
        """
        in_program = set(order)
        readers: dict[str, list[str]] = {}
        for name in order:
            for ref in self._nodes[name].inputs:
                readers.setdefault(ref, []).append(name)
        fused: dict[str, tuple[str, Callable, tuple[str, ...]]] = {}
        for name in order:
            node = self._nodes[name]
            if node.op not in FILTER_OPS or node.inputs[1] not in self._const_layout:
                continue
            chain = self._fold_chain(name, readers, in_program, visible)
            if chain.end == name:
                continue
            fn = self._conv(node, depthwise=FILTER_OPS[node.op] == "depthwise",
                            fused=node.op.startswith(("_", "Fused")),
                            scale=chain.scale, bias=chain.bias, clamp=chain.clamp)
            extra = tuple(r for r in (chain.scale, chain.bias) if r is not None)
            fused[chain.end] = (name, fn, node.inputs + extra)
        return fused

    def _fold_steps(self, steps: list[Step], order: list[str], visible: set[str]) -> list[Step]:
        """``steps`` with each foldable chain run as one step at its last node (its inner nodes dropped)."""
        fused = self._fuse(order, visible)
        chain_members: dict[str, str] = {}
        for end, (start, _, _) in fused.items():
            node = end
            while True:
                chain_members[node] = end
                if node == start:
                    break
                node = next(r for r in self._nodes[node].inputs
                            if self._nodes[r].op != "Const")
        hidden = {n for n, end in chain_members.items() if n != end}
        return [(name, fused[name][1], fused[name][2]) if name in fused else (name, fn, inputs)
                for name, fn, inputs in steps if name not in hidden]

    def _program(self, targets: tuple[str, ...]) -> list[tuple[str, Callable, tuple[str, ...], tuple[str, ...]]]:
        """Steps computing ``targets`` and the taps: (name, fn, inputs, values to free after it)."""
        key = (targets, tuple(self._taps), self.fuse)
        if key in self._programs:
            return self._programs[key]
        order = self._order((*targets, *self._taps))
        steps = [(name, self._ops.get(name), self._nodes[name].inputs) for name in order]
        if self.fuse:
            steps = self._fold_steps(steps, order, set(targets) | set(self._taps))
        keep = set(targets)
        last_use: dict[str, int] = {}
        for step, (_, _, inputs) in enumerate(steps):
            for ref in inputs:
                last_use[ref] = step
        free_after: dict[int, list[str]] = {}
        for name, step in last_use.items():
            if name not in keep and self._nodes[name].op != "Const":
                free_after.setdefault(step, []).append(name)
        program = [(name, fn, inputs, tuple(free_after.get(step, ()))) for step, (name, fn, inputs) in enumerate(steps)]
        self._programs[key] = program
        return program
