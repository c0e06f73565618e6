"""Shipped Deep Face Decoders: export a run, ship it under a name, load it by name wherever a checkpoint goes.

- ``decoders.dfd.shipped``: fp16 export with the run's config and a portable split (paths relative to the
  data folder), the 8 MiB limit (nothing written above it), a sha256 check before every load;
- ``python -m decoders.ship_decoder``: the registry entry (command without local paths, steps, data, licence);
- ``decoders.load_decoder(name)``, ``decoders.reconstruct --checkpoint NAME``: the same faces as the run's
  checkpoint (to fp16 precision), on the run's held-out images; unknown names list the shipped ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_reconstruct_evaluate import tiny_run  # noqa: F401 (fixture)

import decoders
from decoders import ship_decoder
from decoders.dfd import shipped
from decoders.dfd.checkpoint import load_decoder
from decoders.dfd.model import DecoderConfig, FaceDecoder
from decoders.dfd.scoring import decode
from decoders.reconstruct import main as reconstruct_main
from probes.errors import UnknownNameError, WeightFileError
from probes.shipped import MAX_SHIPPED_BYTES, ShippedRegistry, training_record
from probes.training.checkpoints import CheckpointError


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """An empty registry in a temporary folder in place of ``decoders/dfd/weights``."""
    reg = ShippedRegistry(tmp_path / "shipped", "face decoder")
    for module in (shipped, ship_decoder):
        monkeypatch.setattr(module, "DECODERS", reg)
    return reg


def test_ship_load_by_name_and_reconstruct(tiny_run, registry, tmp_path, capsys):  # noqa: F811 (fixture)
    run = tiny_run["run"]
    assert ship_decoder.main([str(run), "--name", "dfd-tiny", "--description", "a 2-step test decoder"]) == 0
    assert "shipped dfd-tiny" in capsys.readouterr().out
    entry = registry.get("dfd-tiny")
    assert entry.kind == "face-decoder" and entry.training["steps"] == 2
    assert entry.training["bytes"] == (registry.folder / entry.file).stat().st_size < MAX_SHIPPED_BYTES
    assert entry.command.startswith("python -m decoders.train")  # its flags: test_training_record_drops_local_paths
    assert "LFW" in entry.licence and "CC0" in entry.licence and entry.extra["backbone"]["name"] == "dlib-resnet29"
    # The held-out images travel as paths relative to the data folder.
    split = json.loads((registry.folder / entry.extra["split_file"]).read_text())["parts"]["lfw"]
    assert split["test"]["paths"] == [p.removeprefix(f"{tiny_run['data_root']}/") for p in tiny_run["split"]["test"]
                                      ["paths"]]
    assert not any(p.startswith("/") for p in split["test"]["paths"])

    # By name (the sha256 checked), from Python: the run's faces to fp16 precision.
    by_name, config = decoders.load_decoder("dfd-tiny")
    from_run, _ = load_decoder(run)
    templates = np.random.default_rng(0).normal(size=(4, 128)).astype(np.float32)
    a, b = decode(by_name, templates), decode(from_run, templates)
    assert a.shape == (4, 3, 32, 32) and (a - b).abs().max() < 2e-2
    assert config["shipped"]["name"] == "dfd-tiny" and config["step"] == 2

    # By name on the command line: the run's held-out images, found under --data-root.
    out = tmp_path / "recon"
    assert reconstruct_main(["--checkpoint", "dfd-tiny", "--dataset", "lfw", "--split", "test", "--data-root",
                             str(tiny_run["data_root"]), "--cache-dir", str(tiny_run["cache"]), "--no-lpips",
                             "--no-progress", "--out", str(out)]) == 0
    assert len(list((out / "reconstructions").glob("*.png"))) == len(split["test"]["paths"])

    # A changed file is refused before it is read, in one line naming the file and both hashes.
    weights = registry.folder / entry.file
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    with pytest.raises(WeightFileError, match=r"dfd-tiny.*has sha256 .*, the registry pins"):
        decoders.load_decoder("dfd-tiny")
    capsys.readouterr()
    assert reconstruct_main(["--checkpoint", "dfd-tiny", "--templates", str(tmp_path / "none.npy"),
                             "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "the registry pins" in err and len(err.strip().splitlines()) == 1


def test_unknown_names_and_other_files_are_refused(tiny_run, registry, tmp_path, capsys):  # noqa: F811
    with pytest.raises(UnknownNameError, match=r"'dfd-nope' is neither a shipped face decoder \(shipped: none\)"):
        load_decoder("dfd-nope")
    shipped.export_decoder(tiny_run["run"], tmp_path / "d.safetensors")  # a file loads without a registry entry
    assert load_decoder(tmp_path / "d.safetensors")[0].config.image_size == 32
    from probes.shipped import save_fp16_safetensors

    save_fp16_safetensors(tmp_path / "other.safetensors", {"w": torch.zeros(2)}, {"kind": "ipcgan", "config": {}})
    with pytest.raises(CheckpointError, match="is not a shipped face decoder"):
        load_decoder(tmp_path / "other.safetensors")
    assert ship_decoder.main([str(tmp_path), "--name", "x", "--description", "d"]) == 2  # not a finished run
    assert "not a finished run of python -m decoders.train (no config.json)" in capsys.readouterr().err
    assert ship_decoder.main([str(tiny_run["run"]), "--name", "a/b", "--description", "d"]) == 2
    assert "give a plain name" in capsys.readouterr().err


def test_a_decoder_over_8_mib_is_refused_and_nothing_is_written(tiny_run, tmp_path):  # noqa: F811
    run = tmp_path / "big"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_run["run"] / "split.json", run / "split.json")
    state = torch.load(tiny_run["run"] / "checkpoints" / "latest.pt", weights_only=True)
    big = DecoderConfig(embedding_size=1024, image_size=112)  # HSE's 1024-D templates at 112 px: about 26 MiB
    state["models"]["decoder"] = FaceDecoder(big).state_dict()
    state["config"] = dict(state["config"], decoder=big.to_dict())
    torch.save(state, run / "checkpoints" / "latest.pt")
    with pytest.raises(WeightFileError, match=r"25\.\d MiB of fp16 weights exceed the 8 MiB limit"):
        shipped.export_decoder(run, tmp_path / "out" / "big.safetensors")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # The same decoder at width 0.75 and 128 px fits (6.7 MiB).
    fits = DecoderConfig(embedding_size=1024, image_size=128, width=0.75)
    state["models"]["decoder"] = FaceDecoder(fits).state_dict()
    state["config"] = dict(state["config"], decoder=fits.to_dict())
    torch.save(state, run / "checkpoints" / "latest.pt")
    record = shipped.export_decoder(run, tmp_path / "fits.safetensors")
    assert 6 * 2**20 < record["bytes"] < MAX_SHIPPED_BYTES and (tmp_path / "fits.split.json").is_file()


def test_training_record_drops_local_paths():
    config = {"command": ["/x/.venv/bin/python", "-m", "decoders.train", "--data-root", "/data", "--steps", "5",
                          "--cache-dir=/tmp/c", "--out", "runs/a b"]}
    command, training = training_record(config, {"step": 5, "train_time_s": 90}, 10)
    assert command == "python -m decoders.train --steps 5 --out 'runs/a b'"
    assert training["minutes"] == 1.5 and training["bytes"] == 10 and training["steps"] == 5


def test_the_decoder_learns_the_colour_of_its_targets():
    """The decoder's three output channels follow the data: fitted to colour chips it draws colour."""
    torch.manual_seed(0)
    decoder = FaceDecoder(DecoderConfig(embedding_size=16, image_size=32, width=0.25))
    templates = torch.randn(4, 16)
    colours = torch.tensor([[0.9, 0.2, 0.1], [0.1, 0.8, 0.2], [0.2, 0.3, 0.9], [0.5, 0.5, 0.5]])
    targets = colours[:, :, None, None].expand(4, 3, 32, 32)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        (decoder(templates) - targets).abs().mean().backward()
        optimiser.step()
    drawn = decode(decoder, templates.numpy()).mean((2, 3))
    assert (drawn - colours).abs().max() < 0.1  # red, green, blue and gray faces, each in its own colour


def test_rebase_paths_keeps_existing_relative_paths_and_moves_missing_ones(tmp_path, monkeypatch):
    from decoders.dfd.inputs import rebase_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "lfw_home").mkdir(parents=True)
    (tmp_path / "data" / "lfw_home" / "a.jpg").write_bytes(b"x")
    (tmp_path / "moved" / "lfw_home").mkdir(parents=True)
    (tmp_path / "moved" / "lfw_home" / "b.jpg").write_bytes(b"x")
    # A run trained with a relative --data-root records relative paths that exist as they are.
    assert rebase_paths(["data/lfw_home/a.jpg"], "data", "data") == [Path("data/lfw_home/a.jpg")]
    # Missing under the recorded root: moved under the new root.
    assert rebase_paths(["data/lfw_home/b.jpg"], "data", "moved") == [Path("moved/lfw_home/b.jpg")]
    # A shipped split: relative to the data root.
    assert rebase_paths(["lfw_home/b.jpg"], None, "moved") == [Path("moved/lfw_home/b.jpg")]
