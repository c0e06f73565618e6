"""Reading weight files: state dicts, user-supplied files, and loading named tensors into a network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import WeightFileError, preview


def user_weights_required(name: str, release: str, formats: str) -> WeightFileError:
    """The error for ``create_backbone(name)`` without a weights file."""
    return WeightFileError(
        f"backbone {name!r} needs weights=PATH: its weights are the user's to bring (faceprobe "
        f"never downloads them). Get {release}. Accepted formats: {formats}. Or pass "
        f"pretrained=False for random weights.")


def existing_file(path: Path, name: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"weight file {path} for backbone {name!r} does not exist")
    return path


def read_torch_state(path: Path) -> dict[str, torch.Tensor]:
    """A PyTorch state dict read with ``weights_only=True`` (no code runs).

    A leading ``module.`` (saved from DataParallel/DDP) is stripped; a
    training checkpoint that wraps the weights (``state_dict``, or
    arcface_torch's ``state_dict_backbone``) is unwrapped.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or non-tensor files
        raise WeightFileError(
            f"{path} is not a readable PyTorch state dict (torch.load weights_only=True: {exc}); "
            f"save the weights with torch.save(model.state_dict(), path)") from exc
    for wrapper in ("state_dict_backbone", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightFileError(f"{path} does not hold a state dict of named tensors "
                              f"(got {type(state).__name__})")
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def with_default_counters(net: nn.Module, tensors: Mapping) -> dict:
    """Add BatchNorm ``num_batches_tracked`` counters a converted file lacks.

    Caffe/MatConvNet conversions never had them; they do not affect inference.
    """
    counters = {k: v for k, v in net.state_dict().items() if k.endswith("num_batches_tracked")}
    return {**counters, **tensors}


def load_named_tensors(net: nn.Module, tensors: Mapping[str, torch.Tensor | np.ndarray], source: str,
                       ignore: Sequence[str] = ()) -> None:
    """Copy ``tensors`` into ``net``'s state dict, checking names and shapes.

    Any missing key, unexpected key or shape mismatch raises one
    :class:`WeightFileError` that names the file and the offending keys.
    """
    state = net.state_dict()
    tensors = {k: v for k, v in tensors.items() if k not in ignore}
    missing = sorted(set(state) - set(tensors))
    unexpected = sorted(set(tensors) - set(state))
    wrong = [f"{k}: file {tuple(np.shape(tensors[k]))} vs model {tuple(state[k].shape)}"
             for k in state if k in tensors and tuple(np.shape(tensors[k])) != tuple(state[k].shape)]
    problems = [f"{what} {preview(items, 8, None)}" for what, items in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)) if items]
    if problems:
        raise WeightFileError(f"{source}: does not fit {type(net).__name__}: " + "; ".join(problems))
    net.load_state_dict({k: torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v)
                         .to(state[k].dtype) for k, v in tensors.items()})
