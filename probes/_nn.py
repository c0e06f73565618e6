"""Small PyTorch helpers shared across probes."""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(module: nn.Module):
    """Eval mode inside the block; the module's earlier train/eval state comes back afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
