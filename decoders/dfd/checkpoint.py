"""Loading a trained Deep Face Decoder: a run's checkpoint, or a shipped decoder by name."""

from __future__ import annotations

from pathlib import Path

import torch

from probes.errors import FaceprobeError
from probes.training.checkpoints import CheckpointError

from .model import DECODER_KIND, DecoderConfig, FaceDecoder
from .shipped import decoder_state

__all__ = ["DECODER_KIND", "load_decoder"]


def load_decoder(checkpoint: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a trained decoder: ``(decoder in eval mode, config dict)``.

    ``checkpoint`` is the name of a shipped decoder (``dfd-dlib-resnet29``; see
    :data:`decoders.dfd.shipped.DECODERS`), a shipped ``.safetensors`` file, a ``.pt`` file or a run
    folder (its ``checkpoints/latest.pt``). ``config`` holds ``decoder`` (architecture), ``loss``,
    ``backbone`` (name, weights_id, embedding size), ``data`` and the run folder's split file (for a
    shipped decoder: ``NAME.split.json`` beside its weights, and ``shipped``: its registry entry).
    """
    state = decoder_state(checkpoint)
    if state.get("kind") != DECODER_KIND:
        raise CheckpointError(f"{state['path']} holds a {state.get('kind')!r} run, not a {DECODER_KIND!r}")
    config = state["config"]
    try:
        decoder = FaceDecoder(DecoderConfig.from_dict(config["decoder"]))
        decoder.load_state_dict(state["models"]["decoder"])
    except (KeyError, RuntimeError, FaceprobeError) as exc:
        raise CheckpointError(f"{state['path']}: decoder weights do not fit its config: {exc}") from exc
    config = dict(config, step=state["step"], checkpoint=state["path"])
    return decoder.to(device).eval(), config
