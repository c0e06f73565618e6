"""The attack on leaked templates: ``decoders.evaluate --templates FILE.npy --identities FILE.csv``.

Given the templates of the run's own test images, and as enrolment images every other LFW image of each
person, the leaked-template attack must reproduce the run's evaluation (type-I and type-II scores,
thresholds, rates); bad inputs are refused in one line naming the file and row.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_reconstruct_evaluate import tiny_run  # noqa: F401 (fixture)

from decoders.dfd.inputs import load_trained_decoder, rebuild_backbone
from decoders.dfd.leaked import read_leak
from decoders.dfd.templates import compute_targets
from decoders.evaluate import main as evaluate_main
from probes.datasets import FaceDataset
from probes.errors import DatasetError


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def leak(tiny_run, tmp_path_factory):  # noqa: F811 (fixture)
    """The tiny run's test images as a leak: their templates, and per template every other LFW image of the
    person as enrolment images (copied into the leak's folder, named relative to the CSV)."""
    root = tmp_path_factory.mktemp("leak")
    paths = [Path(p) for p in tiny_run["split"]["test"]["paths"]]
    decoder, config = load_trained_decoder(tiny_run["run"])
    net = rebuild_backbone(config)
    targets = compute_targets(net, FaceDataset("t", paths, layout="lfw"), decoder.config.image_size,
                              cache_dir=tiny_run["cache"], progress=False)
    np.save(root / "leak.npy", targets.templates)
    (root / "images").mkdir()
    people = [p.parent.name for p in paths]
    rows = []
    for p, person in zip(paths, people):  # every other LFW image of the person, as the run's type-II takes them
        others = sorted(q for q in p.parent.iterdir() if q.suffix == ".jpg" and q != p)
        for q in others:
            shutil.copy(q, root / "images" / q.name)
        rows.append({"identity": person, "enrolment": ";".join(f"images/{q.name}" for q in others)})
    _write_csv(root / "leak.csv", rows)
    return {"root": root, "n": len(paths), "rows": rows, "people": people}


def _common(tiny_run, out: Path) -> list[str]:  # noqa: F811
    return ["--checkpoint", str(tiny_run["run"]), "--data-root", str(tiny_run["data_root"]), "--out", str(out),
            "--max-pairs", "30", "--fmr", "0.01", "0.001", "--type2-max-refs", "0", "--gallery-size", "4",
            "--cache-dir", str(tiny_run["cache"]), "--no-progress"]


def test_leaked_templates_reproduce_the_runs_own_attack(tiny_run, leak, tmp_path, capsys):  # noqa: F811
    own, leaked = tmp_path / "own", tmp_path / "leaked"
    assert evaluate_main(_common(tiny_run, own) + ["--type2-references", "lfw"]) == 0
    assert evaluate_main(_common(tiny_run, leaked) + ["--templates", str(leak["root"] / "leak.npy"), "--identities",
                                                      str(leak["root"] / "leak.csv"), "--layout", "lfw"]) == 0
    printed = capsys.readouterr().out
    assert "type-II" in printed and "no LPIPS/SSIM" in printed and "leaked templates" in printed
    a, b = (json.loads((f / "results.json").read_text()) for f in (own, leaked))
    # The same thresholds: LFW pairs with the same people (the test people / the leak's identities) left out.
    assert a["thresholds"] == b["thresholds"]
    for attack in ("type_I", "type_II", "control_other_people", "mean_face_control"):
        assert a["attack"][attack]["n"] == b["attack"][attack]["n"] > 0, attack
        assert a["attack"][attack]["mean_cosine"] == pytest.approx(b["attack"][attack]["mean_cosine"], abs=1e-6)
        for fmr in ("0.01", "0.001"):
            ra, rb = a["attack"][attack]["sar"][fmr], b["attack"][attack]["sar"][fmr]
            assert (ra["accepted"], ra["n"]) == (rb["accepted"], rb["n"]), (attack, fmr)
    assert b["image_quality"] is None and b["transfer"] is None
    assert b["data"]["n_test_images"] == leak["n"] and b["data"]["n_test_identities"] == len(set(leak["people"]))
    per_a = list(csv.DictReader((own / "per_image.csv").open()))
    per_b = list(csv.DictReader((leaked / "per_image.csv").open()))
    assert [float(r["type1_score"]) for r in per_a] == pytest.approx([float(r["type1_score"]) for r in per_b])
    assert [r["identity"] for r in per_b] == leak["people"] and "lpips" not in per_b[0]
    rows = (leaked / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 3  # type-I, type-II, control, mean face: SAR at 2 FMRs + mean cosine; no LPIPS
    page = (leaked / "gallery.html").read_text()
    assert "enrolment image" in page and "LPIPS" not in page


def test_a_template_without_enrolment_images_gives_type_one_only(tiny_run, leak, tmp_path):  # noqa: F811
    rows = [dict(r) for r in leak["rows"]]
    rows[0]["enrolment"] = ""
    csv_file = _write_csv(leak["root"] / "partial.csv", rows)
    full = read_leak(leak["root"] / "leak.npy", leak["root"] / "leak.csv", 128)
    partial = read_leak(leak["root"] / "leak.npy", csv_file, 128)
    _, pairs_full = full.enrolment("lfw")
    refs, pairs = partial.enrolment("lfw")
    assert 0 not in pairs[:, 0] and len(pairs) == len(pairs_full) - len(full.enrolment_paths[0]) > 0
    assert set(refs.labels("identity")) <= set(leak["people"])
    assert all(refs.labels("identity")[j] == partial.identities[t] for t, j in pairs)  # the template's own person
    out = tmp_path / "e"
    assert evaluate_main(_common(tiny_run, out) + ["--templates", str(leak["root"] / "leak.npy"), "--identities",
                                                   str(csv_file), "--layout", "lfw"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["attack"]["type_I"]["n"] == leak["n"]
    assert result["attack"]["type_II"]["n_reconstructions"] == leak["n"] - 1


def test_bad_leaks_are_refused_in_one_line(tiny_run, leak, tmp_path, capsys):  # noqa: F811
    root = leak["root"]
    rows = leak["rows"]

    def fails(extra: list[str], message: str):
        out = tmp_path / "never"
        assert evaluate_main(_common(tiny_run, out) + extra) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not out.exists()

    templates = np.load(root / "leak.npy")
    np.save(tmp_path / "wide.npy", np.concatenate([templates, templates], axis=1))
    fails(["--templates", str(tmp_path / "wide.npy"), "--identities", str(root / "leak.csv")],
          "templates have dimension 256, but the checkpoint decodes 128-D templates")
    short = _write_csv(tmp_path / "short.csv", rows[:-1])
    fails(["--templates", str(root / "leak.npy"), "--identities", str(short)],
          f"has {len(rows) - 1} rows but {root / 'leak.npy'} holds {len(rows)} templates")
    no_column = _write_csv(tmp_path / "cols.csv", [{"person": r["identity"], "enrolment": ""} for r in rows])
    fails(["--templates", str(root / "leak.npy"), "--identities", str(no_column)],
          "needs the columns identity, enrolment (missing: identity; found: person, enrolment)")
    missing = _write_csv(root / "missing.csv", [dict(rows[0], enrolment="images/nobody.jpg")] + rows[1:])
    fails(["--templates", str(root / "leak.npy"), "--identities", str(missing)],
          "line 2: enrolment image images/nobody.jpg does not exist")
    image = rows[1]["enrolment"].split(";")[0]
    twice = _write_csv(root / "twice.csv", [dict(rows[0], identity="Someone_Else", enrolment=image)] + rows[1:])
    fails(["--templates", str(root / "leak.npy"), "--identities", str(twice)], f"enrolment image {image} is listed "
          "for both")
    fails(["--templates", str(root / "leak.npy")], "--templates and --identities go together")
    fails(["--templates", str(root / "leak.npy"), "--identities", str(root / "leak.csv"), "--backbone-b",
           "mobileface"], "--backbone-b needs the source images' frames")
    fails(["--templates", str(root / "leak.npy"), "--identities", str(tmp_path / "none.csv")],
          f"identities CSV {tmp_path / 'none.csv'} does not exist")
    with pytest.raises(DatasetError, match="line 3: empty identity"):
        read_leak(root / "leak.npy", _write_csv(root / "e.csv", [rows[0], dict(rows[1], identity="")] + rows[2:]),
                  128)
