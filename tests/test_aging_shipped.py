"""Shipped aging generators and the pretrained age reader of IPCGAN's age loss.

- ``probes.shipped``: fp16 safetensors with JSON metadata, the size limit, a registry whose sha256 check
  refuses a changed file, unknown names listing the known ones;
- ``decoders.aging.shipped``: a checkpoint exported and loaded back ages faces like the checkpoint (to fp16
  precision), by file and by registered name, with its held-out faces;
- ``decoders.aging.age_reader``: differentiable readings, augmentation that keeps the face, the losses;
- IPCGAN with an age reader: the loss terms appear, training and resume stay exact (the sex cache too).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_aging_ipcgan import TINY, fit, one_thread, settings, synthetic_faces, tiny_task  # noqa: F401 (fixture)
from torch import nn

from decoders.aging import IPCGAN_GROUPS, AgingError
from decoders.aging.age_reader import AgeReader, age_reading_loss, random_views, sex_keeping_loss
from decoders.aging.ipcgan import IPCGANConfig, IPCGANModel
from decoders.aging.models import load_aging_model
from decoders.aging.shipped import export_generator, generator_state, heldout_faces
from decoders.audit.faces import FaceSelection
from probes.errors import UnknownNameError, WeightFileError
from probes.shipped import ShippedRegistry, ShippedWeights, file_sha256, load_safetensors, save_fp16_safetensors
from probes.training.checkpoints import CheckpointError
from probes.training.data import ArrayData
from probes.training.trainer import Trainer


class TinyAgeNet(nn.Module):
    """A stand-in age labeller: ``module(x, layout)`` -> (age in years from brightness, sex logits)."""

    name = "tiny-age"
    weights_id = "tiny-age-v1"

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(80.0))

    def forward(self, x, layout="utkface"):
        brightness = x.mean((1, 2, 3))
        red = x[:, 0].mean((1, 2)) - x[:, 2].mean((1, 2))
        return self.scale * brightness, torch.stack([red * 10, -red * 10], 1)


# --------------------------------------------------------------------------- probes.shipped

def test_fp16_safetensors_round_trip_limit_and_registry(tmp_path):
    tensors = {"a.weight": torch.randn(4, 3), "a.steps": torch.tensor([3], dtype=torch.int64)}
    sha = save_fp16_safetensors(tmp_path / "w.safetensors", tensors, {"kind": "x", "config": {"k": 1}})
    assert sha == file_sha256(tmp_path / "w.safetensors")
    back, meta = load_safetensors(tmp_path / "w.safetensors")
    assert meta == {"kind": "x", "config": {"k": 1}}
    assert back["a.weight"].dtype == torch.float32 and back["a.steps"].dtype == torch.int64
    assert torch.allclose(back["a.weight"], tensors["a.weight"].half().float())
    with pytest.raises(WeightFileError, match="exceed the 0 MiB limit"):
        save_fp16_safetensors(tmp_path / "big.safetensors", tensors, {}, max_bytes=100)
    assert not (tmp_path / "big.safetensors").exists()
    (tmp_path / "junk.safetensors").write_bytes(b"not a file at all")
    with pytest.raises(WeightFileError, match="junk.safetensors is not a readable safetensors"):
        load_safetensors(tmp_path / "junk.safetensors")

    registry = ShippedRegistry(tmp_path, "test weights")
    assert registry.names() == [] and "w" not in registry
    with pytest.raises(UnknownNameError, match="unknown test weights .w.; shipped: none"):
        registry.get("w")
    registry.add(ShippedWeights("w", "x", "w.safetensors", sha, "d", "data", "cmd", {"steps": 1}))
    assert registry.names() == ["w"] and registry.path("w") == tmp_path / "w.safetensors"
    with pytest.raises(UnknownNameError, match="shipped: w"):
        registry.get("v")
    (tmp_path / "w.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:-1] + b"\0")
    with pytest.raises(WeightFileError, match="has sha256 .* the registry pins"):
        registry.path("w")


# --------------------------------------------------------------------------- the age reader

def test_age_reader_is_differentiable_and_augmentation_keeps_the_face():
    reader = AgeReader(TinyAgeNet(), frame=64)
    x = torch.full((3, 3, 32, 32), 0.5, requires_grad=True)
    age, p_male = reader(x)
    assert age.shape == (3,) and torch.allclose(age, torch.full((3,), 40.0), atol=1e-4)
    assert torch.allclose(p_male, torch.full((3,), 0.5))
    age_reading_loss(age, torch.tensor([20.0, 40.0, 60.0])).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in reader.parameters())
    # A random view of a smooth, mirror-symmetric face moves it a little, never to another face.
    face = torch.linspace(0, 1, 32).view(1, 1, 32, 1).expand(2, 3, 32, 32).contiguous()
    view = random_views(face, torch.Generator().manual_seed(0))
    assert view.shape == face.shape and 0 < (view - face).abs().mean() < 0.2
    assert reader.describe()["weights_id"] == "tiny-age-v1"


def test_reading_and_sex_losses():
    assert age_reading_loss(torch.tensor([20.0, 50.0]), torch.tensor([25.0, 45.0])) == pytest.approx(5.0)
    same = sex_keeping_loss(torch.tensor([0.99, 0.01]), torch.tensor([0.99, 0.01]))
    flipped = sex_keeping_loss(torch.tensor([0.01, 0.99]), torch.tensor([0.99, 0.01]))
    assert same < 0.1 < 4 < flipped


def test_ipcgan_config_needs_a_reader_for_its_weights():
    with pytest.raises(AgingError, match="need an age_reader"):
        IPCGANConfig(**TINY, age_regression=0.3)
    assert IPCGANConfig(**TINY, age_reader="faceapi-agegender", age_regression=0.3).uses_age_reader
    assert not IPCGANConfig(**TINY).uses_age_reader


def test_ipcgan_with_an_age_reader_trains_and_resumes_exactly(tmp_path, monkeypatch):
    from decoders.aging.ipcgan import task as task_module

    monkeypatch.setattr(task_module, "AgeReader", lambda name, device="cpu": AgeReader(TinyAgeNet(), frame=64))

    def fit_with_reader(out, steps, resume=False, seed=0):
        faces = synthetic_faces()
        task, train = tiny_task(faces, seed, age_reader="tiny-age", age_regression=0.1, sex_keep=1.0)
        data = ArrayData(images=train.images, group=train.group, index=torch.arange(len(train)))
        result = Trainer(task, data, out, settings(steps, sample_every=0), resume=resume).fit()
        return task, result

    straight, _ = fit_with_reader(tmp_path / "a", 6)
    rows = (tmp_path / "a" / "log.csv").read_text().splitlines()
    assert "age_years_l1" in rows[0] and "sex_keep" in rows[0]
    assert straight.config()["age_reader"]["name"] == "tiny-age"
    assert straight.sex_cache.known.any()
    fit_with_reader(tmp_path / "b", 3)
    resumed, result = fit_with_reader(tmp_path / "b", 6, resume=True, seed=5)
    assert result.step == 6
    for name, model in straight.models.items():
        for key, value in model.state_dict().items():
            assert torch.equal(value, resumed.models[name].state_dict()[key]), f"{name}.{key}"
    assert torch.equal(straight.sex_cache.values, resumed.sex_cache.values)
    validation = straight.validate(6)
    readings = [validation[f"val_reader_age_g{t}"] for t in range(len(IPCGAN_GROUPS))]
    assert all(np.isfinite(readings))


# --------------------------------------------------------------------------- shipped generators

def test_exported_generator_ages_like_its_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    fit(run, 4)
    record = export_generator(run, tmp_path / "g.safetensors")
    assert record["kind"] == "ipcgan" and record["step"] == 4 and record["bytes"] < 8 * 2**20
    state = generator_state(tmp_path / "g.safetensors")
    assert set(state["models"]) == {"g_ema"}
    faces = synthetic_faces(4, seed=2).images
    original = load_aging_model(run).age(faces, 3).astype(int)
    shipped = load_aging_model(tmp_path / "g.safetensors")
    assert isinstance(shipped, IPCGANModel) and shipped.step == 4
    assert np.abs(shipped.age(faces, 3).astype(int) - original).max() <= 2  # fp16 weights

    # By name, through a registry (the shipped one is swapped for a temporary folder).
    registry = ShippedRegistry(tmp_path, "aging generator")
    (tmp_path / "g.heldout.txt").write_text("face1.jpg\nface2.jpg\n")
    registry.add(ShippedWeights("tiny-ipcgan", "ipcgan", "g.safetensors", record["sha256"], "tiny", "synthetic",
                                "pytest", extra={"heldout_file": "g.heldout.txt"}))
    from decoders.aging import models
    from decoders.aging import shipped as shipped_module
    from decoders.audit import faces as faces_module
    from decoders.audit import sources

    for module in (models, shipped_module, sources, faces_module):
        monkeypatch.setattr(module, "GENERATORS", registry)
    named = sources.load_generator("tiny-ipcgan")
    assert np.array_equal(named.age(faces, 3), shipped.age(faces, 3))
    assert heldout_faces("tiny-ipcgan") == {"face1.jpg", "face2.jpg"}
    plan = faces_module._plan(FaceSelection(), named, "tiny-ipcgan")
    assert plan[0] == {"face1.jpg", "face2.jpg"} and "tiny-ipcgan" in plan[1]

    other = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
    torch.save({**other, "kind": "dfd"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="holds a 'dfd' run; shippable kinds: agecgan, ipcgan"):
        export_generator(tmp_path / "other.pt", tmp_path / "x.safetensors")
    save_fp16_safetensors(tmp_path / "bad.safetensors", {"w": torch.zeros(2)}, {"kind": "nope"})
    with pytest.raises(CheckpointError, match="not a shipped aging generator"):
        load_aging_model(tmp_path / "bad.safetensors")
    assert json.loads((tmp_path / "registry.json").read_text())["tiny-ipcgan"]["sha256"] == record["sha256"]
