"""Age-cGAN: networks, both training phases on the shared trainer, latent optimisation, loading, errors."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from decoders.aging.agecgan import (
    KIND,
    AgeCGAN,
    AgeCGANConfig,
    AgeCGANTask,
    InversionConfig,
    build_networks,
    build_task,
    from_checkpoint,
    generator_from_checkpoint,
    load_agecgan,
    optimise_latents,
)
from decoders.aging.data import AgingFaces
from decoders.aging.groups import AGECGAN_GROUPS, IPCGAN_GROUPS, AgingError, AgingModel
from decoders.aging.models import load_aging_model
from probes.errors import TrainingError
from probes.training.checkpoints import CheckpointError, atomic_save, load_checkpoint, seed_everything
from probes.training.data import ArrayData
from probes.training.trainer import Trainer, TrainerSettings

TINY = {"image_size": 32, "latent_size": 8, "width": 4, "d_width": 4, "e_width": 4, "encoder_batch_size": 32}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a loaded machine two threads spin-wait and run several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class StandIn(nn.Module):
    """A tiny identity network (N x 3 x S x S in [0, 1] -> N x 16), fixed seed."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.conv = nn.Conv2d(3, 8, 3, 2)
        self.fc = nn.Linear(8, 16)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def synthetic_faces(n: int = 48, size: int = 32, seed: int = 0) -> AgingFaces:
    """Bright ellipses on a dark background; their colour follows the age group."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    group = np.arange(n) % len(AGECGAN_GROUPS)
    images = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        cy, cx = 0.5 + rng.normal(0, 0.05, 2)
        mask = ((yy - cy) / 0.35) ** 2 + ((xx - cx) / 0.25) ** 2 < 1
        colour = np.array([200, 150, 120]) - 20 * group[i] + rng.integers(-10, 10, 3)
        images[i] = np.where(mask[..., None], colour, 30).clip(0, 255)
    ages = AGECGAN_GROUPS.midpoints()[group]
    return AgingFaces(images, ages, np.zeros(n, np.int64), np.zeros(n, np.int64), group, AGECGAN_GROUPS,
                      [f"face{i}.jpg" for i in range(n)])


def _fit(out, config: AgeCGANConfig, steps: int, faces: AgingFaces, val: AgingFaces | None = None,
         **settings) -> AgeCGANTask:
    seed_everything(0)
    task = build_task(config, train=faces, val=val, info={"cli": {"steps": steps}})
    opts = {"save_every": 10, "keep_every": 0, "log_every": 2, "sample_every": 4, "validate_every": 4} | settings
    Trainer(task, ArrayData(images=faces.images, group=faces.group), out,
            TrainerSettings(steps=steps, batch_size=8, seed=0, progress=False, **opts)).fit()
    return task


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Both phases, a few steps each, on synthetic faces."""
    out = tmp_path_factory.mktemp("agecgan")
    config = AgeCGANConfig(**TINY, gan_steps=6, encoder_lr=2e-3)
    task = _fit(out, config, 16, synthetic_faces(), synthetic_faces(8, seed=1))
    return out, task


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_networks_have_the_right_shapes_and_ranges():
    cfg = AgeCGANConfig(**TINY)
    nets = build_networks(cfg)
    z, y = torch.randn(5, 8), torch.tensor([0, 1, 2, 3, 5])
    x = nets["generator"](z, y)
    assert x.shape == (5, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert nets["discriminator"](x, y).shape == (5,)
    assert nets["encoder"](x).shape == (5, 8)
    # The condition changes the output (one-hot input and conditional batch norm).
    assert not torch.allclose(nets["generator"](z, torch.zeros(5, dtype=torch.long)), nets["generator"](z, y))
    assert AgeCGANConfig.from_dict(cfg.to_dict()) == cfg
    default = AgeCGANConfig()
    assert (default.image_size, default.latent_size, default.identity_backbone) == (64, 100, "dlib-resnet29")
    assert not default.uses_identity and not default.uses_age_classifier
    with pytest.raises(AgingError, match="power of two"):
        AgeCGANConfig(image_size=48)
    with pytest.raises(AgingError, match="unknown Age-cGAN config keys"):
        AgeCGANConfig.from_dict({"colour": 1})


def test_both_phases_train_with_finite_losses_and_write_checkpoints(run):
    out, _ = run
    log = _rows(out / "log.csv")
    assert {"phase", "d_loss", "g_loss", "d_real", "d_fake", "latent_mse"} <= set(log[0])
    assert [float(r["phase"]) for r in log] == [0, 0, 0, 1, 1, 1, 1, 1]
    for row in log + _rows(out / "val.csv"):
        assert all(math.isfinite(float(v)) for v in row.values())
    state = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert state["kind"] == KIND and state["step"] == 16
    assert set(state["models"]) == {"generator", "discriminator", "generator_ema", "encoder"}
    # Self-describing: architecture, phases, groups and the identity backbone of the latent optimisation.
    assert state["config"]["model"]["latent_size"] == 8 and state["config"]["model"]["gan_steps"] == 6
    assert state["config"]["groups"] == AGECGAN_GROUPS.to_dict()
    assert state["config"]["identity_backbone"] == "dlib-resnet29"
    # The GAN phase's grid: 8 latents x 6 groups (32 px tiles, 2 px padding); the encoder phase's:
    # 8 faces x (input, reconstruction, 6 groups).
    from PIL import Image

    assert Image.open(out / "samples" / "step_0000004.png").size == (6 * 34 + 2, 8 * 34 + 2)
    assert Image.open(out / "samples" / "step_0000016.png").size == (8 * 34 + 2, 8 * 34 + 2)


def test_the_encoder_phase_freezes_the_gan_and_resumes_exactly(run, tmp_path):
    _, task = run
    # Stop in the middle of the encoder phase, resume, and end where the uninterrupted run ended.
    config = AgeCGANConfig(**TINY, gan_steps=6, encoder_lr=2e-3)
    faces, val = synthetic_faces(), synthetic_faces(8, seed=1)
    _fit(tmp_path, config, 10, faces, val)
    at_ten = load_checkpoint(tmp_path / "checkpoints" / "latest.pt")
    seed_everything(0)
    again = build_task(config, train=faces, val=val)
    Trainer(again, ArrayData(images=faces.images, group=faces.group), tmp_path,
            TrainerSettings(steps=16, batch_size=8, seed=0, progress=False, save_every=10, keep_every=0,
                            log_every=2, sample_every=4, validate_every=4), resume=True).fit()
    for name in ("generator_ema", "encoder", "discriminator"):
        for key, value in task.models[name].state_dict().items():
            assert torch.equal(value, again.models[name].state_dict()[key]), (name, key)
    # From step 6 on (the encoder phase) the GAN does not move; the encoder does.
    for name, moved in (("generator_ema", False), ("generator", False), ("discriminator", False), ("encoder", True)):
        same = all(torch.equal(v, again.models[name].state_dict()[k]) for k, v in at_ten["models"][name].items())
        assert same != moved, name


def test_encoder_reduces_latent_error_on_generated_faces():
    cfg = AgeCGANConfig(**TINY, gan_steps=1, encoder_lr=3e-3)
    faces = synthetic_faces()
    seed_everything(1)
    task = build_task(cfg, train=faces)
    generator = task.models["generator_ema"]
    # As after training: batch-norm statistics of its own activations, outputs spread over [-1, 1].
    generator.train()
    for m in generator.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average
            m.reset_running_stats()
    with torch.no_grad():
        generator(torch.randn(256, 8), torch.randint(0, 6, (256,)))
        generator.out.weight.mul_(15)
    generator.eval()
    before = task.latent_error()["latent_mse"]
    rng = np.random.default_rng(0)
    for i in range(40):  # steps past gan_steps train the encoder only
        pick = rng.choice(len(faces), 8, replace=False)
        losses = task.step({"images": torch.from_numpy(faces.images[pick]),
                            "group": torch.from_numpy(faces.group[pick])}, cfg.gan_steps + i)
        assert losses["phase"] == 1 and math.isfinite(losses["latent_mse"])
    after = task.latent_error()["latent_mse"]
    assert after < 0.5 * before, (before, after)
    assert all(not p.requires_grad for p in generator.parameters())


def test_latent_optimisation_reduces_its_objective(run):
    out, _ = run
    model = load_agecgan(out, identity=StandIn(), inversion=InversionConfig(steps=15, lr=0.1, identity_weight=0.5))
    faces = synthetic_faces(6, seed=4)
    z, start, end = model.invert(faces.images, source_groups=faces.group, return_objectives=True)
    assert z.shape == (6, 8) and np.all(np.isfinite(z))
    assert np.all(end <= start + 1e-7) and end.mean() < start.mean()
    # The functional form, with the cosine distance and a prior.
    x01 = torch.from_numpy(faces.images).permute(0, 3, 1, 2).float() / 255
    z0 = torch.from_numpy(model.encode(faces.images))
    cfg = InversionConfig(steps=10, lr=0.1, identity_weight=1.0, identity_distance="cosine", prior_weight=0.01)
    _, s, e = optimise_latents(model.generator, x01, torch.as_tensor(faces.group), z0, cfg, StandIn())
    assert torch.all(e <= s) and e.mean() < s.mean()
    # steps=0 keeps the encoder's latent and needs no face network.
    model = load_agecgan(out, inversion=InversionConfig(steps=0))
    assert np.allclose(model.invert(faces.images, source_groups=faces.group), z0.numpy(), atol=1e-6)
    assert model._identity is None


def test_loaded_model_meets_the_aging_contract_and_round_trips(run):
    out, task = run
    inversion = InversionConfig(steps=5, lr=0.05, identity_weight=0.2)
    model = load_agecgan(out, identity=StandIn(), inversion=inversion)
    assert isinstance(model, AgingModel)
    assert model.groups == AGECGAN_GROUPS and model.image_size == 32 and model.identity_backbone == "dlib-resnet29"
    faces = synthetic_faces(5, seed=2)
    aged = model.age(faces.images, 4, source_groups=faces.group)
    assert aged.shape == (5, 32, 32, 3) and aged.dtype == np.uint8
    # Per-face targets; source ages instead of groups.
    per_face = model.age(faces.images, [0, 1, 2, 3, 4], source_ages=faces.ages)
    assert per_face.shape == aged.shape and np.array_equal(model.last_source_groups, faces.group)
    # Through the generic loader, and from the in-memory networks that wrote the file: the same faces.
    again = load_aging_model(out / "checkpoints" / "latest.pt")
    assert isinstance(again, AgeCGAN)
    again._identity, again.inversion = StandIn(), inversion
    assert np.array_equal(again.age(faces.images, 4, source_groups=faces.group), aged)
    in_memory = AgeCGAN(task.models["generator_ema"], task.models["encoder"], task.cfg, inversion=inversion,
                        identity=StandIn())
    assert np.array_equal(in_memory.age(faces.images, 4, source_groups=faces.group), aged)
    # Another target for the same faces reuses their latents (no second optimisation).
    calls = []
    original = model.invert
    model.invert = lambda *a, **k: calls.append(1) or original(*a, **k)
    younger = model.age(faces.images, 0, source_groups=faces.group)
    assert not calls and younger.shape == aged.shape and not np.array_equal(younger, aged)
    model.age(faces.images[::-1].copy(), 0, source_groups=faces.group[::-1].copy())
    assert calls == [1]
    model.invert = original
    # Without a source, the group of best reconstruction is used (and reported).
    model.age(faces.images, 2)
    assert model.last_source_groups.shape == (5,) and set(model.last_source_groups) <= set(range(6))
    assert np.array_equal(model.last_source_groups, model.estimate_source_groups(faces.images))
    # The EMA generator alone, at any step.
    generator, cfg = generator_from_checkpoint(load_checkpoint(out))
    assert cfg.latent_size == 8 and generator(torch.randn(2, 8), torch.tensor([0, 5])).shape == (2, 3, 32, 32)
    # Age-cGAN trains against no age network; a checkpoint that records one names it to the audit.
    assert model.training_age_reader is None
    state = load_checkpoint(out)
    state["config"]["age_reader"] = {"name": "faceapi-agegender", "weights_id": "sha-x"}
    assert from_checkpoint(state).training_age_reader == "faceapi-agegender"


def test_bad_inputs_raise_clear_errors(run, tmp_path):
    out, _ = run
    model = load_agecgan(out, identity=StandIn(), inversion=InversionConfig(steps=1))
    faces = synthetic_faces(3).images
    with pytest.raises(AgingError, match="target 6 is outside"):
        model.age(faces, 6, source_groups=0)
    with pytest.raises(AgingError, match="target must be one group index or one per image"):
        model.age(faces, [1, 2], source_groups=0)
    with pytest.raises(AgingError, match="uint8"):
        model.age(faces.astype(np.float32), 1, source_groups=0)
    with pytest.raises(AgingError, match="32x32"):
        model.age(np.zeros((2, 64, 64, 3), np.uint8), 1, source_groups=0)
    with pytest.raises(AgingError, match="N x H x W x 3"):
        model.age(faces[0], 1)
    with pytest.raises(AgingError, match="source_ages -3.0 is outside"):
        model.age(faces, 1, source_ages=[-3, 20, 30])
    with pytest.raises(AgingError, match="not both"):
        model.age(faces, 1, source_groups=0, source_ages=20)
    with pytest.raises(AgingError, match="identity_distance"):
        InversionConfig(identity_distance="manhattan")
    with pytest.raises(AgingError, match="steps"):
        InversionConfig(steps=-1)
    with pytest.raises(AgingError, match="grouped as 'ipcgan'"):
        build_task(AgeCGANConfig(**TINY), train=AgingFaces(**{**synthetic_faces().__dict__, "groups": IPCGAN_GROUPS}))
    with pytest.raises(TrainingError, match="leaves the encoder untrained"):
        build_task(AgeCGANConfig(**TINY, gan_steps=10), train=synthetic_faces(), info={"cli": {"steps": 10}})

    # Checkpoints: still in the GAN phase, another kind, another architecture, not a checkpoint.
    state = load_checkpoint(out / "checkpoints" / "latest.pt")
    state.pop("path")
    atomic_save(dict(state, step=5), tmp_path / "early.pt")
    with pytest.raises(CheckpointError, match=r"early\.pt is at step 5, still in Age-cGAN's GAN phase"):
        load_agecgan(tmp_path / "early.pt")
    atomic_save(dict(state, kind="face-decoder"), tmp_path / "decoder.pt")
    with pytest.raises(CheckpointError, match=r"decoder\.pt holds a 'face-decoder' run"):
        load_agecgan(tmp_path / "decoder.pt")
    wider = dict(state, config=dict(state["config"], model=dict(state["config"]["model"], width=6)))
    atomic_save(wider, tmp_path / "wider.pt")
    with pytest.raises(CheckpointError, match=r"wider\.pt: the generator_ema weights do not fit"):
        load_agecgan(tmp_path / "wider.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt is not a readable checkpoint"):
        load_aging_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_agecgan(tmp_path)


def test_command_line_trains_on_utkface(data_root, tmp_path):
    """``python -m decoders.aging.train agecgan`` on 40 real faces at 32 px, two steps per phase."""
    from decoders.aging.train import run as train_cli

    summary = train_cli(["agecgan", "--out", str(tmp_path / "run"), "--data-root", str(data_root),
                         "--cache-dir", str(tmp_path / "cache"), "--max-images", "40", "--steps", "4",
                         "--batch-size", "8", "--no-progress", "--validate-every", "2", "--sample-every", "2"]
                        + [f"--set={k}={v}" for k, v in {**TINY, "gan_steps": 2, "encoder_batch_size": 8}.items()])
    assert summary["step"] == 4 and summary["n_train"] == 36
    assert set(summary["last_losses"]) >= {"phase", "latent_mse"}
    model = load_aging_model(tmp_path / "run")
    assert model.image_size == 32 and model.groups == AGECGAN_GROUPS
