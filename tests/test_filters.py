"""probes.filters: CKA properties, Hungarian filter matching, chance baselines, layer pairing, specs, CLI."""

from __future__ import annotations

import ast
import copy
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from figure_checks import assert_print_ready
from PIL import Image
from torch import nn

from probes.filters import (
    FilterComparison,
    LayerMismatchError,
    Network,
    NetworkSpecError,
    chance_interval,
    linear_cka,
    load_network,
    match_filters,
    pair_layers,
)
from probes.filters.__main__ import main

REPO = Path(__file__).resolve().parents[1]


class TinyNet(nn.Module):
    image_size = 16

    def __init__(self, width: int = 8, kernel: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv2d(width, 16, 3, padding=1, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def tiny(seed: int, **kwargs) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(**kwargs).eval()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (40, 24, 24, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- CKA


def test_linear_cka_properties():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 12))
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert linear_cka(X, X @ Q) == pytest.approx(1.0)  # orthogonal transform
    assert linear_cka(X, 7.5 * X + 3.0) == pytest.approx(1.0)  # isotropic scaling (and a shift)
    Y = rng.standard_normal((60, 30))
    assert linear_cka(X, Y) == pytest.approx(linear_cka(Y, X))
    # not invariant to arbitrary linear maps: stretching one axis changes it
    assert linear_cka(X, X * np.r_[20.0, np.ones(11)]) < 0.9
    # the Gram form (wide features) agrees with the feature-space form
    wide = rng.standard_normal((10, 300))
    narrow = wide[:, :5]
    K = (wide - wide.mean(0)) @ (wide - wide.mean(0)).T
    L = (narrow - narrow.mean(0)) @ (narrow - narrow.mean(0)).T
    assert linear_cka(wide, narrow) == pytest.approx((K * L).sum() / np.linalg.norm(K) / np.linalg.norm(L))
    # independent representations: not 0, but about p / (n + p) -- the reason for baselines
    A, B = rng.standard_normal((500, 256)), rng.standard_normal((500, 256))
    assert linear_cka(A, B) == pytest.approx(256 / 756, abs=0.02)
    related = A[:, :128] + 0.3 * rng.standard_normal((500, 128))  # half of A's features, noisy
    assert linear_cka(A, related) > linear_cka(A, B) + 0.3
    assert np.isnan(linear_cka(np.ones((5, 3)), rng.standard_normal((5, 2))))
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(X, Y[:10])


def test_chance_interval_is_a_clipped_prediction_interval():
    mean, lo, hi = chance_interval([0.30, 0.32, 0.34])
    assert mean == pytest.approx(0.32) and lo < 0.30 and hi > 0.34
    assert hi - mean == pytest.approx(4.303 * 0.02 * np.sqrt(4 / 3), rel=1e-3)
    assert chance_interval([0.9, 0.99, 0.95])[2] == 1.0  # never above the [0, 1] range


# --------------------------------------------------------------------------- matching


def test_hungarian_recovers_a_permuted_sign_flipped_layer():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((24, 8, 3, 3))
    perm = rng.permutation(24)
    signs = rng.choice([-1.0, 1.0], 24)[:, None, None, None]
    scale = rng.uniform(0.1, 5, 24)[:, None, None, None]
    B = W[perm] * signs * scale + rng.standard_normal((24, 1, 1, 1))  # offsets vanish with the mean
    m = match_filters(W.reshape(24, -1), B.reshape(24, -1))
    assert m.fraction_above(0.99) == 1.0 and m.mean == pytest.approx(1.0)
    assert np.array_equal(perm[m.cols], m.rows)  # filter i of W is matched to its copy in B
    assert np.allclose(np.diag(m.ordered()), 1.0, atol=1e-6)
    # unequal filter counts: every filter of the smaller layer gets a distinct partner
    m2 = match_filters(W[:10].reshape(10, -1), B.reshape(24, -1))
    assert len(m2.cols) == 10 == len(set(m2.cols)) and m2.mean == pytest.approx(1.0)


def test_permuted_copy_of_a_network_shares_every_filter():
    a = tiny(0)
    b = copy.deepcopy(a)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        b.conv1.weight.copy_(-a.conv1.weight[perm])
    result = FilterComparison(n_baseline=3, progress=False).compare(a, b)
    row = result.table.set_index("layer_a").loc["conv1"]
    assert row.frac_above == 1.0 and row.matched_mean == pytest.approx(1.0)
    assert row.verdict == "more than chance" and row.chance_hi < 0.9


def test_dead_filters_are_left_out_on_both_sides():
    a = tiny(0)
    b = copy.deepcopy(a)
    with torch.no_grad():
        a.conv1.weight[:3] = 0.25  # constant filters: nothing to match
        b.conv2.weight.zero_()  # a whole zero layer (an untrained zero-initialised head)
    with pytest.warns(UserWarning, match="conv2=conv2 left out"):
        result = FilterComparison(n_baseline=2, progress=False).compare(a, b)
    table = result.table.set_index("layer_a")
    assert list(table.index) == ["conv1", "fc"] and result.config["skipped_pairs"] == ["conv2=conv2"]
    row = table.loc["conv1"]
    assert (row.n_filters, row.dead_a, row.dead_b) == (5, 3, 0) and row.matched_mean == pytest.approx(1.0)


def test_network_vs_itself_is_one_and_above_chance(images):
    net = tiny(0)
    result = FilterComparison(n_baseline=3, progress=False).compare(net, net, images=images)
    table = result.table
    assert list(table.layer_a) == ["conv1", "conv2", "fc"] == list(table.layer_b)
    assert np.allclose(table.matched_mean, 1.0) and (table.frac_above == 1.0).all()
    assert np.allclose(np.diag(result.cka), 1.0)
    assert (table.verdict == "more than chance").all()
    assert (table.chance_mean < 0.7).all() and (table.cka_chance < 1.0).all()
    assert result.cka_chance.shape == (3, 3, 3) and result.n_images == 40


def test_random_vs_random_sits_inside_the_chance_interval(images):
    a = Network(tiny(0)).reinitialised(101)
    b = Network(tiny(0)).reinitialised(202)
    result = FilterComparison(n_baseline=5, random_state=7, progress=False).compare(a, b, images=images)
    table = result.table
    assert (table.verdict == "chance level").all(), table
    assert (table.cka_verdict == "chance level").all(), table
    assert ((table.chance_lo <= table.matched_mean) & (table.matched_mean <= table.chance_hi)).all()


def test_reinitialised_is_seeded_and_leaves_the_original_alone():
    net = Network(tiny(0))
    before = net.module.conv1.weight.detach().clone()
    r1, r2, r3 = net.reinitialised(5), net.reinitialised(5), net.reinitialised(6)
    assert torch.equal(net.module.conv1.weight, before)
    assert torch.equal(r1.module.conv1.weight, r2.module.conv1.weight)
    assert not torch.equal(r1.module.conv1.weight, r3.module.conv1.weight)
    assert not torch.equal(r1.module.conv1.weight, before)


def test_reinitialisation_of_parameters_no_reset_covers():
    class Scaled(nn.Module):
        image_size = 8

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.gain = nn.Parameter(torch.full((4,), 3.0))

        def forward(self, x):
            return self.conv(x) * self.gain[:, None, None]

    with pytest.warns(UserWarning, match="keep their trained values.*gain"):
        twin = Network(Scaled()).reinitialised(0)
    assert torch.equal(twin.module.gain, torch.full((4,), 3.0))

    class Resets(Scaled):
        def reset_parameters(self):  # the network's own reset is trusted to cover everything
            self.conv.reset_parameters()
            nn.init.ones_(self.gain)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twin = Network(Resets()).reinitialised(0)
    assert torch.equal(twin.module.gain, torch.ones(4))


def test_first_layer_filters_are_compared_in_rgb_order():
    rgb = tiny(0)
    bgr = copy.deepcopy(rgb)
    with torch.no_grad():
        bgr.conv1.weight.copy_(rgb.conv1.weight.flip(1))  # the same filters for a BGR input
    bgr.colour_order = "BGR"
    a, b = Network(rgb), Network(bgr)
    assert b.input_layer == "conv1" and np.allclose(a.filters("conv1"), b.filters("conv1"))
    result = FilterComparison(n_baseline=2, progress=False).compare(a, b)
    assert result.table.set_index("layer_a").loc["conv1"].matched_mean == pytest.approx(1.0)


def test_conv_transpose_filters_are_per_output_channel():
    up = nn.Sequential(nn.ConvTranspose2d(4, 6, 3), nn.ConvTranspose2d(6, 4, 3, groups=2))
    layers = Network(up).layers()
    assert [l.shape for l in layers] == [(6, 4, 3, 3), (4, 3, 3, 3)]
    w = up[0].weight.detach().double().numpy()
    assert np.allclose(layers[0].filters()[2], w[:, 2].reshape(-1))
    w1 = up[1].weight.detach().double().numpy()  # (6, 2, 3, 3): group 1 = input channels 3..5
    assert np.allclose(layers[1].filters()[3], w1[3:6, 1].reshape(-1))


# --------------------------------------------------------------------------- pairing


def test_mismatched_architectures_raise_a_clear_error(images):
    a, b = Network(tiny(0), "small"), Network(tiny(0, width=6, kernel=5), "wide")
    with pytest.raises(LayerMismatchError, match=r"conv1: \(8, 3, 3, 3\) vs \(6, 3, 5, 5\)"):
        pair_layers(a, b)
    other = Network(nn.Sequential(nn.Conv2d(3, 5, 7), nn.Conv2d(5, 5, 1)), "other", input_size=16)
    with pytest.raises(LayerMismatchError, match=r"no layer of 'small'.*conv1 \(8, 3, 3, 3\).*0 \(5, 3, 7, 7\)"):
        pair_layers(a, other)
    with pytest.raises(LayerMismatchError, match="has no layer 'conv9'.*conv1"):
        pair_layers(a, b, pairs="conv9=conv1")
    with pytest.raises(LayerMismatchError, match="filters of different shapes"):
        pair_layers(a, b, pairs="conv1=conv1")
    with pytest.raises(LayerMismatchError, match="not 'layer_a=layer_b'"):
        pair_layers(a, b, pairs="conv1")
    # by shape: fc and conv2 differ in width only through conv1, so they pair by order
    assert [(x.name, y.name) for x, y in pair_layers(a, b, pairing="shape")] == [("fc", "fc")]
    # no corresponding layers: CKA only when asked
    result = FilterComparison(n_baseline=2, progress=False).compare(a, other, images=images[:8],
                                                                    require_pairs=False)
    assert result.pairs == [] and "no layer of" in result.pairing_note and result.cka.shape == (3, 2)


# --------------------------------------------------------------------------- specs


@pytest.fixture
def fake_module(monkeypatch):
    module = types.ModuleType("fp_fake_nets")
    module.make = lambda width="8": tiny(0, width=int(width))
    module.not_a_net = lambda: "hello"
    monkeypatch.setitem(sys.modules, "fp_fake_nets", module)
    return module


def test_network_specs(fake_module):
    net = load_network("fp_fake_nets:make=6")
    assert net.layer("conv1").shape == (6, 3, 3, 3) and net.name == "fp_fake_nets:make=6"
    assert load_network("fp_fake_nets:make").layer("conv1").shape == (8, 3, 3, 3)
    cases = {
        "no-such-backbone": "neither a registered backbone",
        "fp_no_such_module_xyz:make": "cannot import module 'fp_no_such_module_xyz'",
        "fp_fake_nets:missing": "has no callable 'missing'",
        "fp_fake_nets:not_a_net": "returned str, not a torch.nn.Module",
        "fp_fake_nets:make=abc": r"make\('abc'\) failed: ValueError",
        "fp_fake_nets:": "not 'package.module:function",
        "bad name:make": "not 'package.module:function",
        "": "non-empty",
    }
    for spec, message in cases.items():
        with pytest.raises(NetworkSpecError, match=message):
            load_network(spec)
    with pytest.raises(NetworkSpecError, match="cannot be fed images"):
        Network(nn.Sequential(nn.Conv2d(3, 4, 3))).activations(np.zeros((2, 8, 8, 3), np.uint8))


def test_probes_never_imports_decoders():
    # static check over the whole package: decoders may only come in through a spec string at run time
    offenders = []
    for path in (REPO / "probes").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "decoders"]
    assert offenders == []


# --------------------------------------------------------------------------- backbones


def test_backbone_layers_and_hooks_are_cleaned_up():
    net = load_network("dlib-resnet29", pretrained=False)
    layers = net.layers()
    assert len(layers) == 30 and layers[0].name == "conv32_down.conv.conv" and layers[-1].kind == "linear"
    out = net.activations(np.zeros((2, 160, 160, 3), np.uint8), ["conv32_down.conv.conv", "fc"], layout="utkface")
    assert tuple(out["conv32_down.conv.conv"].shape) == (2, 32, 72, 72) and tuple(out["fc"].shape) == (2, 128)
    assert all(not m._forward_hooks for m in net.module.modules())


def test_graph_backbone_vs_itself(faceapi_weights):
    try:
        net = load_network("mobileface")
    except Exception as exc:  # noqa: BLE001 - weights not fetched here
        pytest.skip(f"mobileface weights unavailable: {exc}")
    assert len(net.layers()) == 18 and net.layer("dense/kernel").shape == (256, 2048)
    faces = np.random.default_rng(0).integers(0, 256, (6, 112, 112, 3), dtype=np.uint8)
    result = FilterComparison(n_baseline=2, progress=False).compare(net, net, images=faces)
    assert np.allclose(result.table.matched_mean, 1.0) and np.allclose(np.diag(result.cka), 1.0, atol=1e-6)
    twin = net.reinitialised(3)
    assert not torch.equal(twin.layer("conv1_weight").weight, net.layer("conv1_weight").weight)
    # the twin computes with its own weights (a deep-copied graph would not)
    ours, theirs = net.activations(faces[:2], ["conv1_weight"]), twin.activations(faces[:2], ["conv1_weight"])
    assert not torch.allclose(ours["conv1_weight"], theirs["conv1_weight"])
    with pytest.raises(NetworkSpecError, match="cannot be copied"):
        Network(nn.Sequential(net.module.net, nn.Linear(256, 2))).reinitialised(0)


# --------------------------------------------------------------------------- CLI


def test_cli_writes_results_and_refuses_to_overwrite(fake_module, tmp_path, capsys):
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    argv = ["fp_fake_nets:make", "fp_fake_nets:make", "--random-b", "--dataset", "folder", "--data-root",
            str(folder), "--n-images", "8", "--n-baseline", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "matched_mean" in printed and "chance_hi" in printed
    table = pd.read_csv(out / "filters.csv")
    assert list(table.columns[:14]) == ["layer_a", "layer_b", "shape", "n_filters", "dead_a", "dead_b",
                                        "matched_mean", "frac_above", "chance_mean", "chance_lo", "chance_hi",
                                        "chance_frac", "cka", "cka_chance"]
    assert "verdict" in table.columns and len(table) == 3 and (table.matched_mean < 0.99).all()
    figures = {f"{n}.{ext}" for n in ("matched", "cka") for ext in ("png", "pdf", "svg")}
    assert {p.name for p in out.iterdir()} == {"filters.csv", "filters.json", "cka.csv"} | figures
    assert_print_ready(out / "matched.svg") and assert_print_ready(out / "cka.svg")
    assert len(pd.read_csv(out / "cka.csv")) == 9
    assert main(argv) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--no-cka"]) == 0
    assert main(["fp_fake_nets:make", "fp_no_such_module_xyz:f", "--no-cka", "--out", str(tmp_path / "x")]) == 2
    assert "cannot import" in capsys.readouterr().err
