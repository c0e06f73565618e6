"""Aging generators trained by the project and shipped with it, loadable by name (``ipcgan-utkface``).

:data:`GENERATORS` is the registry (``decoders/aging/weights/registry.json``);
:func:`export_generator` turns a training checkpoint into a shipped file
(fp16 safetensors of the networks that age a face, the checkpoint's config in
its metadata), and :func:`generator_state` reads one back into the checkpoint
form that each GAN's ``from_checkpoint`` takes. The faces held out of training
are listed in a text file beside the weights, so the audit judges a shipped
generator on faces it never saw.
"""

from __future__ import annotations

from pathlib import Path

from probes.shipped import ShippedRegistry, load_safetensors, save_fp16_safetensors
from probes.training.checkpoints import CheckpointError, load_checkpoint

GENERATORS = ShippedRegistry(Path(__file__).parent / "weights", "aging generator")
# The networks a shipped file keeps per GAN kind: what ageing a face needs, nothing of training.
EXPORTED_NETWORKS: dict[str, tuple[str, ...]] = {
    "ipcgan": ("g_ema",),
    "agecgan": ("generator_ema", "encoder"),
}


def export_generator(checkpoint: str | Path, out_file: str | Path) -> dict:
    """Write the aging networks of ``checkpoint`` to ``out_file`` (fp16 safetensors); return its record.

    Raises CheckpointError for a checkpoint of an unknown kind or without the networks.
    """
    state = load_checkpoint(checkpoint, map_location="cpu")
    kind = state.get("kind")
    if kind not in EXPORTED_NETWORKS:
        raise CheckpointError(f"{state['path']} holds a {kind!r} run; shippable kinds: "
                              f"{', '.join(sorted(EXPORTED_NETWORKS))}")
    tensors = {}
    for network in EXPORTED_NETWORKS[kind]:
        if network not in state["models"]:
            raise CheckpointError(f"{state['path']} has no {network!r} weights")
        tensors.update({f"{network}.{k}": v for k, v in state["models"][network].items()})
    metadata = {"kind": kind, "step": int(state.get("step", 0)), "config": state.get("config", {})}
    sha256 = save_fp16_safetensors(out_file, tensors, metadata)
    return {"file": str(out_file), "sha256": sha256, "kind": kind, "step": metadata["step"],
            "bytes": Path(out_file).stat().st_size, "config": metadata["config"]}


def generator_state(path: str | Path) -> dict:
    """A shipped file read back as a checkpoint dict (``kind``, ``step``, ``config``, ``models``, ``path``)."""
    tensors, metadata = load_safetensors(path)
    kind = metadata.get("kind")
    if kind not in EXPORTED_NETWORKS:
        raise CheckpointError(f"{path} is not a shipped aging generator (kind {kind!r}; known: "
                              f"{', '.join(sorted(EXPORTED_NETWORKS))})")
    models: dict[str, dict] = {network: {} for network in EXPORTED_NETWORKS[kind]}
    for key, value in tensors.items():
        network, _, name = key.partition(".")
        if network not in models:
            raise CheckpointError(f"{path}: unexpected tensor {key!r} for a {kind} generator")
        models[network][name] = value
    return {"kind": kind, "step": int(metadata.get("step", 0)), "config": metadata.get("config", {}),
            "models": models, "path": str(path)}


def heldout_faces(name: str) -> set[str] | None:
    """File names of the faces shipped generator ``name`` never saw in training (None when not recorded)."""
    entry = GENERATORS.get(name)
    listing = entry.extra.get("heldout_file")
    if not listing:
        return None
    path = GENERATORS.folder / listing
    if not path.is_file():
        raise CheckpointError(f"shipped aging generator {name!r}: its held-out list {path} is missing")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}
