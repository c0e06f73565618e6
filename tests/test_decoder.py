"""Deep Face Decoder: model, losses, target cache, the training CLI and its bad inputs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from decoders.dfd.checkpoint import load_decoder
from decoders.dfd.losses import LossConfig, LossConfigError, ReconstructionLoss, crop_region, identity_loss, sobel
from decoders.dfd.model import DecoderConfig, DecoderConfigError, FaceDecoder, TemplateError
from decoders.dfd.templates import backbone_chips, compute_targets
from decoders.train import main as train_main
from probes.backbones import create_backbone
from probes.datasets import FaceDataset, load_utkface
from probes.errors import DatasetError
from probes.training.checkpoints import CheckpointError, atomic_save, load_checkpoint


@pytest.fixture(scope="module")
def random_backbone():
    torch.manual_seed(0)
    return create_backbone("dlib-resnet29", pretrained=False).requires_grad_(False)


@pytest.fixture(scope="module")
def faces(data_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_utkface(data_root, max_images=3, seed=0)


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize("size", [32, 64, 112])
def test_decoder_shapes_and_range(size):
    torch.manual_seed(0)
    decoder = FaceDecoder(DecoderConfig(embedding_size=128, image_size=size, width=0.25))
    out = decoder(torch.randn(3, 128))
    assert out.shape == (3, 3, size, size)
    assert out.min() >= 0 and out.max() <= 1


def test_default_decoder_is_cpu_sized_and_scales_with_width():
    small = FaceDecoder(DecoderConfig(embedding_size=128)).num_parameters()
    big = FaceDecoder(DecoderConfig(embedding_size=128, width=2)).num_parameters()
    assert 1e6 < small < 4e6 and big > 2 * small
    assert DecoderConfig(128, image_size=224).channels() == [256, 128, 64, 32, 32, 32]


def test_template_normalisation_and_bad_templates():
    torch.manual_seed(0)
    decoder = FaceDecoder(DecoderConfig(embedding_size=16, image_size=32, width=0.25)).eval()
    t = torch.randn(2, 16)
    # Only the direction matters: dlib templates (norm ~1.4) and unit templates decode alike.
    torch.testing.assert_close(decoder(t), decoder(3.7 * t))
    with pytest.raises(TemplateError, match="N x 16"):
        decoder(torch.randn(2, 15))
    with pytest.raises(TemplateError, match="NaN"):
        decoder(torch.tensor([[float("nan")] * 16]))


def test_standardisation_is_fitted_on_training_templates_and_saved():
    torch.manual_seed(0)
    common = torch.randn(16)
    train = common + 0.1 * torch.randn(50, 16)  # templates sharing one direction, like dlib's
    decoder = FaceDecoder(DecoderConfig(16, image_size=32, width=0.25, standardise=True)).fit_normalisation(train)
    z = decoder.normalise(train)
    torch.testing.assert_close(z.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(16), atol=1e-4, rtol=0)
    assert {"center", "spread"} <= set(decoder.state_dict())
    plain = FaceDecoder(DecoderConfig(16, image_size=32, width=0.25)).fit_normalisation(train)  # a no-op
    assert plain.normalise(train).norm(dim=1).sub(4.0).abs().max() < 1e-4  # unit templates x sqrt(16)
    with pytest.raises(TemplateError, match="N >= 2"):
        decoder.fit_normalisation(train[:1])


def test_bad_decoder_configs():
    with pytest.raises(DecoderConfigError, match="not \\(3..7\\) x 2\\^k"):
        DecoderConfig(128, image_size=100)
    with pytest.raises(DecoderConfigError, match="norm"):
        DecoderConfig(128, norm="layer")
    with pytest.raises(DecoderConfigError, match="unknown decoder config keys"):
        DecoderConfig.from_dict({"embedding_size": 8, "colour": 1})


# --------------------------------------------------------------------------- losses


def test_sobel_is_zero_on_flat_images_and_sees_edges():
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert sobel(flat).abs().max() == 0
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1.0
    g = sobel(edge)
    assert g.shape == (1, 2, 6, 6)
    assert g[0, 0].abs().max() > 0 and g[0, 1].abs().max() == 0  # vertical edge: x-gradient only


def test_local_region_crop():
    x = torch.arange(100.0).view(1, 1, 10, 10)
    local = crop_region(x, (0.2, 0.3, 0.5, 0.4))
    assert local.shape == (1, 1, 5, 4) and local[0, 0, 0, 0] == 23
    assert crop_region(torch.zeros(1, 3, 112, 112)).shape == (1, 3, 68, 68)


def test_identity_loss_vanishes_at_the_template_with_zero_gradient(random_backbone):
    torch.manual_seed(1)
    image = torch.rand(1, 3, 40, 40, requires_grad=True)
    with torch.no_grad():
        own = random_backbone(image, "chip")
    loss = identity_loss(image, own * 1.46, random_backbone)  # cosine ignores the norm
    loss.backward()
    assert loss.item() < 1e-5
    other = torch.rand(1, 3, 40, 40, requires_grad=True)
    other_loss = identity_loss(other, own, random_backbone)
    other_loss.backward()
    # At its minimum the loss is flat; elsewhere it pulls the image (by orders of magnitude more).
    assert other_loss.item() > 1e-4
    assert image.grad.abs().max() < 1e-2 * other.grad.abs().max()


def test_reconstruction_loss_terms_and_gradients(random_backbone):
    cfg = LossConfig(perceptual=0.0, local_identity=0.5, local_gradient=0.5)
    loss = ReconstructionLoss(cfg, random_backbone)
    torch.manual_seed(0)
    decoder = FaceDecoder(DecoderConfig(128, image_size=32, width=0.25))
    target = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        templates = random_backbone(target, "chip")
    total, terms = loss(decoder(templates), target, templates)
    assert set(terms) == {"pixel", "gradient", "identity", "local_pixel", "local_gradient", "local_identity"}
    expected = sum(getattr(cfg, k) * v for k, v in terms.items())
    torch.testing.assert_close(total, expected)
    total.backward()
    assert all(p.grad is not None for p in decoder.parameters())
    assert all(p.grad is None for p in random_backbone.parameters())  # the target net stays frozen
    assert not random_backbone.training
    # The same image as target and reconstruction: every term is zero.
    _, same = loss(target, target, templates)
    assert all(v.item() < 1e-5 for v in same.values())


def test_perceptual_term_uses_local_lpips(lpips_weights):
    pytest.importorskip("lpips")
    loss = ReconstructionLoss(LossConfig(pixel=0, gradient=0, identity=0, local_pixel=0, local_gradient=0,
                                         perceptual=1.0))
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    total, terms = loss(a, b, torch.zeros(2, 128))
    assert set(terms) == {"perceptual"} and total.item() > 0.05
    assert loss(a, a, torch.zeros(2, 128))[0].item() < 1e-6


def test_loss_config_errors():
    with pytest.raises(LossConfigError, match="identity must be a finite number"):
        LossConfig(identity=-1)
    with pytest.raises(LossConfigError, match="every loss weight is zero"):
        LossConfig(**{k: 0 for k in LossConfig.weight_names()})
    with pytest.raises(LossConfigError, match="local_region"):
        LossConfig(local_region=(0.5, 0.5, 0.6, 0.2))
    with pytest.raises(LossConfigError, match="no backbone"):
        ReconstructionLoss(LossConfig(perceptual=0))


# --------------------------------------------------------------------------- target cache


def test_targets_are_cached_and_keyed(random_backbone, faces, tmp_path):
    first = compute_targets(random_backbone, faces, 32, cache_dir=tmp_path, progress=False)
    assert first.cache_hits == (False, False)
    assert first.templates.shape == (3, 128) and first.images.shape == (3, 32, 32, 3)
    assert first.images.dtype == np.uint8
    again = compute_targets(random_backbone, faces, 32, cache_dir=tmp_path, progress=False)
    assert again.cache_hits == (True, True)
    np.testing.assert_array_equal(first.templates, again.templates)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_allclose(first.templates, random_backbone.embed(faces.load_images(), "utkface"), atol=1e-5)
    # Another decoder size reuses the templates; another image order or layout misses.
    other_size = compute_targets(random_backbone, faces, 64, cache_dir=tmp_path, progress=False)
    assert other_size.cache_hits == (True, False)
    reordered = compute_targets(random_backbone, faces.subset([1, 0, 2]), 32, cache_dir=tmp_path,
                                progress=False)
    assert reordered.cache_hits == (False, False)
    np.testing.assert_allclose(reordered.templates[0], first.templates[1], atol=1e-6)
    as_chip = FaceDataset("same-files", faces.paths, layout="chip")
    targets = compute_targets(random_backbone, as_chip, 32, cache_dir=tmp_path, progress=False)
    assert targets.cache_hits == (False, False)
    assert not list(tmp_path.glob(".tmp-*"))


def test_target_chip_is_what_the_backbone_sees(random_backbone, faces):
    images = faces.load_images()
    chips = backbone_chips(random_backbone, images, "utkface", 150)  # the backbone's own input size
    again = random_backbone.embed(chips, "chip")
    direct = random_backbone.embed(images, "utkface")
    cos = (again * direct).sum(1) / np.linalg.norm(again, axis=1) / np.linalg.norm(direct, axis=1)
    assert cos.min() > 0.9999


def test_nan_templates_and_empty_datasets_are_refused(random_backbone, faces, tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="has no images"):
        compute_targets(random_backbone, faces.subset([]), 32, cache_dir=False)
    real = random_backbone.net.forward

    def poisoned(x):
        out = real(x)
        out[0, 3] = float("nan")
        return out

    monkeypatch.setattr(random_backbone.net, "forward", poisoned)
    with pytest.raises(TemplateError, match="1 template\\(s\\) contain NaN.*utkface"):
        compute_targets(random_backbone, faces, 32, cache_dir=tmp_path, progress=False)
    assert not list(tmp_path.glob("*.npy"))  # nothing poisoned went into the cache


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli_base(data_root, tmp_path_factory):
    cache = tmp_path_factory.mktemp("dfd-cache")
    return ["--random-backbone", "--dataset", "lfw", "--data-root", str(data_root), "--max-images", "24",
            "--image-size", "32", "--width", "0.25", "--batch-size", "4", "--perceptual", "0",
            # The identity term (through the backbone) is tested above; here it would only cost time.
            "--identity", "0",
            "--save-every", "2", "--sample-every", "0", "--validate-every", "0", "--val-images", "2",
            "--log-every", "1", "--cache-dir", str(cache), "--no-progress"]


def test_cli_trains_resumes_and_reloads(cli_base, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(cli_base + ["--out", str(out), "--steps", "2"]) == 0
    for name in ("config.json", "split.json", "log.csv", "val.csv", "summary.json", "checkpoints/latest.pt",
                 "samples/step_0000002.png"):
        assert (out / name).exists(), name
    split = json.loads((out / "split.json").read_text())["parts"]["lfw"]
    train_ids, test_ids = set(split["train"]["identities"]), set(split["test"]["identities"])
    assert test_ids and not train_ids & test_ids and not set(split["val"]["identities"]) & test_ids
    assert train_main(cli_base + ["--out", str(out), "--steps", "3", "--resume"]) == 0
    assert json.loads((out / "summary.json").read_text())["step"] == 3
    assert [line.split(",")[0] for line in (out / "log.csv").read_text().split()[1:]] == ["1", "2", "3"]
    decoder, config = load_decoder(out)
    assert config["backbone"]["name"] == "dlib-resnet29" and config["step"] == 3
    assert decoder(torch.randn(2, 128)).shape == (2, 3, 32, 32) and not decoder.training
    capsys.readouterr()
    # An existing run is refused without --resume/--overwrite, and kept.
    assert train_main(cli_base + ["--out", str(out), "--steps", "2"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert load_checkpoint(out)["step"] == 3
    # --resume may not change what defines the run.
    assert train_main(cli_base + ["--out", str(out), "--steps", "4", "--resume", "--image-size", "64"]) == 2
    assert "--image-size 64 (run: 32)" in capsys.readouterr().err
    # A checkpoint from another backbone (weights) is refused, and left as it was.
    state = load_checkpoint(out)
    state["config"]["backbone"]["weights_key"] = "another-net"
    state.pop("path")
    atomic_save(state, out / "checkpoints" / "latest.pt")
    assert train_main(cli_base + ["--out", str(out), "--steps", "4", "--resume"]) == 2
    assert "trained against backbone 'dlib-resnet29' (weights another-net" in capsys.readouterr().err
    assert load_checkpoint(out)["step"] == 3
    # --overwrite replaces the run.
    assert train_main(cli_base + ["--out", str(out), "--steps", "1", "--overwrite"]) == 0
    assert load_checkpoint(out)["step"] == 1 and not (out / "samples" / "step_0000002.png").exists()


def test_cli_bad_inputs(cli_base, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert train_main(cli_base + ["--out", str(blocker / "run"), "--steps", "1"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty-data"
    empty.mkdir()
    base = [a if a != cli_base[cli_base.index("--data-root") + 1] else str(empty) for a in cli_base]
    assert train_main(base + ["--out", str(tmp_path / "r1"), "--steps", "1"]) == 2
    assert "lfw" in capsys.readouterr().err.lower()
    assert train_main(cli_base + ["--out", str(tmp_path / "r2"), "--steps", "1", "--max-images", "0"]) == 2
    assert "--max-images must be positive" in capsys.readouterr().err
    assert train_main(cli_base + ["--out", str(tmp_path / "r3"), "--steps", "1", "--max-images", "3"]) == 2
    assert "fewer than one batch" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


def test_load_decoder_refuses_other_checkpoints(tmp_path):
    atomic_save({"format": "faceprobe-checkpoint-1", "kind": "tiny", "config": {}}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a 'face-decoder'"):
        load_decoder(tmp_path / "x.pt")
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_decoder(tmp_path / "bad.pt")
