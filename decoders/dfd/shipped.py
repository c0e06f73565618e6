"""Deep Face Decoders trained by the project and shipped with it, loadable by name (``dfd-dlib-resnet29``).

:data:`DECODERS` is the registry (``decoders/dfd/weights/registry.json``, on the machinery of
:mod:`probes.shipped`); :func:`export_decoder` turns a training run into a shipped file (fp16
safetensors of the decoder, the run's config in its metadata, at most 8 MiB) beside
``NAME.split.json``, the run's split with every image path relative to the data folder, so the
evaluation of a shipped name runs on the people it never saw. :func:`decoder_state` reads what a
``--checkpoint`` names -- a shipped name, a shipped ``.safetensors`` file, a ``.pt`` checkpoint or a
run folder -- as a checkpoint dict (a name's file is checked against its pinned sha256 first).
"""

from __future__ import annotations

import json
from pathlib import Path

from probes.errors import UnknownNameError
from probes.outputs import write_json
from probes.shipped import ShippedRegistry, load_safetensors, save_fp16_safetensors
from probes.training.checkpoints import CheckpointError, load_checkpoint

from .model import DECODER_KIND

DECODERS = ShippedRegistry(Path(__file__).parent / "weights", "face decoder")
SHIPPED_SUFFIX = ".safetensors"
SPLIT_SUFFIX = ".split.json"


def split_file_for(weights_file: str | Path) -> Path:
    """The split file shipped beside ``weights_file`` (``NAME.safetensors`` -> ``NAME.split.json``)."""
    weights_file = Path(weights_file)
    return weights_file.with_name(weights_file.name.removesuffix(SHIPPED_SUFFIX) + SPLIT_SUFFIX)


def portable_split(split: dict, data_root: str | None) -> dict:
    """``split.json`` with every image path under ``data_root`` made relative to it (a shipped split names no
    machine's folders; :func:`decoders.dfd.inputs.rebase_paths` puts them under the data folder in use)."""
    root = Path(data_root).resolve() if data_root else None
    out = json.loads(json.dumps(split))
    for entry in out.get("parts", {}).values():
        for part in ("val", "test"):
            paths = (entry.get(part) or {}).get("paths")
            if not paths or root is None:
                continue
            relative = []
            for p in paths:
                try:
                    relative.append(str(Path(p).resolve().relative_to(root)))
                except ValueError:
                    relative.append(p)  # outside the data folder: kept as recorded
            entry[part]["paths"] = relative
    out["paths_relative_to"] = "the data folder (--data-root or $FACEPROBE_DATA)" if root else "as recorded"
    return out


def run_of(checkpoint_path: str | Path) -> Path:
    """The run folder of a checkpoint file (``RUN/checkpoints/x.pt`` -> ``RUN``)."""
    path = Path(checkpoint_path)
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def export_decoder(checkpoint: str | Path, out_file: str | Path) -> dict:
    """Write the decoder of ``checkpoint`` (a ``.pt`` file or run folder) to ``out_file`` (fp16 safetensors,
    at most 8 MiB) and its run's split beside it (:func:`split_file_for`); return the export's record.

    Raises CheckpointError for a checkpoint of another kind or a run without its ``split.json``, and
    :class:`probes.errors.WeightFileError` (nothing written) for a decoder over the size limit.
    """
    state = load_checkpoint(checkpoint, map_location="cpu")
    if state.get("kind") != DECODER_KIND:
        raise CheckpointError(f"{state['path']} holds a {state.get('kind')!r} run, not a {DECODER_KIND!r}")
    config = state.get("config") or {}
    data = dict(config.get("data") or {})
    split_in = run_of(state["path"]) / data.get("split_file", "split.json")
    if not split_in.is_file():
        raise CheckpointError(f"{split_in} does not exist: a shipped decoder carries its run's split (the people "
                              "it never saw), so ship a run folder of python -m decoders.train")
    try:
        split = json.loads(split_in.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{split_in} is not a readable split file: {exc}") from exc
    out_file = Path(out_file)
    split_out = split_file_for(out_file)
    portable = dict(config, data=dict(data, data_root="", split_file=split_out.name))
    metadata = {"kind": DECODER_KIND, "step": int(state.get("step", 0)), "config": portable}
    sha256 = save_fp16_safetensors(out_file, state["models"]["decoder"], metadata)
    write_json(split_out, portable_split(split, data.get("data_root")))
    return {"file": str(out_file), "sha256": sha256, "kind": DECODER_KIND, "step": metadata["step"],
            "bytes": out_file.stat().st_size, "config": portable, "split_file": split_out.name}


def shipped_state(path: str | Path) -> dict:
    """A shipped decoder file read back as a checkpoint dict (``kind``, ``step``, ``config``, ``models``,
    ``path``)."""
    tensors, metadata = load_safetensors(path)
    if metadata.get("kind") != DECODER_KIND or not isinstance(metadata.get("config"), dict):
        raise CheckpointError(f"{path} is not a shipped face decoder (kind {metadata.get('kind')!r})")
    return {"kind": DECODER_KIND, "step": int(metadata.get("step", 0)), "config": metadata["config"],
            "models": {"decoder": tensors}, "path": str(path)}


def decoder_state(checkpoint: str | Path) -> dict:
    """The checkpoint dict of what ``checkpoint`` names: a shipped decoder's name (its file checked against
    the registry's sha256 first; the dict's config then records ``shipped``), a shipped ``.safetensors`` file,
    a ``.pt`` checkpoint or a run folder. A name that is none of these lists the shipped ones."""
    if isinstance(checkpoint, str) and checkpoint in DECODERS:
        state = shipped_state(DECODERS.path(checkpoint))
        state["config"] = dict(state["config"], shipped=DECODERS.get(checkpoint).to_dict())
        return state
    path = Path(checkpoint).expanduser()
    if path.suffix == SHIPPED_SUFFIX:
        return shipped_state(path)
    if not path.exists() and len(path.parts) == 1 and not path.suffix:
        raise UnknownNameError(f"{checkpoint!r} is neither a shipped face decoder (shipped: "
                               f"{', '.join(DECODERS.names()) or 'none'}) nor an existing checkpoint or run folder")
    return load_checkpoint(path, map_location="cpu")
