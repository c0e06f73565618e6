"""Expressivity over training: the sweep over checkpoints, identity training and its checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes.backbones import create_backbone
from probes.backbones.registry import FaceBackbone
from probes.backbones.small_facenet import SPEC, SmallFaceNet
from probes.errors import ImageError, WeightFileError
from probes.expressivity.figures import plot_expressivity_over_training
from probes.expressivity.labels import AttributeLabels
from probes.expressivity.over_training import CheckpointSeriesError, expressivity_over_training
from probes.training.checkpoints import FORMAT, CheckpointError, atomic_save
from probes.training.identity import (
    face_chips,
    load_identity_backbone,
    load_identity_checkpoints,
    split_per_identity,
    train_identity_network,
)

FAST_PROBE = {"probe": {"n_bootstrap": 20, "n_permutations": 0, "C": 1.0}}


def _random_net(seed: int) -> FaceBackbone:
    torch.manual_seed(seed)
    return create_backbone("small-facenet", pretrained=False)


@pytest.fixture(scope="module")
def faces():
    """60 synthetic 64 x 64 faces: brightness carries a continuous label, a stripe pattern a 3-way class."""
    rng = np.random.default_rng(0)
    n = 60
    brightness = rng.uniform(0, 1, n)
    cls = np.arange(n) % 3
    images = rng.integers(0, 60, (n, 64, 64, 3)).astype(np.float64)
    images += 150 * brightness[:, None, None, None]
    for k in range(3):
        images[cls == k, :, k * 20:k * 20 + 10] += 40
    labels = {"age": AttributeLabels(brightness * 60, "continuous", "synthetic"),
              "identity": AttributeLabels(cls, "discrete", "synthetic")}
    return np.clip(images, 0, 255).astype(np.uint8), labels


def test_over_training_table_has_one_row_per_step_layer_attribute(faces):
    images, labels = faces
    models = [(10, _random_net(1)), (0, _random_net(0))]  # out of order on purpose
    table = expressivity_over_training(models, images, labels, layers=["stage1", "embedding"],
                                       estimator_params=FAST_PROBE, progress=False)
    for column in ("step", "backbone", "weights_id", "layer", "depth", "attribute", "estimator", "estimate",
                   "ci_low", "ci_high", "n", "label_source"):
        assert column in table.columns
    assert len(table) == 2 * 2 * 2
    assert not table.duplicated(["step", "layer", "attribute"]).any()
    assert list(table["step"]) == sorted(table["step"])  # sorted by step
    assert set(table["layer"]) == {"stage1", "embedding"} and set(table["attribute"]) == {"age", "identity"}
    assert (table["n"] == len(images)).all()
    # Brightness survives a random conv net: the age probe finds it at the first stage.
    early = table[(table["layer"] == "stage1") & (table["attribute"] == "age")]
    assert (early["estimate"] > 0.3).all()

    fig = plot_expressivity_over_training(table)
    assert sum(ax.get_visible() for ax in fig.axes) == 2  # one panel per layer
    fig = plot_expressivity_over_training(table, layer="embedding", normalise=True)
    assert sum(ax.get_visible() for ax in fig.axes) == 1
    # A fraction of the peak: no curve or band above 1 on the normalised axis.
    assert max(line.get_ydata().max() for line in fig.axes[0].lines) == pytest.approx(1.0)
    assert fig.axes[0].get_ylim()[1] <= 1.05 and not fig.axes[0].collections
    with pytest.raises(ValueError, match="no rows for layer"):
        plot_expressivity_over_training(table, layer="stage9")


def test_bad_checkpoint_series_raise_clear_errors(faces):
    images, labels = faces
    net = _random_net(0)
    with pytest.raises(CheckpointSeriesError, match="models is empty"):
        expressivity_over_training([], images, labels)
    with pytest.raises(CheckpointSeriesError, match="more than once"):
        expressivity_over_training([(5, net), (5, _random_net(1))], images, labels)
    with pytest.raises(CheckpointSeriesError, match="non-negative integer"):
        expressivity_over_training([(-1, net)], images, labels)
    with pytest.raises(CheckpointSeriesError, match="not a FaceBackbone"):
        expressivity_over_training([(0, net), (1, SmallFaceNet())], images, labels)
    other = create_backbone("dlib-resnet29", pretrained=False)
    with pytest.raises(CheckpointSeriesError, match=r"one architecture: step 3 .*backbone 'dlib-resnet29'"):
        expressivity_over_training([(0, net), (3, other)], images, labels)
    narrow = FaceBackbone(SPEC, SmallFaceNet(widths=(8, 16, 32, 64)), "narrow")
    with pytest.raises(CheckpointSeriesError, match="parameter shapes differ"):
        expressivity_over_training([(0, net), (1, narrow)], images, labels)
    with pytest.raises(CheckpointSeriesError, match="labels is empty"):
        expressivity_over_training([(0, net)], images, {})


def test_identity_training_keeps_step_checkpoints_that_load_as_backbones(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    ids = np.array(["ann", "bob", "cy"] * 4)
    result = train_identity_network(images, ids, tmp_path / "run", steps=2, batch_size=4, keep_every=1,
                                    val_images=images[:3], val_identities=ids[:3], progress=False)
    assert result.step == 2
    models = load_identity_checkpoints(tmp_path / "run")
    assert [s for s, _ in models] == [0, 1, 2]
    probe = images[:5]
    outputs = []
    for step, backbone in models:
        path = tmp_path / "run" / "checkpoints" / f"step_{step:07d}.pt"
        # The registry's loader reads the same checkpoint: identical outputs.
        through_registry = create_backbone("small-facenet", weights=path)
        assert through_registry.weights_id == backbone.weights_id
        np.testing.assert_array_equal(backbone.embed(probe), through_registry.embed(probe))
        outputs.append(backbone.embed(probe))
    assert not np.allclose(outputs[0], outputs[2])  # training moved the weights
    assert len({b.weights_id for _, b in models}) == 3
    # A plain state dict loads too.
    plain = tmp_path / "plain.pt"
    torch.save(models[2][1].net.state_dict(), plain)
    np.testing.assert_array_equal(create_backbone("small-facenet", weights=plain).embed(probe), outputs[2])
    with pytest.raises(CheckpointError, match=r"no checkpoint for step\(s\) \[7\]"):
        load_identity_checkpoints(tmp_path / "run", steps=[0, 7])


def test_checkpoint_and_weight_errors(tmp_path):
    with pytest.raises(WeightFileError, match="needs weights=PATH"):
        create_backbone("small-facenet")
    decoder_run = tmp_path / "decoder.pt"
    atomic_save({"format": FORMAT, "kind": "face-decoder", "step": 3, "models": {}}, decoder_run)
    with pytest.raises(CheckpointError, match="not a 'face-identity'"):
        load_identity_backbone(decoder_run)
    with pytest.raises(WeightFileError, match="without a 'backbone' model"):
        create_backbone("small-facenet", weights=decoder_run)
    with pytest.raises(CheckpointError, match="no step_XXXXXXX.pt"):
        load_identity_checkpoints(tmp_path)


def test_split_per_identity_keeps_every_person_on_both_sides():
    ids = np.array(["a"] * 10 + ["b"] * 3 + ["c"])
    train, held = split_per_identity(ids, eval_fraction=0.3, max_eval_per_person=2, seed=0)
    assert set(train) | set(held) == set(range(len(ids))) and not set(train) & set(held)
    assert sorted(ids[held]) == ["a", "a", "b"]  # round(3.0) capped at 2; round(0.9) = 1; c has one image
    assert {"a", "b", "c"} <= set(ids[train])


def test_face_chips_match_the_backbone_crop_and_refuse_small_images():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    net = _random_net(0)
    chips = face_chips(images, net, layout="utkface", progress=False)
    assert chips.shape == (3, 64, 64, 3) and chips.dtype == np.uint8
    direct = net.embed(images, "utkface")
    np.testing.assert_allclose(net.embed(chips, "chip"), direct, atol=0.05 * np.abs(direct).max())
    with pytest.raises(ImageError, match="too small"):
        face_chips(np.zeros((1, 20, 20, 3), np.uint8), net, progress=False)
