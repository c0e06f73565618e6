"""load_folder(root, layout="people"): one sub-folder per person of uncropped photos (probes.datasets.people)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from probes.datasets import load_dataset, load_folder
from probes.datasets.people import SKIPPED_FILE, identity_problem, write_skipped
from probes.errors import DatasetError
from probes.geometry import LFW_FRAME_SIZE, lfw_frame_template

PEOPLE = {"Colin_Powell": ("Colin_Powell_0001.jpg", "Colin_Powell_0002.jpg"),
          "Serena_Williams": ("Serena_Williams_0001.jpg", "Serena_Williams_0002.jpg")}


def test_identity_names():
    assert identity_problem("Ada_Lovelace") is None and identity_problem("Jean Dupont") is None
    assert "blank" in identity_problem("   ")
    assert "spaces" in identity_problem(" Ada")
    assert "hidden" in identity_problem(".cache")


def test_write_skipped_writes_and_clears(tmp_path):
    path = write_skipped(tmp_path, [(tmp_path / "a.txt", "not an image file")])
    assert path == tmp_path / SKIPPED_FILE
    assert path.read_text().splitlines() == ["file,reason", f"{tmp_path / 'a.txt'},not an image file"]
    assert write_skipped(tmp_path, []) is None and not path.exists()  # a rerun with nothing left out


def test_a_folder_without_person_sub_folders_is_refused(tmp_path):
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "loose.png")
    with pytest.raises(DatasetError, match=r"no photos in person sub-folders.*loose.png: an image outside"):
        load_folder(tmp_path, layout="people", cache_dir=tmp_path / "cache")
    with pytest.raises(DatasetError, match="labels_csv is for a flat folder"):
        load_folder(tmp_path, labels_csv=tmp_path / "x.csv", layout="people")
    with pytest.raises(DatasetError, match="does not exist"):
        load_folder(tmp_path / "nowhere", layout="people")


@pytest.fixture(scope="module")
def people_root(tmp_path_factory, data_root, faceapi_weights):
    root = tmp_path_factory.mktemp("people") / "friends"
    for person, files in PEOPLE.items():
        (root / person).mkdir(parents=True)
        for name in files:
            source = data_root / "lfw_home" / "lfw" / person / name
            if not source.is_file():
                pytest.skip(f"{source} not in the shared data")
            shutil.copy(source, root / person / name)
    (root / "Colin_Powell" / "notes.txt").write_text("not a photo")
    (root / "Colin_Powell" / "broken.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 100, 3), dtype=np.uint8)).save(
        root / "Serena_Williams" / "noise.png")
    (root / "Nobody").mkdir()
    (root / ".hidden").mkdir()
    shutil.copy(root / "Colin_Powell" / PEOPLE["Colin_Powell"][0], root / ".hidden" / "x.jpg")
    shutil.copy(root / "Colin_Powell" / PEOPLE["Colin_Powell"][0], root / "loose.jpg")
    return root


@pytest.mark.data
def test_person_sub_folders_become_identities_of_aligned_frames(people_root, tmp_path_factory):
    cache = tmp_path_factory.mktemp("aligned")
    with pytest.warns(UserWarning, match="left out"):
        faces = load_folder(people_root, layout="people", cache_dir=cache, detector="tiny")
    assert faces.layout == "lfw" and faces.name == "friends" and len(faces) == 4
    assert sorted(faces.labels("identity")) == ["Colin_Powell"] * 2 + ["Serena_Williams"] * 2
    assert faces.label_source["identity"] == "sub-folder name"
    assert [p.name for p in faces.sources] == [n for files in PEOPLE.values() for n in files]
    assert all("the only face found by faceapi-tinyfacedetector" in w for w in faces.why), faces.why
    frames = faces.load_images()
    assert frames.shape == (4, *LFW_FRAME_SIZE, 3)
    reasons = {p.relative_to(people_root).as_posix(): r for p, r in faces.skipped}
    assert reasons["Colin_Powell/notes.txt"] == "not an image file"
    assert reasons["Colin_Powell/broken.jpg"].startswith("unreadable:") and "broken.jpg" in reasons[
        "Colin_Powell/broken.jpg"]
    assert reasons["Serena_Williams/noise.png"].startswith("no face found")
    assert reasons["Nobody"] == "empty sub-folder: no image files"
    assert "not a valid identity" in reasons[".hidden/x.jpg"]
    assert "outside any person's sub-folder" in reasons["loose.jpg"]
    assert len(reasons) == 6
    # the frames put the eyes where LFW frames have them
    from probes.geometry import five_points
    from probes.labellers.landmarks import LandmarkDetector

    eyes = five_points(LandmarkDetector().predict(frames, layout="lfw"))[:, :2]  # read as LFW frames are
    assert np.abs(eyes - lfw_frame_template()[:2]).max() < 8.0
    # a second load reads the cache: nothing is detected or written again
    stamps = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    with pytest.warns(UserWarning, match="left out"):
        again = load_dataset("folder", people_root, layout="people", cache_dir=cache, detector="tiny")
    assert again.paths == faces.paths and {p: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps
    # subsets keep the list of what was left out
    assert len(faces.subset([0, 2]).skipped) == 6


@pytest.mark.data
def test_expressivity_sweep_reads_a_people_folder(people_root, tmp_path, monkeypatch):
    import probes.datasets.people as people
    from probes.expressivity.pipeline import ExpressivityConfig, load_faces

    monkeypatch.setattr(people, "cache_home", lambda: tmp_path)  # keep the test's frames out of the real cache
    config = ExpressivityConfig(dataset="folder", data_root=str(people_root), folder_layout="people", max_images=3)
    with pytest.warns(UserWarning, match="left out"):
        faces = load_faces(config)
    assert len(faces) == 3 and set(faces.labels("identity")) <= set(PEOPLE) and len(faces.skipped) == 6
    assert len(list((tmp_path / "aligned").glob("*.png"))) == 4  # the default cache: $FACEPROBE_HOME/aligned
