"""Loading a trained Deep Face Decoder from its checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from probes.errors import FaceprobeError
from probes.training.checkpoints import CheckpointError, load_checkpoint

from .model import DecoderConfig, FaceDecoder

DECODER_KIND = "face-decoder"


def load_decoder(checkpoint: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a trained decoder: ``(decoder in eval mode, config dict)``.

    ``checkpoint`` is a ``.pt`` file or a run folder (its ``checkpoints/latest.pt``).
    ``config`` holds ``decoder`` (architecture), ``loss``, ``backbone`` (name,
    weights_id, embedding size), ``data`` and the run folder's split file.
    """
    state = load_checkpoint(checkpoint, map_location="cpu")
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
