"""Uncropped photos, one sub-folder per person: ``decoders.evaluate --images DIR`` and
``decoders.reconstruct --images DIR --layout photo`` detect and align each face through ``probes.align``.

Thresholds come from the folder's own cross-identity impostor pairs; a photo without a face is named, a
person without any face is an error, and so is a folder that is not one sub-folder per person.
"""

from __future__ import annotations

import json
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_reconstruct_evaluate import tiny_run  # noqa: F401 (fixture)

from decoders.dfd.photos import scan_people
from decoders.evaluate import main as evaluate_main
from decoders.reconstruct import main as reconstruct_main
from probes.errors import DatasetError

PEOPLE = {"Laura_Bush": 3, "Saddam_Hussein": 2, "Alec_Baldwin": 1}


@pytest.fixture(scope="module")
def people(data_root, faceapi_weights, tmp_path_factory):
    """LFW photos (uncropped 250 x 250 frames) of three people, one sub-folder each, and a photo without a face."""
    root = tmp_path_factory.mktemp("people") / "people"
    lfw = Path(data_root) / "lfw_home" / "lfw"
    for person, n in PEOPLE.items():
        (root / person).mkdir(parents=True)
        for p in sorted((lfw / person).iterdir())[:n]:
            shutil.copy(p, root / person / p.name)
    Image.fromarray(np.full((250, 250, 3), 128, np.uint8)).save(root / "Laura_Bush" / "blank.jpg")
    return root


def test_evaluate_a_folder_of_people(tiny_run, people, tmp_path, capsys):  # noqa: F811 (fixture)
    out = tmp_path / "eval"
    args = ["--checkpoint", str(tiny_run["run"]), "--images", str(people), "--fmr", "0.25", "0.1",
            "--type2-max-refs", "0", "--cache-dir", str(tiny_run["cache"]), "--no-progress", "--out", str(out)]
    assert evaluate_main(args) == 0
    captured = capsys.readouterr()
    assert "no face detected in 1 photo(s), left out: Laura_Bush/blank.jpg" in captured.err
    result = json.loads((out / "results.json").read_text())
    n = sum(PEOPLE.values())
    assert result["data"]["n_test_images"] == n and result["data"]["n_photos"] == n + 1
    assert result["data"]["photos_without_face"] == [str((people / "Laura_Bush" / "blank.jpg").resolve())]
    ids = [p for p, k in PEOPLE.items() for _ in range(k)]
    impostors = sum(a != b for a, b in combinations(ids, 2))
    genuine = sum(a == b for a, b in combinations(ids, 2))
    thr = result["thresholds"]["dlib-resnet29"]
    assert (thr["n_impostor_cross"], thr["n_genuine"], thr["n_impostor_pairs"]) == (impostors, genuine, 0)
    assert thr["at_fmr"]["0.25"]["impostor_set"] == "cross" and thr["pairs_file"] is None
    attack = result["attack"]
    assert attack["type_I"]["n"] == n
    assert attack["type_II"]["n"] == 2 * genuine  # each ordered pair of one person's photos
    assert attack["type_II"]["n_reconstructions"] == n - 1  # Alec_Baldwin's one photo: type-I only
    assert attack["control_other_people"]["n"] == 2 * impostors
    assert 0 < result["image_quality"]["lpips_mean"] < 2
    rows = (out / "per_image.csv").read_text().splitlines()
    assert len(rows) == n + 1 and all(str(people) in r for r in rows[1:])  # the source photo of each face
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 4 * 3 + 2

    # A person none of whose photos has a face is an error naming them, never silently left out.
    lost = tmp_path / "lost"
    shutil.copytree(people, lost)
    for p in (lost / "Alec_Baldwin").iterdir():
        p.unlink()
    Image.fromarray(np.full((250, 250, 3), 30, np.uint8)).save(lost / "Alec_Baldwin" / "dark.jpg")
    assert evaluate_main(args[:3] + [str(lost)] + args[4:-1] + [str(tmp_path / "e2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no face detected in any photo of 1 person/people: Alec_Baldwin" in err and len(err.splitlines()) == 1


def test_reconstruct_uncropped_photos(tiny_run, people, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "recon"
    assert reconstruct_main(["--checkpoint", str(tiny_run["run"]), "--images", str(people), "--layout", "photo",
                             "--cache-dir", str(tiny_run["cache"]), "--no-progress", "--no-lpips",
                             "--out", str(out)]) == 0
    assert "no face detected in 1 photo(s)" in capsys.readouterr().err
    names = sorted(p.stem for p in (out / "reconstructions").glob("*.png"))
    assert len(names) == sum(PEOPLE.values()) and "Laura_Bush__blank" not in names
    assert "Saddam_Hussein__Saddam_Hussein_0001" in names  # named after the source photo
    summary = json.loads((out / "reconstruct.json").read_text())
    assert summary["inputs"]["layout"] == "photo" and len(summary["inputs"]["photos_without_face"]) == 1


def test_folders_that_are_not_one_sub_folder_per_person(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_people(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(DatasetError, match="no sub-folders"):
        scan_people(tmp_path / "a")
    (tmp_path / "a" / "Ann").mkdir()
    with pytest.raises(DatasetError, match="sub-folder Ann holds no photos"):
        scan_people(tmp_path / "a")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a" / "Ann" / "x.png")
    assert scan_people(tmp_path / "a") == ([tmp_path / "a" / "Ann" / "x.png"], ["Ann"])
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a" / "loose.jpg")
    with pytest.raises(DatasetError, match="photo loose.jpg lies outside a person's sub-folder"):
        scan_people(tmp_path / "a")
