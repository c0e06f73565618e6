"""Decoder reconstruction and attack evaluation: helpers, galleries, output folders, both CLIs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from decoders.dfd.gallery import GalleryItem, write_grid, write_html
from decoders.dfd.inputs import source_names
from decoders.dfd.scoring import ssim_scores
from decoders.dfd.transfer import reframe
from decoders.evaluate import main as evaluate_main
from decoders.reconstruct import main as reconstruct_main
from probes.outputs import OutputFolderError, staged_output
from probes.stats import wilson_interval
from probes.verification import (
    LFWScores,
    VerificationError,
    cross_identity_scores,
    pair_scores,
    success_attack_rate,
    thresholds_at_fmrs,
)

DATA_URI = re.compile(r"src='data:image/png;base64,[A-Za-z0-9+/=]{40,}'")


# --------------------------------------------------------------------------- SAR, thresholds, SSIM


def test_success_attack_rate_and_wilson_interval():
    t = 0.5
    assert success_attack_rate([0.6, 0.9, 0.5], t).rate == 1.0  # a score at the threshold is accepted
    low = success_attack_rate([0.1, 0.2, 0.49], t)
    assert (low.rate, low.accepted, low.n) == (0.0, 0, 3)
    half = success_attack_rate([0.1, 0.9, 0.2, 0.8], t)
    assert (half.rate, half.accepted) == (0.5, 2) and half.ci_low < 0.5 < half.ci_high
    # Wilson's interval: known values, bounds stay in [0, 1], never collapse at 0 or n.
    np.testing.assert_allclose(wilson_interval(5, 10), (0.2366, 0.7634), atol=1e-4)
    lo0, hi0 = wilson_interval(0, 10)
    assert lo0 == 0.0 and hi0 == pytest.approx(0.2775, abs=1e-4)
    lo1, hi1 = wilson_interval(10, 10)
    assert hi1 == 1.0 and lo1 == pytest.approx(1 - 0.2775, abs=1e-4)
    width = [np.subtract(*wilson_interval(k, n)[::-1]) for k, n in ((50, 1000), (5, 100))]
    assert width[0] < width[1]  # more comparisons, narrower interval
    assert all(np.isnan(wilson_interval(0, 0)))
    with pytest.raises(VerificationError, match="NaN"):
        success_attack_rate([0.1, np.nan], t)


def _synthetic_scores(n_pairs_imp=3000, n_cross=30000, seed=0) -> LFWScores:
    rng = np.random.default_rng(seed)
    return LFWScores("cosine", genuine=rng.normal(3, 1, 3000), impostor_pairs=rng.normal(0, 1, n_pairs_imp),
                     impostor_cross=rng.normal(0, 1, n_cross), n_images=100, n_identities=50)


def test_thresholds_at_fmr_rest_on_one_large_impostor_population():
    scores = _synthetic_scores()
    t3, t4 = thresholds_at_fmrs(scores, [1e-3, 1e-4])
    # Both FMRs from the one larger (cross-identity) population, never 0.1% from 3 accepted impostors.
    assert (t3.impostor_set, t3.n_impostors, t3.impostors_allowed) == ("cross", 30000, 30)
    assert (t4.impostor_set, t4.n_impostors, t4.impostors_allowed) == ("cross", 30000, 3)
    for t, imp in ((t3, scores.impostor_cross), (t4, scores.impostor_cross)):
        accepted = int((imp >= t.threshold).sum())
        assert accepted == t.impostors_accepted <= t.impostors_allowed
        assert t.realised_fmr == accepted / len(imp) <= t.fmr
        assert (imp >= np.nextafter(t.threshold, -np.inf)).sum() > accepted  # the smallest such threshold
    # 10 / FMR impostors: 30,000 are enough for 0.1% and flagged as too few for 0.01%.
    assert (t3.min_impostors, t3.enough_impostors) == (10_000, True)
    assert (t4.min_impostors, t4.enough_impostors) == (100_000, False)
    assert "threshold" in t3.alternatives["pairs"] and "error" in t4.alternatives["pairs"]
    # Attack scores all above / all below the threshold.
    assert success_attack_rate(np.full(20, t4.threshold + 1), t4.threshold).rate == 1.0
    assert success_attack_rate(np.full(20, t4.threshold - 1), t4.threshold).rate == 0.0
    # Too few impostors for 0.01%: a clear error, never an extrapolated threshold.
    with pytest.raises(VerificationError, match="needs at least 10000 impostor scores"):
        thresholds_at_fmrs(_synthetic_scores(n_cross=5000), [1e-4])
    with pytest.raises(VerificationError, match="needs at least"):
        thresholds_at_fmrs(scores, [1e-4], impostors="pairs")


def test_cross_identity_scores_are_all_pairs_of_different_people():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(7, 5))
    ids = ["a", "a", "b", "c", "c", "c", "d"]
    pairs = [(i, j) for i in range(7) for j in range(i + 1, 7) if ids[i] != ids[j]]
    for metric in ("cosine", "euclidean"):
        got = cross_identity_scores(t, ids, metric, block=3)
        want = pair_scores(t[[i for i, _ in pairs]], t[[j for _, j in pairs]], metric)
        np.testing.assert_allclose(np.sort(got), np.sort(want), atol=1e-9)


def test_ssim_is_scikit_images():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    got = ssim_scores(a, b)
    want = structural_similarity(a[1] / 255.0, b[1] / 255.0, channel_axis=-1, data_range=1.0)
    assert got[1] == pytest.approx(want, abs=1e-12)
    assert ssim_scores(a, a) == pytest.approx([1.0, 1.0]) and got.max() < 0.99


def test_reframe_puts_the_chip_back_where_the_crop_was():
    from probes.backbones.registry import get_spec

    spec = get_spec("dlib-resnet29")  # lfw crop (0.3, 0.25, 0.5, 0.5), padded to square
    yy, xx = np.mgrid[0:250, 0:250]
    frame = torch.from_numpy(np.stack([yy / 250, xx / 250, (yy + xx) / 500])).float()
    y0, x0, y1, x1 = 75, 62, 200, 188  # round() of the crop fractions on 250 px, as preprocess does
    chip = torch.nn.functional.interpolate(frame[None, :, y0:y1, x0:x1], size=(112, 112), mode="bilinear",
                                           align_corners=False, antialias=True)[0]
    back = reframe(chip, spec, "lfw", (250, 250))
    assert back.shape == (3, 250, 250)
    assert (back[:, y0:y1, x0:x1] - frame[:, y0:y1, x0:x1]).abs().mean() < 0.01
    assert back[:, :y0].abs().max() == 0 and back[:, :, x1:].abs().max() == 0  # black outside: no source leaks


# --------------------------------------------------------------------------- galleries and output folders


def test_gallery_writers(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    items = [GalleryItem(f"face<{i}>", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
                         rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), {"cosine": 0.5 + i / 10, "ok": True})
             for i in range(3)]
    page = write_html(items, tmp_path / "g.html", title="T & t", meta={"step": 3}).read_text()
    assert len(DATA_URI.findall(page)) == 6 and "face&lt;1&gt;" in page and "T &amp; t" in page
    assert "<th>original</th>" in page and "cosine: 0.600" in page
    grid = Image.open(write_grid(items, tmp_path / "g.png", columns=2))
    assert grid.size[0] > 2 * 2 * 96 and grid.size[1] > 2 * 96  # 2 x 2 cells of two enlarged panels
    only = [GalleryItem("t0", items[0].reconstruction, None, {"cosine": 0.9})]
    assert "<th>original</th>" not in write_html(only, tmp_path / "t.html").read_text()


def test_staged_output_never_loses_what_was_there(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(OutputFolderError, match="already exists"), staged_output(out):
        pass
    with pytest.raises(RuntimeError, match="midway"), staged_output(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("second")
        raise RuntimeError("failure midway")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"] and (out / "a.txt").read_text() == "first"
    with staged_output(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="is a file, not a folder"), staged_output(tmp_path / "file" / "out"):
        pass


def test_source_names_are_unique_and_safe(tmp_path):
    names = source_names([tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", tmp_path / "a b.png"], tmp_path)
    assert names == ["a__x", "b__x", "a_b"]
    assert source_names(["/d/Bob/Bob_0001.jpg", "/e/Bob/Bob_0001.jpg"]) == ["Bob_0001", "Bob_0001-1"]


# --------------------------------------------------------------------------- a tiny trained run


@pytest.fixture(scope="module")
def tiny_run(data_root, tmp_path_factory):
    """A decoder trained 2 steps against a random-init dlib net on 30 LFW images (people with >= 2 images)."""
    from decoders.train import main as train_main

    root = tmp_path_factory.mktemp("tiny-dfd")
    cache = root / "cache"
    args = ["--random-backbone", "--dataset", "lfw", "--data-root", str(data_root), "--max-images", "30",
            "--min-images-per-person", "2", "--image-size", "32", "--width", "0.25", "--batch-size", "4",
            "--perceptual", "0", "--identity", "0", "--save-every", "2", "--sample-every", "0",
            "--validate-every", "0", "--val-images", "2", "--cache-dir", str(cache), "--no-progress",
            "--steps", "2", "--out", str(root / "run")]
    assert train_main(args) == 0
    split = json.loads((root / "run" / "split.json").read_text())["parts"]["lfw"]
    assert split["test"]["paths"]
    return {"run": root / "run", "cache": cache, "data_root": data_root, "split": split}


@pytest.fixture(scope="module")
def lpips_flags():
    """[] when LPIPS weights are present, else ["--no-lpips"]."""
    from probes import weights

    try:
        weights.weight_path("alexnet.ckpt")
        return []
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return ["--no-lpips"]


def _lpips_or_skip(lpips_flags):
    if lpips_flags:
        pytest.skip("LPIPS weights (alexnet.ckpt) unavailable")


def test_reconstruct_folder_writes_pngs_grid_and_html_and_keeps_old_results(tiny_run, lpips_flags, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "faces"
    folder.mkdir()
    for p in tiny_run["split"]["test"]["paths"][:3]:
        shutil.copy(p, folder)  # a tmp folder, outside the repository
    n = len(list(folder.iterdir()))
    out = tmp_path / "recon"
    base = ["--checkpoint", str(tiny_run["run"]), "--images", str(folder), "--layout", "lfw",
            "--cache-dir", str(tiny_run["cache"]), "--no-progress"] + lpips_flags
    assert reconstruct_main(base + ["--out", str(out)]) == 0
    pngs = sorted((out / "reconstructions").glob("*.png"))
    assert [p.stem for p in pngs] == sorted(p.stem for p in folder.iterdir()) and len(pngs) == n
    assert Image.open(pngs[0]).size == (32, 32)
    assert Image.open(out / "gallery.png").size[0] > 96
    page = (out / "gallery.html").read_text()
    assert len(DATA_URI.findall(page)) == 2 * n and "<th>original</th>" in page
    rows = (out / "scores.csv").read_text().splitlines()
    assert rows[0].startswith("name,source,reconstruction,identity_cosine,l2,lpips") and len(rows) == n + 1
    summary = json.loads((out / "reconstruct.json").read_text())
    assert summary["n"] == n and -1 <= summary["means"]["identity_cosine"] <= 1
    if not lpips_flags:
        assert 0 < summary["means"]["lpips"] < 2
    capsys.readouterr()
    # An existing --out is refused and left as it was.
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert reconstruct_main(base + ["--out", str(out), "--max-images", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert reconstruct_main(base + ["--out", str(out), "--max-images", "1", "--overwrite"]) == 0
    assert len(list((out / "reconstructions").glob("*.png"))) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces", "recon"]  # no temporary folders left


def test_reconstruct_bad_inputs(tiny_run, tmp_path, capsys, monkeypatch):
    run = str(tiny_run["run"])
    common = ["--cache-dir", str(tiny_run["cache"]), "--no-progress", "--no-lpips"]

    def fails(args, message):
        assert reconstruct_main(args + common) == 2
        err = capsys.readouterr().err
        assert message in err, err

    good = np.random.default_rng(0).normal(size=(3, 128)).astype(np.float32)
    np.save(tmp_path / "wrong.npy", good[:, :64])
    fails(["--checkpoint", run, "--templates", str(tmp_path / "wrong.npy"), "--out", str(tmp_path / "o1")],
          "templates have dimension 64, but the checkpoint decodes 128-D templates")
    nan = good.copy()
    nan[1, 5] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    fails(["--checkpoint", run, "--templates", str(tmp_path / "nan.npy"), "--out", str(tmp_path / "o2")],
          "1 template(s) contain NaN or infinite values (rows 1)")
    (tmp_path / "empty").mkdir()
    fails(["--checkpoint", run, "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "o3")],
          "no image files")
    fails(["--checkpoint", run, "--backbone", "vgg16-vggface", "--templates", str(tmp_path / "nan.npy"),
           "--out", str(tmp_path / "o4")], "decodes templates of backbone 'dlib-resnet29', not 'vgg16-vggface'")
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    fails(["--checkpoint", str(tmp_path / "corrupt.pt"), "--templates", str(tmp_path / "wrong.npy"),
           "--out", str(tmp_path / "o5")], "not a readable checkpoint")
    (tmp_path / "blocker").write_text("x")
    np.save(tmp_path / "good.npy", good)
    fails(["--checkpoint", run, "--templates", str(tmp_path / "good.npy"), "--out", str(tmp_path / "blocker" / "o")],
          "is a file, not a folder")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))
    # Templates only: one PNG each, no original column; a failure midway keeps the earlier results.
    out = tmp_path / "templates-out"
    assert reconstruct_main(["--checkpoint", run, "--templates", str(tmp_path / "good.npy"), "--out", str(out)]
                            + common) == 0
    assert sorted(p.name for p in (out / "reconstructions").iterdir()) == [f"template_0000{i}.png" for i in range(3)]
    page = (out / "gallery.html").read_text()
    assert "<th>original</th>" not in page and len(DATA_URI.findall(page)) == 3
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr("decoders.dfd.reconstruction.write_html", broken)
    with pytest.raises(OSError, match="disk full"):
        reconstruct_main(["--checkpoint", run, "--templates", str(tmp_path / "good.npy"), "--out", str(out),
                          "--overwrite", "--max-images", "1"] + common)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def _backbone_b_args() -> list[str]:
    """A second backbone for the transfer SAR when its weights are here (mobileface, 112 px, fast)."""
    from probes.backbones import create_backbone

    try:
        create_backbone("mobileface")
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return []
    return ["--backbone-b", "mobileface"]


def test_evaluate_end_to_end_on_a_tiny_run(tiny_run, lpips_flags, tmp_path, capsys):
    _lpips_or_skip(lpips_flags)
    out = tmp_path / "eval"
    transfer = _backbone_b_args()
    args = ["--checkpoint", str(tiny_run["run"]), "--data-root", str(tiny_run["data_root"]), "--out", str(out),
            "--max-pairs", "30", "--fmr", "0.01", "0.001", "--type2-max-refs", "2", "--gallery-size", "4",
            "--cache-dir", str(tiny_run["cache"]), "--no-progress"]
    assert evaluate_main(args + transfer) == 0
    printed = capsys.readouterr().out
    assert "type-I" in printed and "type-II" in printed and "mean identity cosine" in printed
    results = json.loads((out / "results.json").read_text())
    n_test = len(tiny_run["split"]["test"]["paths"])
    assert results["data"]["n_test_images"] == n_test and results["configuration"]["step"] == 2
    assert results["checkpoint_config"]["backbone"]["name"] == "dlib-resnet29"
    thr = results["thresholds"]["dlib-resnet29"]
    assert thr["n_genuine"] == 15 and thr["n_impostor_pairs"] == 15 and thr["n_impostor_cross"] > 1000
    assert thr["at_fmr"]["0.001"]["impostor_set"] == "cross"  # 15 mismatched pairs cannot resolve 0.1%
    for attack in ("type_I", "type_II"):
        block = results["attack"][attack]
        assert block["n"] > 0 and -1 <= block["mean_cosine"] <= 1
        for rate in block["sar"].values():
            assert 0 <= rate["ci_low"] <= rate["rate"] <= rate["ci_high"] <= 1
    assert results["attack"]["type_I"]["n"] == n_test
    # Intervals over people, a mean-face control at the same thresholds, the spread across people.
    assert all(r["interval"] == "bootstrap over people" for r in results["attack"]["type_I"]["sar"].values())
    mean_face = results["attack"]["mean_face_control"]
    assert mean_face["n"] == n_test and set(mean_face["sar"]) == set(results["attack"]["type_I"]["sar"])
    spread = results["attack"]["reconstruction_spread"]
    assert spread["n"] == n_test and spread["across_people_std"] >= 0 and spread["within_image_std"] > 0
    assert "mean-face" in printed
    q = results["image_quality"]
    assert 0 < q["lpips_mean"] < 2 and -1 < q["ssim_mean"] < 1
    csv_rows = (out / "results.csv").read_text().splitlines()
    # (SAR at 2 FMRs + mean cosine) for type-I, type-II, control; (+ ceiling) for the transfer; LPIPS, SSIM.
    assert csv_rows[0].startswith("evaluation,backbone,metric,attack,fmr,value")
    assert len(csv_rows) == 1 + 4 * 3 + (4 * 3 if transfer else 0) + 2  # direct: type-I, II, control, mean face
    if transfer:
        b = results["transfer"]
        assert b["backbone"] == "mobileface" and "mobileface" in results["thresholds"]
        assert b["type_I"]["n"] == n_test and 0 <= b["type_I"]["sar"]["0.01"]["rate"] <= 1
        # Real chips framed for B pass B far better than chance: the framing keeps the face where B looks.
        assert b["framing_ceiling_type_I"]["mean_cosine"] > 0.5
        assert "transfer mobileface" in printed
    assert len((out / "per_image.csv").read_text().splitlines()) == n_test + 1
    page = (out / "gallery.html").read_text()
    assert len(DATA_URI.findall(page)) == 2 * min(4, n_test) and "type-II" in page
    # 0.01% cannot rest on this small pair set: a clear error, and nothing written.
    assert evaluate_main(args[:args.index("--fmr")] + ["--fmr", "0.0001", "--out", str(tmp_path / "e2")]
                         + args[args.index("--fmr") + 3:]) == 2
    assert "needs at least 10000 impostor scores" in capsys.readouterr().err
    assert not (tmp_path / "e2").exists()


def test_control_scores_are_every_cross_identity_pair_in_blocks():
    from decoders.dfd.attack import control_scores
    from probes.verification import pair_scores

    rng = np.random.default_rng(0)
    emb, templates = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    ids = rng.integers(0, 40, 600).astype(str)
    i, j = np.nonzero(ids[:, None] != ids[None, :])
    for metric in ("cosine", "euclidean"):
        np.testing.assert_allclose(control_scores(emb, templates, ids, metric),
                                   pair_scores(emb[i], templates[j], metric), atol=1e-9)


def test_type2_pairs_are_the_same_person_in_another_image(data_root):
    from decoders.dfd.attack import type2_references
    from probes.datasets import load_lfw_people

    people = load_lfw_people(data_root, min_images_per_person=20)
    test = people.subset(np.arange(0, len(people), 40))
    refs, pairs = type2_references(test, "lfw", data_root, max_refs=5, seed=0)
    assert len(pairs) > 0
    test_ids, ref_ids = test.labels("identity"), refs.labels("identity")
    for k, j in pairs:
        assert test_ids[k] == ref_ids[j]  # the same person
        assert Path(test.paths[k]).resolve() != Path(refs.paths[j]).resolve()  # another image of them
