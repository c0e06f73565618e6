"""IPCGAN and the shared aging-GAN blocks: shapes, training through the Trainer, bit-exact resume,
checkpoint round trips (also from a fresh process), the CLI, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from decoders.aging import IPCGAN_GROUPS, AgingError, AgingModel
from decoders.aging.blocks import condition_maps, ema_copy, lsgan_d_loss, lsgan_g_loss, update_ema
from decoders.aging.classifier import AgeGroupClassifier, load_age_classifier, train_age_classifier
from decoders.aging.data import AgingFaces
from decoders.aging.identity import EmbeddingCache, IdentityFeatures
from decoders.aging.ipcgan import (
    IPCGANConfig,
    IPCGANDiscriminator,
    IPCGANGenerator,
    IPCGANModel,
    build_task,
    from_checkpoint,
    load_ipcgan,
)
from decoders.aging.models import load_aging_model
from probes.training.checkpoints import CheckpointError, atomic_save, load_checkpoint, seed_everything
from probes.training.data import ArrayData
from probes.training.trainer import Trainer, TrainerSettings

REPO = Path(__file__).resolve().parents[1]
TINY = {"g_width": 4, "g_blocks": 1, "d_width": 4, "identity_backbone": "tiny-face", "classifier_width": 4}


class TinyFace(nn.Module):
    """A stand-in face model: ``module(x, layout)`` -> 8-D embeddings; records the input size."""

    name = "tiny-face"
    weights_id = "tiny-face-v1"

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(7)  # fixed weights, like a pretrained model's, whatever the caller's seed
            self.conv = nn.Conv2d(3, 8, 5, stride=4)
        self.seen: list[tuple[int, int]] = []

    def forward(self, x, layout="utkface"):
        self.seen.append(tuple(x.shape[-2:]))
        return F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1)


def synthetic_faces(n: int = 40, size: int = 64, seed: int = 0) -> AgingFaces:
    """Smooth random 'faces' whose brightness grows with the age group (so a classifier can learn it)."""
    rng = np.random.default_rng(seed)
    group = np.arange(n) % len(IPCGAN_GROUPS)
    base = rng.random((n, 3, 8, 8)).astype(np.float32) * 0.5 + (group[:, None, None, None] * 0.1)
    up = F.interpolate(torch.from_numpy(base), size=(size, size), mode="bilinear", align_corners=False)
    images = (up.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    ages = np.array(IPCGAN_GROUPS.lower, float)[group] + 2
    return AgingFaces(images, ages, np.zeros(n, np.int64), np.zeros(n, np.int64), group, IPCGAN_GROUPS,
                      [f"face{i}.jpg" for i in range(n)])


def tiny_task(faces: AgingFaces, seed: int = 0, **overrides):
    seed_everything(seed)
    classifier = AgeGroupClassifier(IPCGAN_GROUPS, width=4).requires_grad_(False).eval()
    identity = IdentityFeatures(TinyFace(), frame=64)  # (the real frame, 200, is tested above)
    config = IPCGANConfig(**{**TINY, **overrides})
    info = {"age_classifier": {"config": classifier.config.to_dict()}}
    train, val = faces.subset(np.arange(32)), faces.subset(np.arange(32, len(faces)))
    return build_task(config, train=train, val=val, identity=identity, age_classifier=classifier, info=info), train


def settings(steps: int, **kw) -> TrainerSettings:
    values = {"steps": steps, "batch_size": 4, "seed": 1, "save_every": 4, "keep_every": 0, "log_every": 2,
              "sample_every": 4, "validate_every": 0, "progress": False}
    return TrainerSettings(**{**values, **kw})


def fit(out: Path, steps: int, seed: int = 0, resume: bool = False, **kw):
    """Train the tiny IPCGAN on synthetic faces into ``out``; returns (task, TrainResult)."""
    faces = synthetic_faces()
    task, train = tiny_task(faces, seed)
    data = ArrayData(images=train.images, group=train.group, index=torch.arange(len(train)))
    result = Trainer(task, data, out, settings(steps, **kw), resume=resume).fit()
    return task, result


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny nets gain nothing from a second thread, and on a busy machine two threads
    wait on each other (measured: 30 classifier steps 5.5 s with 1 thread, 90 s with 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny 4-step run shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("ipcgan")
    task, result = fit(out, 4)
    return out, task, result


# --------------------------------------------------------------------------- building blocks


def test_generator_and_discriminator_shapes_ranges_and_conditioning():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 64, 64)
    g = IPCGANGenerator(5, width=4, blocks=1)
    start = g(x, torch.tensor([0, 2, 4]))
    assert start.shape == x.shape
    # The residual generator starts as the identity map (to within the atanh clamp).
    assert (start - x).abs().max() < 0.01
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.3 * torch.randn_like(p))
        a, b = g(x, torch.zeros(3, dtype=torch.long)), g(x, torch.full((3,), 4))
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert (a - b).abs().mean() > 1e-3  # the target group changes the output
    for size, width in ((64, 4), (128, 4)):
        d = IPCGANDiscriminator(5, size, width)
        assert d(torch.rand(2, 3, size, size), torch.tensor([1, 3])).shape == (2, 1, 4, 4)
    maps = condition_maps(torch.tensor([1, 4]), 5, 6)
    assert maps.shape == (2, 5, 6, 6) and maps[0, 1].min() == 1 and maps[0].sum() == 36 and maps[1, 4].sum() == 36


def test_lsgan_losses_and_ema():
    ones, zeros = torch.ones(4), torch.zeros(4)
    assert float(lsgan_d_loss(ones, zeros)) == 0 and float(lsgan_d_loss(zeros, ones)) == 1.0
    assert float(lsgan_d_loss(ones, zeros, ones)) == pytest.approx(0.25)  # fakes share the fake half
    assert float(lsgan_g_loss(ones)) == 0 and float(lsgan_g_loss(zeros)) == 0.5
    net = nn.Linear(2, 2)
    ema = ema_copy(net)
    assert not any(p.requires_grad for p in ema.parameters())
    before = ema.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    update_ema(ema, net, 0.75)
    assert torch.allclose(ema.weight, before + 0.25)


def test_identity_features_measure_in_the_utkface_frame_and_cache():
    face = TinyFace()
    ident = IdentityFeatures(face)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    emb = ident(x)
    assert face.seen[-1] == (200, 200) and emb.shape == (2, 8)
    emb.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # differentiable in the faces
    assert not any(p.requires_grad for p in face.parameters())
    assert ident.describe()["name"] == "tiny-face" and ident.describe()["weights_id"] == "tiny-face-v1"
    uint8 = (x.detach() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert torch.allclose(ident.embed(uint8), ident(torch.from_numpy(uint8).permute(0, 3, 1, 2) / 255.0), atol=1e-6)
    assert torch.allclose(IdentityFeatures.distance(emb, emb), torch.zeros(2), atol=1e-6)

    cache = EmbeddingCache(5)
    calls = len(face.seen)
    first = cache.lookup(torch.tensor([3, 1]), x.detach(), ident)
    again = cache.lookup(torch.tensor([1, 3]), torch.zeros(2, 3, 64, 64), ident)  # cached: images unused
    assert len(face.seen) == calls + 1 and torch.equal(again, first.flip(0))
    restored = EmbeddingCache(5)
    restored.load_state_dict(cache.state_dict())
    assert torch.equal(restored.values, cache.values) and restored.known.tolist() == [False, True, False, True, False]
    with pytest.raises(CheckpointError, match="5 faces"):
        EmbeddingCache(6).load_state_dict(cache.state_dict())


def test_age_classifier_learns_and_round_trips(tmp_path):
    faces = synthetic_faces(80)
    train, val = faces.subset(np.arange(60)), faces.subset(np.arange(60, 80))
    classifier, info = train_age_classifier(train, tmp_path / "clf", val, steps=30, batch_size=16, width=4,
                                            lr=1e-2, progress=False)
    assert info["steps"] == 30 and info["val_accuracy"] > 0.4  # chance is 0.2
    loaded = load_age_classifier(tmp_path / "clf")
    x = torch.rand(4, 3, 64, 64)
    assert torch.equal(loaded(x), classifier(x)) and loaded.groups == IPCGAN_GROUPS
    # Asking again finishes nothing new: the finished run is loaded.
    again, info2 = train_age_classifier(train, tmp_path / "clf", val, steps=30, batch_size=16, width=4,
                                        progress=False)
    assert torch.equal(again(x), classifier(x)) and info2["steps"] == 30


# --------------------------------------------------------------------------- training


def test_training_steps_are_finite_and_checkpointed(trained):
    tmp_path, task, result = trained
    assert result.step == 4 and not result.stopped_early
    for key in ("d", "g_gan", "age", "identity", "g_total"):
        assert np.isfinite(result.last_losses[key]), key
    assert 0 <= result.last_losses["identity"] < 0.5
    state = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)
    assert state["kind"] == "ipcgan" and state["config"]["identity_backbone"] == "tiny-face"
    assert state["config"]["identity"]["weights_id"] == "tiny-face-v1"
    assert set(state["models"]) == {"generator", "discriminator", "g_ema", "age_classifier"}
    assert state["extra"]["identity_cache"]["known"].sum() > 0
    # Spectral norm in D: its power-iteration vectors are part of the state.
    assert any("parametrizations" in k for k in state["models"]["discriminator"])
    from PIL import Image

    grid = np.asarray(Image.open(tmp_path / "samples" / "step_0000004.png"))
    assert grid.shape == (2 + 6 * 66, 2 + 6 * 66, 3)  # 6 faces x (input + 5 groups)
    # The EMA generator trails the trained one.
    g, ema = task.models["generator"].state_dict(), task.models["g_ema"].state_dict()
    assert any(not torch.equal(g[k], ema[k]) for k in g)


def test_resume_is_bit_exact(tmp_path):
    straight, _ = fit(tmp_path / "a", 6, sample_every=0)
    fit(tmp_path / "b", 3, sample_every=0)  # "interrupted" after 3 steps (a checkpoint at step 3)
    seed_everything(123)  # other process state: the checkpoint must restore everything
    resumed, result = fit(tmp_path / "b", 6, seed=5, resume=True, sample_every=0)
    assert result.step == 6
    for name, model in straight.models.items():
        other = resumed.models[name].state_dict()
        for key, value in model.state_dict().items():
            assert torch.equal(value, other[key]), f"{name}.{key}"
    assert torch.equal(straight.cache.values, resumed.cache.values)
    assert torch.equal(straight.cache.known, resumed.cache.known)


# --------------------------------------------------------------------------- the trained model


def test_load_aging_model_round_trip_and_protocol(trained, tmp_path):
    run, task, _ = trained
    model = load_aging_model(run)
    assert isinstance(model, IPCGANModel) and isinstance(model, AgingModel)
    assert model.groups == IPCGAN_GROUPS and model.image_size == 64 and model.identity_backbone == "tiny-face"
    assert model.age_classifier is not None
    faces = synthetic_faces(5, seed=3).images
    out = model.age(faces, 4)
    assert out.shape == faces.shape and out.dtype == np.uint8
    with torch.no_grad():
        x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
        expected = task.models["g_ema"](x, torch.full((5,), 4))
    assert np.array_equal(out, (expected.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    per_face = model.age(faces, [0, 1, 2, 3, 4])
    assert np.array_equal(per_face[4], out[4])
    assert np.array_equal(load_ipcgan(run / "checkpoints" / "latest.pt").age(faces, 4), out)
    # No age-reading loss in this run; with one, the checkpoint's record names the reader for the audit.
    assert model.training_age_reader is None
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    state["config"]["age_reader"] = {"name": "faceapi-agegender", "weights_id": "sha-x", "layout": "utkface"}
    assert from_checkpoint(state).training_age_reader == "faceapi-agegender"

    # A fresh process (weights_only loading, nothing shared) gives the same faces.
    np.save(tmp_path / "faces.npy", faces)
    code = ("import numpy as np, sys; from decoders.aging.models import load_aging_model; "
            "m = load_aging_model(sys.argv[1]); np.save(sys.argv[2], m.age(np.load(sys.argv[3]), 4))")
    subprocess.run([sys.executable, "-c", code, str(run), str(tmp_path / "out.npy"), str(tmp_path / "faces.npy")],
                   check=True, cwd=REPO, timeout=120)
    assert np.array_equal(np.load(tmp_path / "out.npy"), out)


def test_bad_inputs_and_checkpoints_raise_clear_errors(trained, tmp_path):
    run = trained[0]
    model = load_aging_model(run)
    faces = synthetic_faces(2).images
    with pytest.raises(AgingError, match="uint8"):
        model.age(faces.astype(np.float32), 1)
    with pytest.raises(AgingError, match="64x64"):
        model.age(np.zeros((2, 32, 32, 3), np.uint8), 1)
    with pytest.raises(AgingError, match="N x H x W x 3"):
        model.age(faces[0], 1)
    with pytest.raises(AgingError, match="outside the trained age groups"):
        model.age(faces, 5)
    with pytest.raises(AgingError, match="integer group indices"):
        model.age(faces, 1.5)
    with pytest.raises(AgingError, match="one per image"):
        model.age(faces, [0, 1, 2])

    state = load_checkpoint(run)
    del state["path"]
    other = dict(state, kind="face-decoder")
    atomic_save(other, tmp_path / "decoder.pt")
    with pytest.raises(CheckpointError, match=r"decoder\.pt holds a 'face-decoder' run"):
        load_aging_model(tmp_path / "decoder.pt")
    wrong = dict(state, config=dict(state["config"], model=dict(state["config"]["model"], g_width=8)))
    atomic_save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match=r"wrong\.pt: not a loadable IPCGAN checkpoint"):
        load_aging_model(tmp_path / "wrong.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        load_aging_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_aging_model(tmp_path / "missing.pt")
    with pytest.raises(AgingError, match="image_size must be 64 or 128"):
        IPCGANConfig(image_size=100)
    with pytest.raises(AgingError, match="loss weight identity"):
        IPCGANConfig(identity=-1)


# --------------------------------------------------------------------------- CLI


def test_cli_trains_resumes_and_refuses(tmp_path, data_root, monkeypatch):
    from decoders.aging.train import run
    from probes.errors import TrainingError

    out = tmp_path / "run"
    common = ["ipcgan", "--out", str(out), "--data-root", str(data_root), "--max-images", "40",
              "--batch-size", "4", "--identity-backbone", "mobileface", "--random-identity", "--no-progress",
            "--cache-dir", str(tmp_path / "cache"), "--set", "g_width=4", "--set", "g_blocks=1", "--set", "d_width=4",
            "--set", "classifier_steps=3", "--set", "classifier_width=4", "--save-every", "3"]
    args = common + ["--steps", "3"]
    summary = run(args)
    assert summary["step"] == 3 and summary["identity_backbone"] == "mobileface"
    assert (out / "age_classifier" / "checkpoints" / "latest.pt").is_file()
    model = load_aging_model(out)
    assert model.identity_backbone == "mobileface" and model.config.g_width == 4
    with pytest.raises(TrainingError, match="already holds a run"):
        run(args)
    with pytest.raises(TrainingError, match="cannot change settings.*g_width=8"):
        run(args[:-2] + ["--set", "g_width=8", "--resume"])
    with pytest.raises(TrainingError, match="--set 'nope=1'"):
        run(args + ["--set", "nope=1", "--overwrite"])
    resumed = run(common + ["--steps", "5", "--resume"])
    assert resumed["step"] == 5 and resumed["resumed_from"].endswith("latest.pt")

    # Shipped under a name (into a temporary registry): the same faces, and the held-out list is the
    # run's validation split.
    from decoders.aging import ship as ship_module
    from decoders.aging import shipped
    from probes.shipped import ShippedRegistry

    registry = ShippedRegistry(tmp_path / "shipped", "aging generator")
    for module in (ship_module, shipped):
        monkeypatch.setattr(module, "GENERATORS", registry)
    assert ship_module.main([str(out), "--name", "tiny", "--description", "test", "--data-root",
                             str(data_root)]) == 0
    entry = registry.get("tiny")
    assert entry.training["steps"] == 5 and "--max-images 40" in entry.command
    heldout = shipped.heldout_faces("tiny")
    assert len(heldout) == json.loads((out / "config.json").read_text())["data"]["n_val"] > 0
    faces = synthetic_faces(3).images
    assert np.abs(load_aging_model(registry.path("tiny")).age(faces, 2).astype(int)
                  - load_aging_model(out).age(faces, 2).astype(int)).max() <= 2
    assert ship_module.main([str(tmp_path), "--name", "x", "--description", "d"]) == 2  # not a run folder


@pytest.mark.data
def test_torchrun_trains_with_two_cpu_processes(tmp_path, data_root):
    import json
    import os

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "decoders.aging.train", "ipcgan", "--out", str(out), "--data-root", str(data_root),
           "--max-images", "40", "--batch-size", "4", "--identity-backbone", "mobileface", "--random-identity",
           "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--set", "g_width=4", "--set", "g_blocks=1",
           "--set", "d_width=4", "--set", "classifier_steps=2", "--set", "classifier_width=4", "--steps", "3",
           "--threads", "1", "--save-every", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert state["world_size"] == 2 and state["step"] == 3
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2
    assert load_aging_model(out).age(np.zeros((1, 64, 64, 3), np.uint8), 4).shape == (1, 64, 64, 3)
