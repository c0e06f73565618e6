"""The aging audit: references, generator loading, bad inputs, measurements, report and CLI."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from decoders.aging import IPCGAN_GROUPS, AgingError
from decoders.aging.data import AgingFaces
from decoders.audit import (
    AgingAudit,
    AuditError,
    FolderAging,
    FunctionAging,
    check_output,
    collapsed,
    identity,
    load_generator,
    reference_model,
    select_faces,
    synthetic_face,
)
from decoders.audit.__main__ import main
from probes.errors import DatasetError
from probes.outputs import OutputFolderError
from probes.stats import bootstrap_mean
from probes.training.checkpoints import FORMAT, CheckpointError, atomic_save

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if shutil.os.path.exists("/usr/bin/chromium") else None)


def make_faces(n: int = 16, size: int = 64, seed: int = 0) -> AgingFaces:
    """Distinct, face-like synthetic images with UTKFace-style labels (no data needed)."""
    rng = np.random.default_rng(seed)
    base = synthetic_face(size).astype(np.float64)
    images = []
    for _ in range(n):
        blobs = np.kron(rng.normal(0, 30, (8, 8, 3)), np.ones((size // 8, size // 8, 1)))
        images.append(np.clip(base + rng.uniform(-40, 40, 3) + blobs, 0, 255).astype(np.uint8))
    ages = rng.choice([15.0, 25, 35, 45, 60], n, p=[0.35, 0.25, 0.2, 0.1, 0.1]) + rng.integers(0, 5, n)
    sex, race = rng.integers(0, 2, n), rng.integers(0, 5, n)
    paths = [f"/nowhere/{int(a)}_{s}_{r}_2017{k:05d}.jpg.chip.jpg" for k, (a, s, r) in enumerate(zip(ages, sex, race))]
    return AgingFaces(np.stack(images), ages, sex, race, IPCGAN_GROUPS.of(ages), IPCGAN_GROUPS, paths)


class BrightnessYaw:
    """A cheap stand-in pose labeller for the fast tests: 'yaw' from the left/right brightness balance."""

    name = "test-brightness-yaw"
    attributes = ("yaw",)

    def predict(self, images, layout="chip", batch_size=64):
        x = np.asarray(images, np.float64).mean(axis=(1, 3))
        half = x.shape[1] // 2
        return {"yaw": (x[:, :half].mean(1) - x[:, half:].mean(1)).astype(np.float32)}


@pytest.fixture(scope="module")
def audit(lpips_weights):
    """An audit on tiny random-init face models and labellers (fast; numbers meaningless but exact where tested)."""
    from probes.backbones import create_backbone
    from probes.labellers import create_labeller

    torch.manual_seed(0)
    return AgingAudit(train_backbone=create_backbone("dlib-resnet29", pretrained=False),
                      independent_backbone=create_backbone("mobileface", pretrained=False),
                      age_labeller=create_labeller("faceapi-agegender", pretrained=False),
                      pose_labeller=BrightnessYaw(),
                      use_lfw=False, fmrs=(0.05,), min_real_faces=6, max_estimator_mae=1000, lpips_pairs=40,
                      n_boot=100, expressivity="probe", expressivity_layers=["conv32_1", "conv256_down_out"],
                      expressivity_attributes=("age", "sex"),
                      expressivity_params={"n_bootstrap": 20, "n_permutations": 20},
                      gallery_size=4, decoder_faces=6, progress=False)


@pytest.fixture(scope="module")
def decoder_checkpoint(tmp_path_factory):
    """A tiny untrained DFD checkpoint for a random-init dlib net (as decoders.train writes them)."""
    from decoders.dfd.model import DecoderConfig, FaceDecoder

    config = DecoderConfig(embedding_size=128, image_size=32, width=0.25)
    path = tmp_path_factory.mktemp("decoder") / "latest.pt"
    atomic_save({"format": FORMAT, "kind": "face-decoder", "step": 0,
                 "config": {"decoder": config.to_dict(), "backbone": {"name": "dlib-resnet29"},
                            "cli": {"random_backbone": True, "seed": 0}, "data": {"dataset": "lfw"}},
                 "models": {"decoder": FaceDecoder(config).state_dict()}}, path)
    return path


@pytest.fixture(scope="module")
def identity_result(audit, decoder_checkpoint):
    audit.decoder = decoder_checkpoint
    try:
        return audit.run(reference_model("identity", IPCGAN_GROUPS, 64), make_faces(40), targets=[0, 4])
    finally:
        audit.decoder = None


# --------------------------------------------------------------------------- helpers and references


def test_bootstrap_mean_and_references():
    mean, low, high, n = bootstrap_mean(np.arange(100.0), 500, rng=0)
    assert n == 100 and mean == 49.5 and low < 49.5 < high and high - low < 20
    assert np.isnan(bootstrap_mean([1.0])[1]) and bootstrap_mean([])[3] == 0
    faces = make_faces(4).images
    assert np.array_equal(identity(faces, 2), faces)
    out = collapsed(faces, 0)
    assert out.shape == faces.shape and (out == out[:1]).all()
    mean_face = reference_model("collapsed", IPCGAN_GROUPS, 64, faces).age(faces, 1)
    assert (mean_face == faces.mean(0).round().astype(np.uint8)).all()
    with pytest.raises(AgingError, match="unknown reference"):
        reference_model("blur", IPCGAN_GROUPS, 64)


def test_check_output_names_generator_target_and_problem():
    shape = (2, 64, 64, 3)
    good = np.zeros(shape, np.uint8)
    assert check_output(good, shape, "gen", "50+") is good
    with pytest.raises(AgingError, match=r"gen for target 50\+ returned float32 with values in \[0, 1\]"):
        check_output(np.ones(shape, np.float32) * np.linspace(0, 1, 3, dtype=np.float32), shape, "gen", "50+")
    with pytest.raises(AgingError, match=r"returned shape \(2, 32, 32, 3\) for inputs of shape \(2, 64, 64, 3\)"):
        check_output(np.zeros((2, 32, 32, 3), np.uint8), shape, "gen", "50+")
    with pytest.raises(AgingError, match="torch Tensor"):
        check_output(torch.zeros(shape), shape, "gen", "50+")


def make_collapsed():
    """A factory taking no argument, as ``--generator module:factory`` accepts."""
    from decoders.audit import CollapsedAging

    return CollapsedAging(IPCGAN_GROUPS, 32)


def test_load_generator_resolves_and_refuses(tmp_path):
    model = load_generator("decoders.audit.references:identity", "ipcgan", 64)
    assert model.groups == IPCGAN_GROUPS and model.image_size == 64
    made = load_generator(f"{__name__}:make_collapsed")
    assert made.image_size == 32 and made.age(np.zeros((2, 32, 32, 3), np.uint8), 0).shape == (2, 32, 32, 3)
    with pytest.raises(AgingError, match="trained on the ipcgan groups .* not the agecgan groups"):
        load_generator(f"{__name__}:make_collapsed", "agecgan")
    assert load_generator("identity", "ipcgan", 64).name == "identity"
    # The references run without --groups / --image-size, at the IPCGAN groups and 64 px.
    reference = load_generator("identity")
    assert reference.groups == IPCGAN_GROUPS and reference.image_size == 64
    assert load_generator("collapsed", "agecgan", 32).groups.name == "agecgan"
    with pytest.raises(AuditError, match="pass --groups"):
        load_generator("decoders.audit.references:identity", None, 64)
    with pytest.raises(AuditError, match="pass --image-size"):
        load_generator("decoders.audit.references:collapsed", "agecgan")
    with pytest.raises(AuditError, match="cannot import module 'no_such_module'"):
        load_generator("no_such_module:age", "ipcgan", 64)
    with pytest.raises(AuditError, match="has no attribute 'nope'"):
        load_generator("decoders.audit.references:nope", "ipcgan", 64)
    with pytest.raises(AuditError, match="neither a shipped generator .*an existing checkpoint"):
        load_generator("not-a-file.pt")
    # A checkpoint of another architecture, and garbage: CheckpointError from the GAN loader.
    pytest.importorskip("decoders.aging.models")
    other = tmp_path / "decoder.pt"
    atomic_save({"format": FORMAT, "kind": "face-decoder", "config": {}, "models": {}, "step": 0}, other)
    with pytest.raises(CheckpointError, match="face-decoder"):
        load_generator(str(other))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_generator(str(junk))


def test_folder_of_aged_images(tmp_path):
    from PIL import Image

    faces = make_faces(3)
    rows = ["source,target_group,output"]
    for k, path in enumerate(faces.paths):
        for target in ("11-20", "4"):
            name = f"{k}_{target}.png"
            Image.fromarray(faces.images[(k + 1) % 3]).save(tmp_path / name)
            rows.append(f"{path},{target},{name}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    folder = FolderAging(tmp_path, tmp_path / "list.csv", IPCGAN_GROUPS)
    assert folder.image_size == 64 and folder.targets() == [0, 4]
    assert np.array_equal(folder.age_paths(faces.paths, 4), faces.images[[1, 2, 0]])
    chosen, record = select_faces(faces, sources=folder.sources(), how="the CSV")
    assert len(chosen) == 3 and record["selection"] == "the CSV"
    with pytest.raises(AuditError, match="no output for source .* at target 21-30"):
        folder.age_paths(faces.paths, 1)
    (tmp_path / "bad.csv").write_text("source,target\nx,1\n")
    with pytest.raises(AuditError, match="must have columns source, target_group and output"):
        FolderAging(tmp_path, tmp_path / "bad.csv", IPCGAN_GROUPS)
    (tmp_path / "bad.csv").write_text("source,target_group,output\nx,9,0_4.png\n")
    with pytest.raises(AgingError, match="line 2: target_group 9 is outside"):
        FolderAging(tmp_path, tmp_path / "bad.csv", IPCGAN_GROUPS)
    (tmp_path / "bad.csv").write_text("source,target_group,output\nx,old,0_4.png\ny,1,missing.png\n")
    with pytest.raises(AuditError, match="target_group 'old' is neither"):
        FolderAging(tmp_path, tmp_path / "bad.csv", IPCGAN_GROUPS)


def test_invertible_models_are_inverted_once_and_source_groups_passed(tmp_path):
    class Invertible:
        groups, image_size, calls = IPCGAN_GROUPS, 64, []

        def invert(self, images, source_groups=None):
            self.calls.append(np.asarray(source_groups).tolist())
            return images.astype(np.float32)

        def generate(self, z, target):
            return np.clip(z + 10 * target, 0, 255).astype(np.uint8)

        def age(self, images, target, source_groups=None):
            return self.generate(self.invert(images, source_groups), target)

    from decoders.audit.measure import generate_outputs

    faces = make_faces(10, seed=3)
    model = Invertible()
    outputs = generate_outputs(model, faces, [0, 2], "inv", batch_size=4)
    # Inverted once per batch (not once per target), with the faces' own groups.
    assert len(model.calls) == 3 and [g for call in model.calls for g in call] == faces.group.tolist()
    assert np.array_equal(outputs[2], np.clip(faces.images.astype(int) + 20, 0, 255))
    # A run's held-out faces, as the GAN trainers record them.
    from decoders.audit.faces import run_heldout

    run = tmp_path / "run"
    (run / "gan" / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"data": {"val_paths": ["/d/a.jpg", "/d/b.jpg"]}}))
    assert run_heldout(run / "gan" / "checkpoints" / "latest.pt")["sources"] == {"a.jpg", "b.jpg"}
    (run / "config.json").write_text(json.dumps({"cli": {"val_fraction": 0.1, "seed": 3, "max_images": None}}))
    assert run_heldout(run)["val_fraction"] == 0.1 and run_heldout(run)["seed"] == 3
    assert run_heldout(tmp_path / "elsewhere.pt") is None


# --------------------------------------------------------------------------- the audit


def test_identity_reference_keeps_identity_and_ignores_target(identity_result):
    r = identity_result
    summary = r.tables["summary"]
    overall = summary[summary["breakdown"] == "all"]
    ver = overall[overall["metric"] == "verification_rate_fmr_0.05"]
    assert len(ver) == 6 and (ver["value"] == 1.0).all() and (ver["ci_high"] == 1.0).all()
    assert (ver["ci_low"] < 1.0).all() and (ver["n_sources"] == 40).all()
    # Per target one output per face; pooled over both targets two, resampled as 40 faces.
    pooled = ver["target_label"] == "all targets"
    assert (ver.loc[pooled, "n"] == 80).all() and (ver.loc[~pooled, "n"] == 40).all() and pooled.sum() == 2
    assert ver["interval"].str.startswith("source faces, Wilson over 40").all()  # all verified: no resampling
    cos_rows = overall[overall["metric"] == "identity_cosine"]
    assert (cos_rows["interval"] == "source faces, cluster bootstrap, 100 resamples").all()
    cos = overall[overall["metric"] == "identity_cosine"]
    np.testing.assert_allclose(cos["value"], 1.0, atol=1e-5)
    for metric in ("sex_flip", "abs_yaw_change", "achieved_shift"):
        np.testing.assert_allclose(overall.loc[overall["metric"] == metric, "value"], 0.0, atol=1e-6)
    # Broken down by sex, race, source group and age gap, each with a CI around the value.
    levels = summary[summary["metric"] == "identity_cosine"].groupby("breakdown")["level"].unique()
    assert set(levels["sex"]) == {"male", "female"} and set(levels["source_group"]) <= set(IPCGAN_GROUPS.labels)
    assert set(levels["age_gap"]) >= {"+0", "+4", "-4"}
    rates = summary[summary["kind"] == "rate"].dropna(subset=["ci_low"])
    assert ((rates["ci_low"] <= rates["value"] + 1e-12) & (rates["value"] <= rates["ci_high"] + 1e-12)).all()
    flags = r.flags
    assert not flags["collapsed"] and flags["ignores_target"]
    assert flags["diversity"]["outputs_lpips_between_targets"] == 0.0
    assert flags["threshold_fallback_backbones"] == ["dlib-resnet29", "mobileface"]
    thr = r.tables["thresholds"]
    assert set(thr["source"]) == {"UTKFace impostor pairs (fallback)"} and (thr["n_impostors"] == 780).all()
    # Groups with too few real faces are flagged, not scored silently.
    counts = r.tables["estimator_real"].set_index("group_label")["n"]
    expected = {lab for lab in ("11-20", "50+") if counts[lab] < 6}
    assert set(flags["age_not_judged"]) == expected == {"50+"}  # 11-20 has many faces, 50+ few
    assert flags["age_not_judged"]["50+"].startswith(f"only {counts['50+']} real face(s)")
    assert r.tables["confusion"]["target"].tolist() == ["11-20", "50+"]
    assert r.tables["confusion"].iloc[:, 1:].to_numpy().sum() == 80


def test_flagged_faces_and_realism_of_the_identity_reference(identity_result):
    r = identity_result
    out = r.tables["per_output"]
    # Every output verified and no sex flips: only the judge's wrong groups, at the one judged target (11-20).
    flagged = r.tables["flagged"]
    wrong = out[(out["target"] == 0) & (out["est_group_out"] != 0)]
    assert set(flagged["reason"]) == {"wrong target group"} and len(flagged) == len(wrong) > 0
    assert sorted(flagged["face"]) == sorted(wrong["face"]) and set(flagged["target"]) == {0}
    assert r.flags["flagged_outputs"]["wrong target group"] == {"outputs": len(wrong), "of_outputs": 80,
                                                                "source_faces": len(wrong)}
    shown = r.gallery["flagged"]
    assert 0 < len(shown) <= 24 and all(s["reasons"][0].startswith("wrong target group") for s in shown)
    # Realism: each face model's embeddings and LPIPS' trunk, per target; 50+ has too few real faces.
    realism = r.tables["realism"]
    assert len(realism) == 6 and realism["space"].nunique() == 3
    assert "LPIPS AlexNet conv1-5, pooled" in set(realism["space"])
    measured = realism[realism["target_label"] == "11-20"]
    assert np.isfinite(measured["frechet"]).all() and np.isfinite(measured["floor"]).all()
    assert (measured["dim_used"] == measured["faces_per_side"] // 2).all()  # too few faces for the full dims
    assert realism.loc[realism["target_label"] == "50+", "reduction"].str.startswith("not measured").all()


def test_expressivity_and_decoder_tables(identity_result):
    table = identity_result.tables["expressivity"]
    assert set(table["set"]) == {"original", "aged"} and set(table["layer"]) == {"conv32_1", "conv256_down_out"}
    assert set(table["attribute"]) == {"age", "sex"} and np.isfinite(table["estimate"]).all()
    dec = identity_result.tables["decoder"]
    same = dec[dec["quantity"] == "age shift through templates (recon(aged) - recon(input))"]
    np.testing.assert_allclose(same["mean"], 0.0, atol=1e-4)  # identical templates decode identically
    assert identity_result.gallery["recon_outputs"][4].shape == (4, 32, 32, 3)


def test_collapsed_reference_is_flagged_collapsed(audit, monkeypatch):
    from decoders.audit import expressivity as core

    monkeypatch.setattr(core, "MIN_EXPRESSIVITY_FACES", 10)  # let 16 faces through to the sweep
    faces = make_faces(16, seed=1)
    # Thresholds given by hand, so low that any two faces match: flagged as loose on these faces.
    given = {"dlib-resnet29": {0.05: -1e9}, "mobileface": {0.05: -1.0}}
    result = AgingAudit(**{**_params(audit), "thresholds": given}).run(
        reference_model("collapsed", IPCGAN_GROUPS, 64, faces.images), faces, targets=[1, 3])
    assert [r["backbone"] for r in result.flags["loose_thresholds"]] == ["dlib-resnet29", "mobileface"]
    assert set(result.tables["thresholds"]["source"]) == {"given"}
    # One output image: its labels are constant, so I = 0 at every layer (not an error); 16 originals are
    # too few for a held-out probe, which the notes say instead of failing the audit.
    aged = result.tables["expressivity"]
    assert set(aged["set"]) == {"aged"} and (aged["estimate"] == 0).all()
    note = next(n for n in result.notes if n.startswith("Expressivity:"))
    assert "age on aged faces is the same for every image" in note and "age on original faces not estimated" in note
    flags = result.flags
    assert flags["collapsed"] and flags["diversity"]["collapse_ratio"] == 0.0
    assert all(t["collapsed"] for t in flags["diversity"]["per_target"].values())
    assert flags["diversity"]["outputs_lpips_across_inputs"] == 0.0 < flags["diversity"]["real_lpips_across_inputs"]
    assert "COLLAPSED" in result.headline().iloc[0, -1]


class CentreAge:
    """A stand-in judge: age from the brightness of the face's centre, P(male) from its red-blue balance."""

    name, weights_id, attributes = "test-centre-age", "centre-v1", ("age", "sex")

    def predict(self, images, layout="chip", batch_size=64):
        x = np.asarray(images, np.float64)
        side = x.shape[1]
        centre = x[:, side // 4:3 * side // 4, side // 4:3 * side // 4]
        p_male = 1 / (1 + np.exp(-(centre[..., 0].mean((1, 2)) - centre[..., 2].mean((1, 2))) / 10))
        return {"age": 5 + 70 * centre.mean((1, 2, 3)) / 255, "p_male": p_male, "sex": (p_male < 0.5).astype(np.int64)}


class CornerAge:
    """A stand-in training age reader that reads only the top-left corner: easy to fool."""

    name, weights_id, attributes = "test-corner-age", "corner-v1", ("age", "sex")

    def predict(self, images, layout="chip", batch_size=64):
        x = np.asarray(images, np.float64)
        k = x.shape[1] // 8
        return {"age": 80 * x[:, :k, :k].mean((1, 2, 3)) / 255, "p_male": np.full(len(x), 0.5),
                "sex": np.zeros(len(x), np.int64)}


def corner_stamp(images, target):
    """'Ages' a face by painting its top-left corner brighter for older targets: the centre is untouched."""
    out = np.array(images, copy=True)
    out[:, :8, :8] = 30 + 50 * int(target)
    return out


def test_generator_that_fools_its_training_age_reader_is_flagged(audit):
    from probes.labellers import LabellerSpec, list_labellers, register_labeller

    if CornerAge.name not in list_labellers():  # the model names its reader, as a checkpoint would
        register_labeller(LabellerSpec(CornerAge.name, lambda **kw: CornerAge(), CornerAge.attributes,
                                       "test stand-in", "tests", "none"))
    model = FunctionAging(corner_stamp, IPCGAN_GROUPS, 64, name="corner-stamp")
    model.training_age_reader = CornerAge.name
    faces = make_faces(24, seed=4)
    result = AgingAudit(**{**_params(audit), "age_labeller": CentreAge(), "expressivity": None}).run(
        model, faces, targets=[0, 4])
    table = result.tables["age_readers"].set_index("target_label")
    # The judge sees the same faces at both targets; the training reader sees ~63 years of aging.
    assert table.loc["11-20", "judge_age"] == table.loc["50+", "judge_age"]
    assert table.loc["50+", "reader_age"] - table.loc["11-20", "reader_age"] > 50
    assert (table["n_sources"] == 24).all() and table["real_n"].tolist() == [(faces.group == 0).sum(),
                                                                              (faces.group == 4).sum()]
    record = result.flags["age_readers"]
    assert result.flags["fools_own_age_loss"] and record["judge_span"] == 0 and record["reader_span"] > 50
    assert record["reasons"][0].startswith("the judge's age span over the targets (0.0 y)")
    assert (record["training_reader"], record["judge"], record["same_network"]) == (CornerAge.name, CentreAge.name,
                                                                                    False)
    assert result.model["training_age_reader"] == CornerAge.name
    assert result.configuration["training_age_reader"] == {"name": CornerAge.name, "weights_id": "corner-v1",
                                                           "same_network_as_judge": False}
    html = result.to_html()
    assert "FOOLS ITS OWN AGE LOSS RATHER THAN AGING THE FACE" in html and "training reader (y)" in html
    assert "(reader " in html  # the grid's captions give the reader's age beside the judge's


def _params(audit: AgingAudit) -> dict:
    import inspect

    return {name: getattr(audit, name) for name in inspect.signature(AgingAudit).parameters}


def test_bad_inputs_are_named_and_refused(audit):
    faces = make_faces(12, seed=2)
    model = reference_model("identity", IPCGAN_GROUPS, 64)
    with pytest.raises(AgingError, match="--targets 5 is outside the trained age groups"):
        audit.run(model, faces, targets=[5])
    with pytest.raises(DatasetError, match="empty"):
        audit.run(model, faces.subset(np.zeros(0, int)))
    unlabelled = faces.subset(np.arange(12))
    unlabelled.ages[:2] = np.nan
    with pytest.raises(DatasetError, match="2 face.* no age label"):
        audit.run(model, unlabelled)
    floats = FunctionAging(lambda x, t: x.astype(np.float32) / 255, IPCGAN_GROUPS, 64, name="float-gan")
    with pytest.raises(AgingError, match=r"float-gan for target 21-30 returned float32 with values in \[0, 1"):
        AgingAudit(**{**_params(audit), "expressivity": None}).run(floats, faces, targets=[1])
    with pytest.raises(AuditError, match="too few audited faces for a UTKFace threshold at FMR 0.001"):
        AgingAudit(**{**_params(audit), "fmrs": (1e-3,)}).run(model, faces, targets=[1])
    with pytest.raises(CheckpointError):
        AgingAudit(**{**_params(audit), "decoder": __file__}).run(model, faces, targets=[1])


def test_report_files_and_headless_chromium_screenshot(identity_result, tmp_path):
    out = tmp_path / "audit"
    identity_result.save(out)
    assert {p.name for p in out.iterdir()} == {"report.html", "results.json", "tables", "figures"}
    results = json.loads((out / "results.json").read_text())
    assert results["flags"]["ignores_target"] is True and results["model"]["target_labels"] == ["11-20", "50+"]
    tables = {p.name for p in (out / "tables").iterdir()}
    assert {"summary.csv", "per_output.csv", "expressivity.csv", "decoder.csv"} <= tables
    html = (out / "report.html").read_text()
    assert html.count("src='data:image/png;base64,") >= 5 + 2 * 3 * 4  # figures + gallery images and reconstructions
    assert "bicubic upsampling" in html and "IGNORES THE TARGET" in html and "faceprobe_commit" in html
    # The report opens with the aged faces (4 sources x (source + 2 targets), each beside its reconstruction),
    # then the verdict, then the flagged faces.
    assert html.index("<h2>Aged faces</h2>") < html.index("<h2>Verdict flags</h2>") < html.index("<h2>Flagged faces")
    grid = html[html.index("<h2>Aged faces</h2>"):html.index("<h2>Verdict flags</h2>")]
    assert grid.count("<img class='recon'") == 4 * 3 and grid.count("<img ") == 2 * 4 * 3
    assert "<h2>Realism</h2>" in html and "source faces, " in html
    assert {"flagged.csv", "realism.csv"} <= tables and results["realism"] and "flagged_outputs" in results["flags"]
    with pytest.raises(OutputFolderError, match="already exists"):
        identity_result.save(out)
    if CHROMIUM is None:
        pytest.skip("chromium not installed: the report was not rendered")
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
                    (out / "report.html").as_uri()], capture_output=True, timeout=60, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 20  # not blank
    colours = np.unique(pixels.reshape(-1, 3)[::7] // 32, axis=0)
    assert len(colours) >= 8  # text, flags, tables and figures in several colours


# --------------------------------------------------------------------------- CLI


def test_cli_refuses_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    assert main(["--generator", "identity", "--groups", "ipcgan", "--image-size", "64", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and (out / "keep.txt").read_text() == "earlier results"
    fresh = tmp_path / "fresh"
    assert main(["--generator", "identity", "--groups", "ipcgan", "--image-size", "64", "--targets", "7",
                 "--out", str(fresh)]) == 2
    assert "--targets 7 is outside the trained age groups of ipcgan" in capsys.readouterr().err
    # A plain aging function needs its groups (the built-in references default to IPCGAN's).
    assert main(["--generator", "decoders.audit.references:identity", "--out", str(fresh)]) == 2
    assert "pass --groups" in capsys.readouterr().err
    assert main(["--aged-folder", str(tmp_path), "--out", str(fresh)]) == 2
    assert "--aged-folder and --aged-csv go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--generator", "identity", "--training-age-reader", "my-reader", "--out", str(fresh)])
    assert "--training-age-reader: invalid choice: 'my-reader'" in capsys.readouterr().err
    assert not fresh.exists()


@pytest.mark.data
def test_cli_end_to_end_on_real_faces(data_root, faceapi_weights, lpips_weights, tmp_path, capsys):
    out = tmp_path / "identity"
    code = main(["--generator", "identity", "--groups", "ipcgan", "--image-size", "64", "--data-root", str(data_root),
                 "--holdout", "0", "--max-images", "16", "--targets", "11-20", "4", "--independent-backbone",
                 "mobileface", "--no-lfw", "--fmr", "0.1", "--expressivity", "none", "--lpips-pairs", "30",
                 "--bootstrap", "100", "--gallery-size", "3", "--no-progress", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["n_faces"] == 16
    assert results["configuration"]["backbones"]["train"]["name"] == "dlib-resnet29"
    head = {row["target"]: row for row in results["headline"]}
    assert head["50+"]["verified @FMR 0.1, dlib-resnet29"].startswith("100.0%")
    assert "ignores target: True" in printed.out and (out / "report.html").is_file()
