"""Perturbation analysis: transforms, attacks, template drift (probes) and the command with reconstructions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from probes.backbones.registry import BackboneSpec, FaceBackbone
from probes.errors import ImageError, UnknownNameError
from probes.template_drift import (
    FAMILIES,
    PerturbationError,
    TemplateDrift,
    backbone_view,
    failure_strengths,
    fgsm,
    pgd,
    plot_drift,
    rotate,
    sign_noise,
    summarise,
    translate,
    zoom,
)

SIDE = 32


class TinyNet(nn.Module):
    """Two strided convs and a linear map of the whole feature map: sensitive to where things are."""

    def __init__(self, nan: bool = False):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.Tanh(), nn.Conv2d(8, 8, 3, 2, 1), nn.Tanh())
        self.fc = nn.Linear(8 * 8 * 8, 16)
        self.nan = nan

    def forward(self, x):
        out = self.fc(self.features(x).flatten(1))
        return out * float("nan") if self.nan else out


def tiny_backbone(metric: str = "cosine", nan: bool = False, seed: int = 0) -> FaceBackbone:
    torch.manual_seed(seed)
    spec = BackboneSpec(name=f"tiny-{metric}", builder=TinyNet, loader=lambda net, path: "none",
                        input_size=(SIDE, SIDE), mean=(127.5,) * 3, std=(64.0,) * 3, colour_order="RGB",
                        embedding_size=16, embedding_layer="fc", tap_layers=("fc",), weight_files=(), source="test",
                        licence="-", crops={"chip": (0.0, 0.0, 1.0, 1.0), "lfw": (0.25, 0.25, 0.5, 0.5)},
                        verification_metric=metric)
    return FaceBackbone(spec, TinyNet(nan), "random-init").eval()


def smooth_images(n: int = 6, side: int = SIDE, seed: int = 0) -> np.ndarray:
    """Random 8 x 8 images upsampled: structure at several scales, like a blurry face."""
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.uniform(0, 1, (n, 3, 8, 8))).float()
    x = torch.nn.functional.interpolate(low, size=(side, side), mode="bicubic", align_corners=False).clamp(0, 1)
    return (x * 255).round().byte().permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def tiny():
    return tiny_backbone()


# --------------------------------------------------------------------------- transforms


def test_geometric_transforms_move_pixels_where_they_should():
    x = torch.rand(2, 3, 16, 16)
    # An integer shift is a roll with black coming in.
    shifted = translate(x, 3, -2)
    assert torch.allclose(shifted[..., :14, 3:], x[..., 2:, :13], atol=1e-5)  # right 3, up 2
    assert shifted[..., :, :3].abs().max() == 0 and shifted[..., 14:, :].abs().max() == 0
    # A quarter turn of a square image is a 90-degree array rotation (either way round).
    quarter = rotate(x, 90)
    assert min((quarter - torch.rot90(x, k, dims=(-2, -1))).abs().max().item() for k in (1, -1)) < 1e-5
    # Zooming by 2 about the centre reads the central half; zooming by 1 and turning by 0 change nothing.
    zoomed = zoom(x, 2.0)
    assert torch.allclose(zoomed[..., 7:9, 7:9].mean(), x[..., 7:9, 7:9].mean(), atol=0.2)
    assert torch.equal(zoom(x, 1.0), x) and torch.equal(rotate(x, 0), x) and torch.equal(translate(x, 0, 0), x)
    noisy = sign_noise(x, 0.01, torch.Generator().manual_seed(0))
    assert (noisy - x).abs().max() <= 0.01 + 1e-6 and noisy.min() >= 0 and noisy.max() <= 1


def test_zero_strengths_leave_templates_unchanged(tiny):
    images = smooth_images(4)
    drift = TemplateDrift(tiny, threshold=0.9)
    for family, zero in (("rotation", 0), ("translation", 0), ("scaling", 1), ("occlusion", 0), ("noise", 0),
                         ("fgsm", 0), ("pgd", 0)):
        table = drift.measure(images, family, [zero], positions=["eyes", "random"] if family == "occlusion" else None)
        assert len(table) == 4 * (2 if family == "occlusion" else 1)
        np.testing.assert_allclose(table["cosine"], 1.0, atol=1e-6, err_msg=family)
        np.testing.assert_allclose(table["l2"], 0.0, atol=1e-5, err_msg=family)
        assert (table["linf"] == 0).all() and table["verified"].all()


def test_views_are_what_the_backbone_reads(tiny):
    frames = smooth_images(3, side=64, seed=1)  # "lfw" crop: the central half, 32 px
    view = backbone_view(tiny, frames, "lfw")
    assert view.shape == (3, 3, SIDE, SIDE)
    np.testing.assert_allclose(tiny.embed(frames, "lfw"), tiny.embed(view, "chip"), atol=1e-5)
    table = TemplateDrift(tiny).measure(frames, "rotation", [0, 20], layout="lfw")
    assert table["verified"].isna().all() and (table.loc[table.strength == 0, "cosine"] > 1 - 1e-6).all()


# --------------------------------------------------------------------------- drift grows with strength


def test_drift_grows_with_strength(tiny):
    images = smooth_images(8)
    drift = TemplateDrift(tiny, threshold=0.95, seed=3)
    # Strengths below where a random net's cosine bottoms out near 0 (beyond, it only fluctuates).
    for family, strengths, positions in (("rotation", [0, 2, 5, 10, 20], None),
                                         ("translation", [0, 0.5, 1, 2, 4], None),
                                         ("occlusion", [0, 0.1, 0.2, 0.4, 0.6], ["centre"]),
                                         ("noise", [0, 0.02, 0.05, 0.08, 0.2], None)):
        table = drift.measure(images, family, strengths, positions=positions)
        mean = table.groupby("strength")["cosine"].mean().loc[strengths].to_numpy()
        assert np.all(np.diff(mean) <= 1e-3), (family, mean)  # weakly monotone on average
        assert mean[-1] < mean[0] - 0.01, (family, mean)
        verified = table.groupby("strength")["verified"].mean().loc[strengths].to_numpy()
        assert verified[0] == 1 and verified[-1] <= verified[0]
    # Scaling drifts both ways from 1.
    table = drift.measure(images, "scaling", [0.5, 1.0, 2.0])
    mean = table.groupby("strength")["cosine"].mean()
    assert mean[1.0] > 1 - 1e-6 and mean[0.5] < 0.999 and mean[2.0] < 0.999


# --------------------------------------------------------------------------- attacks


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_attacks_beat_random_noise_and_stay_in_their_ball(metric):
    net = tiny_backbone(metric, seed=1)
    images = smooth_images(4, seed=2)
    x = backbone_view(net, images)
    clean = net.embed(x)

    def mean_cos(adv):
        e = net.embed(adv)
        return float(np.mean((e * clean).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(clean, axis=1)))

    def mean_score(adv):  # what the attacks maximise the drift of: cosine, or minus the L2 distance
        return mean_cos(adv) if metric == "cosine" else -float(np.linalg.norm(net.embed(adv) - clean, axis=1).mean())

    assert torch.equal(fgsm(net, x, 0.0), x) and torch.equal(pgd(net, x, 0.0), x)
    for eps in (0.01, 0.03):
        noise = sign_noise(x, eps, torch.Generator().manual_seed(0))
        adv_f = fgsm(net, x, eps)
        adv_p = pgd(net, x, eps, steps=3, generator=torch.Generator().manual_seed(0))
        for adv in (adv_f, adv_p):
            assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        assert mean_cos(adv_f) < mean_cos(noise) and mean_cos(adv_p) < mean_cos(noise), eps
        assert mean_score(adv_p) <= mean_score(adv_f) + 1e-6  # PGD keeps the FGSM point if nothing beats it
    # In the drift table too; the L-inf column reports the budget actually used.
    drift = TemplateDrift(net, seed=0, pgd_steps=2)
    table = pd.concat([drift.measure(images, f, [0.02]) for f in ("noise", "fgsm", "pgd")])
    means = table.groupby("family")["cosine"].mean()
    assert means["fgsm"] < means["noise"] and means["pgd"] < means["noise"]
    assert (table["linf"] <= 0.02 + 1e-6).all()


# --------------------------------------------------------------------------- tables, summaries, figures


def test_table_is_tidy_deterministic_and_summarised(tiny):
    images = smooth_images(5)
    drift = TemplateDrift(tiny, threshold=0.97, seed=7)
    table = drift.measure(images, "occlusion", [0, 0.3, 0.6], positions=["eyes", "random"], names=list("abcde"))
    assert list(table.columns[:6]) == ["image", "name", "family", "variant", "strength", "unit"]
    assert len(table) == 5 * 2 * 3 and set(table["variant"]) == {"eyes", "random"}
    assert (table["verified"] == (table["score"] >= 0.97)).all() and (table["score"] == table["cosine"]).all()
    again = TemplateDrift(tiny, threshold=0.97, seed=7).measure(images, "occlusion", [0, 0.3, 0.6],
                                                                  positions=["eyes", "random"], names=list("abcde"))
    pd.testing.assert_frame_equal(table, again)
    other = TemplateDrift(tiny, threshold=0.97, seed=8).measure(images, "occlusion", [0.3], positions=["random"])
    assert not np.allclose(other["cosine"], table.query("variant == 'random' and strength == 0.3")["cosine"])
    summary = summarise(table)
    assert len(summary) == 6 and (summary["n"] == 5).all()
    row = summary.query("variant == 'eyes' and strength == 0.6").iloc[0]
    assert row["cosine_ci_low"] <= row["cosine_mean"] <= row["cosine_ci_high"]
    assert row["verified_ci_low"] <= row["verified_rate"] <= row["verified_ci_high"]
    fails = failure_strengths(summary)
    assert set(fails["variant"]) == {"eyes", "random"}
    for _, f in fails.iterrows():
        rates = summary[(summary.variant == f["variant"])].set_index("strength")["verified_rate"]
        if np.isnan(f["strength"]):
            assert (rates >= 0.5).all()
        else:
            assert rates[f["strength"]] < 0.5 and (rates[rates.index < f["strength"]] >= 0.5).all()
    fig = plot_drift(table)
    assert len(fig.axes) == 2 and fig.axes[0].get_legend() is not None  # cosine, verified; one line per position
    assert plot_drift(table, metrics=["cosine"]).axes[0].get_ylabel().startswith("cosine")
    euclid = TemplateDrift(tiny_backbone("euclidean"), threshold=-0.5).measure(images, "rotation", [0, 20])
    assert (euclid["score"] == -euclid["l2"]).all() and len(plot_drift(euclid).axes) == 3


def test_bad_inputs_get_clear_errors(tiny):
    images = smooth_images(2)
    drift = TemplateDrift(tiny)
    with pytest.raises(UnknownNameError, match="valid families: rotation, translation, scaling, occlusion"):
        drift.measure(images, "blur", [1])
    for family, bad, valid in (("rotation", 200, r"\[0, 180\]"), ("scaling", 0, "exclusive"),
                               ("occlusion", 1.5, r"\[0, 1\]"), ("fgsm", -0.1, r"\[0, 1\]"),
                               ("pgd", float("nan"), "defaults"), ("translation", SIDE + 1, r"\[0, 32\]")):
        with pytest.raises(PerturbationError, match=f"invalid {family} strength.*{valid}"):
            drift.measure(images, family, [0, bad])
    with pytest.raises(PerturbationError, match="no strengths"):
        drift.measure(images, "rotation", [])
    with pytest.raises(UnknownNameError, match="valid positions: eyes, left_eye"):
        drift.measure(images, "occlusion", [0.1], positions=["ear"])
    with pytest.raises(PerturbationError, match="occlusion only"):
        drift.measure(images, "rotation", [10], positions=["eyes"])
    with pytest.raises(ImageError, match="too small"):
        drift.measure(smooth_images(2, side=8), "rotation", [10])
    with pytest.raises(PerturbationError, match="NaN or infinite values, e.g. image_0"):
        TemplateDrift(tiny_backbone(nan=True)).measure(images, "rotation", [10])
    with pytest.raises(PerturbationError, match="minus the L2 distance"):
        TemplateDrift(tiny_backbone("euclidean"), threshold=0.6)
    with pytest.raises(PerturbationError, match="eps must be a number in"):
        fgsm(tiny, torch.rand(1, 3, SIDE, SIDE), 2.0)
    assert set(FAMILIES) == {"rotation", "translation", "scaling", "occlusion", "noise", "fgsm", "pgd"}


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def tiny_run(data_root, tmp_path_factory):
    """A decoder trained 2 steps against a random-init dlib net on 30 LFW images (people with >= 2 images)."""
    from decoders.train import main as train_main

    root = tmp_path_factory.mktemp("tiny-perturb")
    args = ["--random-backbone", "--dataset", "lfw", "--data-root", str(data_root), "--max-images", "30",
            "--min-images-per-person", "2", "--image-size", "32", "--width", "0.25", "--batch-size", "4",
            "--perceptual", "0", "--identity", "0", "--save-every", "2", "--sample-every", "0",
            "--validate-every", "0", "--val-images", "2", "--cache-dir", str(root / "cache"), "--no-progress",
            "--steps", "2", "--out", str(root / "run")]
    assert train_main(args) == 0
    return {"run": root / "run", "cache": root / "cache", "data_root": data_root}


@pytest.mark.slow
@pytest.mark.data
def test_command_writes_figures_strips_and_tables(tiny_run, tmp_path, capsys):
    from PIL import Image

    from decoders.perturbation import main

    out = tmp_path / "perturb"
    args = ["--checkpoint", str(tiny_run["run"]), "--data-root", str(tiny_run["data_root"]), "--max-images", "3",
            "--families", "occlusion", "fgsm", "pgd",
            "--strengths", "occlusion=0.3", "--strengths", "fgsm=0,0.02", "--strengths", "pgd=0.02",
            "--positions", "eyes", "mouth", "--pgd-steps", "1", "--strip-images", "2",
            "--max-pairs", "30", "--fmr", "0.01", "--cache-dir", str(tiny_run["cache"]), "--no-progress"]
    assert main(args + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verification fails" in printed and "occlusion" in printed
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 3 * (2 + 2 + 1)
    assert {"cosine", "l2", "score", "verified", "recon_cosine", "recon_verified", "recon_cosine_perturbed"} <= set(
        table.columns)
    assert (table.query("family == 'fgsm' and strength == 0")["cosine"] > 1 - 1e-5).all()
    assert (table.query("family == 'pgd'")["linf"] <= 0.02 + 1e-6).all()
    assert table["recon_cosine"].between(-1, 1).all()
    results = json.loads((out / "results.json").read_text())
    conf = results["configuration"]
    assert conf["strengths"]["fgsm"] == [0.0, 0.02] and conf["occlusion_positions"] == ["eyes", "mouth"]
    assert conf["drift"]["pgd_steps"] == 1 and results["threshold"]["fmr"] == 0.01
    assert results["data"]["n_images"] == 3 and len(results["summary"]) == len(pd.read_csv(out / "summary.csv"))
    files = {p.name for p in out.iterdir()}
    # Figures come as PNG, PDF and SVG (probes.outputs.save_figure); the face strips are PNG only.
    figures = [f"drift_{f}" for f in ("occlusion", "fgsm", "pgd", "attacks")]
    expected = {f"{name}.{ext}" for name in figures for ext in ("png", "pdf", "svg")} | {
        "strip_occlusion_eyes.png", "strip_occlusion_mouth.png",
        "strip_fgsm.png", "strip_pgd.png", "results.csv", "summary.csv", "results.json"}
    assert files == expected
    strip = Image.open(out / "strip_fgsm.png")
    assert strip.size[0] > 2 * 96 and strip.size[1] > 2 * 2 * 96  # original + 1 strength; 2 faces x 2 rows
    # An existing --out is refused and left as it was; --overwrite replaces it.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(args + ["--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    small = ["--checkpoint", str(tiny_run["run"]), "--data-root", str(tiny_run["data_root"]), "--max-images", "2",
             "--families", "scaling", "--strengths", "scaling=1,0.8", "--threshold", "-0.5", "--strip-images", "0",
             "--cache-dir", str(tiny_run["cache"]), "--no-progress", "--out", str(out)]
    assert main(small + ["--overwrite"]) == 0
    assert {p.name for p in out.iterdir()} == {"drift_scaling.png", "drift_scaling.pdf", "drift_scaling.svg",
                                               "results.csv", "summary.csv", "results.json"}
    assert json.loads((out / "results.json").read_text())["threshold"]["source"] == "given (--threshold)"
    # Bad strengths and families: a clear error before any work, nothing written.
    assert main(small[:-1] + [str(tmp_path / "o2"), "--strengths", "rotation=500"]) == 2
    assert "invalid rotation strength(s) 500" in capsys.readouterr().err
    assert main(small[:-1] + [str(tmp_path / "o3"), "--strengths", "blur=1"]) == 2
    assert "valid families: rotation" in capsys.readouterr().err
    assert main(small[:-1] + [str(tmp_path / "o4"), "--threshold", "0.6"]) == 2
    assert "minus the L2 distance" in capsys.readouterr().err
    assert not any((tmp_path / f"o{i}").exists() for i in (2, 3, 4))
