"""Small PyTorch helpers shared across probes."""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from .errors import FaceprobeError
from .tfjs_graph import TFJSGraph

# Modules whose own ``reset_parameters`` covers only themselves (a network's own is trusted to reset all of it).
FILTER_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                  nn.Linear)


@contextmanager
def evaluating(module: nn.Module):
    """Eval mode inside the block; the module's earlier train/eval state comes back afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


class LayerOutputs(dict):
    """What :func:`recording` fills: layer name -> reduced output of the latest forward pass."""

    def check_complete(self, names, owner: str) -> None:
        """Raise when a layer in ``names`` produced no output (it is not on the forward path)."""

        silent = [n for n in names if n not in self]
        if silent:
            raise FaceprobeError(f"layer(s) {', '.join(silent)} of {owner} produced no output in its forward pass")


@contextmanager
def recording(modules, reduce, owner: str):
    """Forward hooks on ``modules`` ({name: module}) storing ``reduce(name, output)``; removed in ``finally``.

    Clear the yielded :class:`LayerOutputs` between batches. A layer that runs twice in
    one pass is an error: its output would be ambiguous.
    """

    out = LayerOutputs()

    def make_hook(name: str):
        def hook(module, inputs, output):
            if name in out:
                raise FaceprobeError(f"layer {name!r} of {owner} runs more than once per forward pass; "
                                     "its output is ambiguous")
            out[name] = reduce(name, output[0] if isinstance(output, (tuple, list)) else output)
        return hook

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield out
    finally:
        for handle in handles:
            handle.remove()


def reinitialised_copy(module: nn.Module, seed: int | None = None,
                       error: type[FaceprobeError] = FaceprobeError) -> nn.Module:
    """A deep copy re-initialised under ``seed`` (None: the current random state): the module's own
    ``reset_parameters`` when it has one (it must then reset everything), else every submodule's; warns
    about parameters nothing resets. A module holding a TF.js graph raises ``error``."""
    graphs = [name or "(the module itself)" for name, sub in module.named_modules() if isinstance(sub, TFJSGraph)]
    if graphs:
        # A TFJSGraph's compiled ops hold on to the graph they were built for, so a deep copy would
        # still compute with the original's weights; only rebuilding from the file makes a true twin.
        raise error(f"{type(module).__name__} holds TF.js graph(s) ({', '.join(graphs)}), which cannot "
                    "be copied and re-initialised; register the graph as a backbone (its builder makes "
                    "the random twin) or compare it without a baseline")
    twin = copy.deepcopy(module)
    covered: set[int] = set()
    with torch.random.fork_rng(devices=[]) if seed is not None else nullcontext():
        if seed is not None:
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
