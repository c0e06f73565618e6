"""probes.verify / probes.embed: one call, and thresholds that rest on enough identity-disjoint impostors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import byom_helper
import numpy as np
import pytest
from conftest import weights_or_skip
from PIL import Image

import probes
from probes.align import DetectionOptions, detect_and_align
from probes.backbones import create_backbone, list_backbones, wrap_backbone
from probes.errors import NoFaceError
from probes.quick import (
    PINNED_FMRS,
    THRESHOLDS_FILE,
    backbone_record,
    face_finders,
    load_thresholds,
    measure_thresholds,
    pinned_threshold,
)
from probes.verification import VerificationError, min_impostors

PINNED = ("dlib-resnet29", "hse-mobilenet-vggface2", "mobileface")
WEIGHT_FILE = {"dlib-resnet29": "face_recognition_model.bin", "hse-mobilenet-vggface2": "faceres.bin",
               "mobileface": "mobileface.bin"}


def _population(people=200, per_person=3, dim=16, spread=0.6, seed=0):
    """Templates of ``people`` identities (a centre each, images scattered around it)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, dim))
    ids = np.repeat([f"p{i:03d}" for i in range(people)], per_person)
    templates = centres.repeat(per_person, 0) + spread * rng.normal(size=(people * per_person, dim))
    return templates, ids


def _table(backbone, templates, ids, fmrs=(1e-2, 1e-3)):
    entry = {**backbone_record(backbone), **measure_thresholds(templates, ids, backbone.spec.verification_metric,
                                                                fmrs),
             "dataset": "synthetic", "alignment": "none", "command": "test"}
    return {"format": 1, "backbones": {backbone.name: entry}, "source": "synthetic table"}


@pytest.fixture(scope="module")
def tiny():
    return wrap_backbone(byom_helper.make(), input_size=32, name="tiny")


def test_measured_thresholds_rest_on_every_cross_identity_pair():
    templates, ids = _population()
    record = measure_thresholds(templates, ids, "cosine", fmrs=(1e-2, 1e-3, 1e-4))
    n = len(ids)
    assert record["n_impostors"] == n * (n - 1) // 2 - 200 * 3  # every pair of different people
    assert record["n_genuine"] == 200 * 3 and record["n_identities"] == 200
    cos = templates / np.linalg.norm(templates, axis=1, keepdims=True)
    sims = cos @ cos.T
    differ = ids[:, None] != ids[None, :]
    impostors = sims[np.triu(differ, 1)]
    for key, r in record["at_fmr"].items():
        fmr = float(key)
        assert r["min_impostors"] == math.ceil(10 / fmr) <= record["n_impostors"]
        accepted = int((impostors >= r["threshold"]).sum())
        assert accepted == r["impostors_accepted"] <= r["impostors_allowed"] == math.floor(fmr * len(impostors))
        assert r["realised_fmr"] == pytest.approx(accepted / len(impostors)) and r["realised_fmr"] <= fmr
        # the threshold is the tightest one: one step lower lets in more impostors than allowed
        assert int((impostors >= np.nextafter(r["threshold"], -np.inf) - 1e-12).sum()) > r["impostors_allowed"]
        assert 0 < r["genuine_accept_rate"] <= 1
    rates = [record["at_fmr"][k]["genuine_accept_rate"] for k in ("0.01", "0.001", "0.0001")]
    assert rates == sorted(rates, reverse=True)  # a stricter FMR accepts fewer genuine pairs


def test_an_fmr_the_impostors_cannot_support_is_refused():
    templates, ids = _population(people=50, per_person=2)  # 4,900 impostor pairs
    measure_thresholds(templates, ids, "euclidean", fmrs=(1e-2,))
    with pytest.raises(VerificationError, match=r"FMR 0.001 needs at least 10,000 impostor pairs.*got 4,900"):
        measure_thresholds(templates, ids, "euclidean", fmrs=(1e-2, 1e-3))
    with pytest.raises(VerificationError, match="one identity each"):
        measure_thresholds(templates, ids[:-1], "cosine")


def test_pinned_threshold_is_found_and_refused_for_clear_reasons(tiny, tmp_path):
    templates, ids = _population()
    table = _table(tiny, templates, ids)
    t = pinned_threshold(tiny, 1e-3, table)
    entry = table["backbones"]["tiny"]
    assert t.threshold == entry["at_fmr"]["0.001"]["threshold"] and t.n_impostors == entry["n_impostors"]
    assert t.realised_fmr <= 1e-3 and t.metric == "cosine" and t.dataset == "synthetic"
    assert "cos >= " in str(t) and f"{entry['n_impostors']:,} impostor pairs" in str(t)
    # 10 / FMR impostors: 1e-5 would need a million
    with pytest.raises(VerificationError, match=r"FMR 1e-05 needs a threshold set on at least 1,000,000 impostor"):
        pinned_threshold(tiny, 1e-5, table)
    with pytest.raises(VerificationError, match=r"no threshold of 'tiny' at FMR 0.005.*measured FMRs: 0.01, 0.001"):
        pinned_threshold(tiny, 5e-3, table)
    with pytest.raises(VerificationError, match=r"fmr must lie in \(0, 1\)"):
        pinned_threshold(tiny, 1.0, table)
    other = wrap_backbone(byom_helper.make("8"), input_size=32, name="other")
    with pytest.raises(VerificationError, match=r"no pinned verification threshold for backbone 'other'.*pinned: tiny"):
        pinned_threshold(other, 1e-3, table)
    retrained = wrap_backbone(byom_helper.make(), input_size=32, name="tiny", weights_id="retrained")
    with pytest.raises(VerificationError, match="other weights_id"):
        pinned_threshold(retrained, 1e-3, table)
    refed = wrap_backbone(byom_helper.make(), input_size=32, name="tiny", colour="bgr")
    with pytest.raises(VerificationError, match="other colour_order"):
        pinned_threshold(refed, 1e-3, table)
    # the same weights under another name (a reference returning it) find their entry
    renamed = wrap_backbone(byom_helper.make(), input_size=32, name="pkg.mod:make")
    assert pinned_threshold(renamed, 1e-2, table).backbone == "tiny"
    # from a file, as the thresholds script writes it
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({k: v for k, v in table.items() if k != "source"}))
    assert pinned_threshold(tiny, 1e-2, path).source == str(path)
    with pytest.raises(VerificationError, match="does not exist"):
        load_thresholds(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"tiny": 1}')
    with pytest.raises(VerificationError, match="not a thresholds table"):
        load_thresholds(tmp_path / "bad.json")


def test_verify_answers_with_the_threshold_and_its_source(tiny):
    templates, ids = _population()
    table = _table(tiny, templates, ids)
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    same = probes.verify(a, a.copy(), backbone=tiny, fmr=1e-3, layout="chip", thresholds=table)
    assert same.same_person and same.score == pytest.approx(1.0) and same.backbone == "tiny"
    assert same.threshold == table["backbones"]["tiny"]["at_fmr"]["0.001"]["threshold"]
    assert same.source.n_impostors == table["backbones"]["tiny"]["n_impostors"] and same.source.realised_fmr <= 1e-3
    assert str(same).startswith("same person: cos 1.0000 >= ")
    other = probes.verify(a, b, backbone=tiny, fmr=1e-2, layout="chip", thresholds=table)
    emb = tiny.embed(np.stack([a, b]))
    cos = float(emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1]))
    assert other.score == pytest.approx(cos, abs=1e-6) and other.same_person == (cos >= other.threshold)
    with pytest.raises(VerificationError, match="1,000,000"):
        probes.verify(a, b, backbone=tiny, fmr=1e-5, layout="chip", thresholds=table)


def test_embed_takes_paths_arrays_and_layouts(tiny, tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    want = tiny.embed(images, "chip")
    np.testing.assert_allclose(probes.embed(paths, tiny, layout="chip"), want, atol=1e-6)
    np.testing.assert_allclose(probes.embed(images[0], tiny, layout="chip"), want[:1], atol=1e-6)
    mixed = probes.embed([images[0], np.zeros((50, 60, 3), np.uint8)], tiny, layout="chip")
    assert mixed.shape == (2, 16)
    with pytest.raises(Exception, match="no crop for layout 'nope'"):
        probes.embed(images, tiny, layout="nope")
    with pytest.raises(Exception, match=r"image 1: must be a uint8 H x W x 3"):
        probes.embed([images[0], images[1].astype(np.float32)], tiny, layout="chip")


def test_embed_detects_and_aligns_photos(tmp_path, data_root, faceapi_weights):
    lfw = data_root / "lfw_home" / "lfw"
    photos = [lfw / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg", lfw / "Aaron_Peirsol" / "Aaron_Peirsol_0002.jpg"]
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 160, 3), 127, np.uint8)).save(blank)
    net = create_backbone("dlib-resnet29")
    detector, landmarks = face_finders("cpu")
    chips = detect_and_align([str(p) for p in photos], net, detector=detector, landmarks=landmarks).chips
    got = probes.embed(photos, net)
    np.testing.assert_allclose(got, net.embed(chips, "chip"), atol=1e-5)
    assert np.linalg.norm(got[0] - got[1]) < 0.6  # one person, under dlib's own 0.6 rule
    with pytest.raises(NoFaceError, match="blank.png"):
        probes.embed([photos[0], blank], net)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = probes.embed([photos[0], blank], net, on_missing="nan", detection=DetectionOptions(select="centre"))
    assert np.isfinite(rows[0]).all() and np.isnan(rows[1]).all() and any("blank.png" in str(w.message)
                                                                          for w in caught)


def test_min_impostors_rule_matches_the_pinned_fmrs():
    assert [min_impostors(f) for f in (1e-2, 1e-3, 1e-4)] == [1_000, 10_000, 100_000]
    assert THRESHOLDS_FILE.name == "verification_thresholds.json"


# --------------------------------------------------------------------------- the pinned table


def test_pinned_table_rests_on_enough_identity_disjoint_impostors():
    table = load_thresholds()
    assert table["format"] == 1 and set(PINNED) <= set(table["backbones"])
    for name, e in table["backbones"].items():
        assert name in list_backbones()  # only registry networks are pinned
        assert "LFW" in e["dataset"] and e["n_images"] >= 1500 and e["n_identities"] >= 500
        assert e["command"].startswith("python experiments/verification_thresholds.py")
        pairs = e["n_images"] * (e["n_images"] - 1) // 2
        assert e["n_impostors"] + e["n_genuine"] == pairs  # every pair is one or the other
        assert {float(k) for k in e["at_fmr"]} == set(PINNED_FMRS)
        previous = -np.inf
        for key in sorted(e["at_fmr"], key=float, reverse=True):
            r = e["at_fmr"][key]
            fmr = float(key)
            assert e["n_impostors"] >= min_impostors(fmr) == r["min_impostors"]
            assert r["impostors_accepted"] <= r["impostors_allowed"] == math.floor(fmr * e["n_impostors"])
            assert r["realised_fmr"] == pytest.approx(r["impostors_accepted"] / e["n_impostors"])
            assert r["realised_fmr"] <= fmr
            assert r["threshold"] > previous  # a stricter FMR needs a higher score
            previous = r["threshold"]


@pytest.mark.parametrize("name", PINNED)
def test_pinned_thresholds_fit_the_cached_weights(name):
    weights_or_skip(WEIGHT_FILE[name], f"{name} weights")
    backbone = create_backbone(name)
    for fmr in PINNED_FMRS:
        t = pinned_threshold(backbone, fmr)
        assert t.weights_id == backbone.weights_id and t.metric == backbone.spec.verification_metric
    n = t.n_impostors
    with pytest.raises(VerificationError, match=f"rest on {n:,}"):
        pinned_threshold(backbone, 1e-7)


def test_verify_lfw_faces_at_the_pinned_threshold(data_root, faceapi_weights):
    lfw = data_root / "lfw_home" / "lfw"
    a = lfw / "Colin_Powell" / "Colin_Powell_0001.jpg"
    same = probes.verify(a, lfw / "Colin_Powell" / "Colin_Powell_0002.jpg")  # dlib-resnet29 at FMR 1e-3
    other = probes.verify(a, lfw / "Abdullah_Gul" / "Abdullah_Gul_0001.jpg")
    assert same.same_person and not other.same_person
    assert same.source.fmr == 1e-3 and same.source.n_impostors >= 10_000 and same.metric == "euclidean"
    assert same.threshold == pinned_threshold(create_backbone("dlib-resnet29"), 1e-3).threshold
    assert -same.score < -same.threshold < -other.score  # distances either side of the threshold
    assert str(other).startswith("different people: L2 ")


def test_the_facade_imports_the_api_only_when_used():
    code = ("import sys, probes.errors, probes.cli; light = 'torch' not in sys.modules; import probes; "
            "f = probes.verify; print(light, 'probes.quick' in sys.modules, f.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600,
                         cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert out == ["True", "True", "probes.quick"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        probes.nope  # noqa: B018
