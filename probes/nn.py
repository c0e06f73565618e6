"""Small PyTorch helpers shared across probes."""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn

from .errors import FaceprobeError


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
