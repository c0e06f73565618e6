"""Dataset loaders: UTKFace names, LFW protocol files, folders with CSV labels, splits."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from probes.datasets import (
    FaceDataset,
    identity_split,
    lfw_home,
    load_dataset,
    load_folder,
    load_lfw_pairs,
    load_lfw_people,
    load_utkface,
    parse_lfw_pairs_file,
    parse_utkface_name,
)
from probes.errors import DatasetError, ImageError, UnknownNameError

# ------------------------------------------------------------------ UTKFace


def test_parse_utkface_name():
    assert parse_utkface_name("26_1_2_20170116174525125.jpg.chip.jpg") == (26.0, 1, 2, "20170116174525125")
    assert parse_utkface_name("61_1_20170109142408075.jpg.chip.jpg") is None  # race missing
    assert parse_utkface_name("x_1_2_2017.jpg.chip.jpg") is None
    assert parse_utkface_name("30_5_0_2017.jpg.chip.jpg") is None  # sex must be 0/1


def test_utkface_counts_and_malformed_warning(data_root):
    with pytest.warns(UserWarning, match=r"skipped 2 file.*61_1_20170109142408075") as record:
        ds = load_utkface(data_root)
    assert sum("UTKFace" in str(w.message) for w in record) == 1  # one warning, not one per file
    assert len(ds) == 8804 and ds.layout == "utkface"
    assert set(ds.attributes) == {"age", "sex", "race"}
    sex, race, age = ds.labels("sex"), ds.labels("race"), ds.labels("age")
    assert np.bincount(sex).tolist() == [3936, 4868]
    assert np.bincount(race).tolist() == [4745, 366, 1391, 1298, 1004]
    assert age.dtype == np.float64 and age.min() >= 1 and age.max() <= 110
    assert [p.name for p in ds.paths] == sorted(p.name for p in ds.paths)
    with pytest.raises(DatasetError, match="no 'identity' labels"):
        ds.labels("identity")


def test_utkface_subsample_is_deterministic(data_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b, c = (load_utkface(data_root, max_images=20, seed=s) for s in (0, 0, 1))
    assert len(a) == 20 and a.paths == b.paths and a.paths != c.paths
    assert a.paths == sorted(a.paths)
    images = a.load_images([0, 3])
    assert images.shape == (2, 200, 200, 3) and images.dtype == np.uint8
    sub = a.subset([3, 0])
    assert sub.paths == [a.paths[3], a.paths[0]]
    assert sub.labels("age").tolist() == [a.labels("age")[3], a.labels("age")[0]]


# ------------------------------------------------------------------ LFW


def test_lfw_pairs_10_folds(data_root):
    pairs = load_lfw_pairs(data_root, subset="10_folds")
    assert len(pairs) == 6000 and pairs.same.dtype == bool
    assert sorted(np.unique(pairs.fold).tolist()) == list(range(10))
    for k in range(10):
        in_fold = pairs.same[pairs.fold == k]
        assert len(in_fold) == 600 and in_fold[:300].all() and not in_fold[300:].any()
    # Same pairs are one person; different pairs two.
    ids_a = np.array([p.parent.name for p in pairs.paths_a])
    ids_b = np.array([p.parent.name for p in pairs.paths_b])
    assert (ids_a == ids_b).tolist() == pairs.same.tolist()
    # Indices are 1-based image numbers, as scikit-learn reads them (sorted listing, idx - 1).
    first = pairs.paths_a[0]
    assert first.name == sorted(os.listdir(first.parent))[int(first.stem[-4:]) - 1]
    unique = pairs.unique_paths()
    assert len(unique) == len(set(pairs.paths_a) | set(pairs.paths_b))
    assert [unique[i] for i in pairs.index_a[:50]] == pairs.paths_a[:50]
    assert [unique[i] for i in pairs.index_b[-50:]] == pairs.paths_b[-50:]
    images = pairs.dataset()
    assert len(images) == len(unique) and images.layout == "lfw"
    assert images.load_images([0]).shape == (1, 250, 250, 3)


@pytest.mark.parametrize("subset, n", [("train", 2200), ("test", 1000)])
def test_lfw_dev_pairs(data_root, subset, n):
    pairs = load_lfw_pairs(data_root / "lfw_home", subset=subset)  # lfw_home itself is accepted too
    assert len(pairs) == n and pairs.same.sum() == n // 2 and (pairs.fold == 0).all()


def test_lfw_pairs_file_errors(tmp_path):
    bad = tmp_path / "pairs.txt"
    bad.write_text("1\t1\nA\t1\t2\nB\t1\tC\n")
    with pytest.raises(DatasetError, match="line 3"):
        parse_lfw_pairs_file(bad)
    bad.write_text("2\t1\nA\t1\t2\n")
    with pytest.raises(DatasetError, match="promises"):
        parse_lfw_pairs_file(bad)
    with pytest.raises(UnknownNameError, match="10_folds"):
        load_lfw_pairs(tmp_path, subset="dev")


def test_lfw_home_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEPROBE_LFW_HOME", raising=False)
    monkeypatch.delenv("FACEPROBE_DATA", raising=False)
    with pytest.raises(DatasetError, match="FACEPROBE_LFW_HOME.*FACEPROBE_DATA.*download_if_missing"):
        lfw_home()
    monkeypatch.setenv("FACEPROBE_LFW_HOME", str(tmp_path))
    with pytest.raises(DatasetError, match=r"from FACEPROBE_LFW_HOME.*missing.*pairs\.txt"):
        load_lfw_pairs()


def test_lfw_people_identities(data_root):
    people = load_lfw_people_small(data_root)
    ids = people.labels("identity")
    counts = pd.Series(ids).value_counts()
    assert counts.min() >= 20 and counts["George_W_Bush"] == 530
    assert all(p.parent.name == i for p, i in zip(people.paths, ids))
    with pytest.raises(DatasetError, match="lfw has no 'age' labels.*labeller"):
        people.labels("age")


def load_lfw_people_small(root: Path) -> FaceDataset:
    return load_lfw_people(root, min_images_per_person=20)


# ------------------------------------------------------------------ splits


def test_identity_split_is_disjoint_and_deterministic(data_root):
    images = load_lfw_pairs(data_root, subset="10_folds").dataset()
    parts = identity_split(images, (0.8, 0.1, 0.1), seed=0)
    again = identity_split(images, (0.8, 0.1, 0.1), seed=0)
    other = identity_split(images, (0.8, 0.1, 0.1), seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    assert not np.array_equal(parts[0], other[0])
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(images)))
    ids = images.labels("identity")
    people = [set(ids[p]) for p in parts]
    assert not (people[0] & people[1]) and not (people[0] & people[2]) and not (people[1] & people[2])
    fractions = np.array([len(p) for p in parts]) / len(images)
    assert np.allclose(fractions, (0.8, 0.1, 0.1), atol=0.03)


def test_image_split_without_identities(data_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_utkface(data_root, max_images=200)
    train, val, test = identity_split(ds, (0.5, 0.25, 0.25), seed=3)
    assert (len(train), len(val), len(test)) == (100, 50, 50)
    assert not set(train) & set(test)
    with pytest.raises(DatasetError, match="no identity labels"):
        identity_split(ds, by="identity")
    with pytest.raises(DatasetError, match="fractions"):
        identity_split(ds, (0.5, 0.6, 0.1))


# ------------------------------------------------------------------ folders


def _write_faces(folder: Path, names: list[str], size=(40, 48)) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)


def test_folder_with_csv(tmp_path):
    _write_faces(tmp_path, ["a/1.png", "a/2.png", "b/1.jpg", "extra.png"])
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"file": ["b/1.jpg", "a/1.png", "a/2.png"], "identity": [7, 3, 3],
                  "age": [30, 41.5, None], "sex": ["F", "m", 1]}).to_csv(csv, index=False)
    with pytest.warns(UserWarning, match="1 image.*extra.png"):
        ds = load_folder(tmp_path, csv)
    assert [p.relative_to(tmp_path).as_posix() for p in ds.paths] == ["b/1.jpg", "a/1.png", "a/2.png"]
    assert ds.labels("identity").tolist() == ["7", "3", "3"]
    assert ds.labels("sex").tolist() == [1, 0, 1]
    age = ds.labels("age")
    assert age[:2].tolist() == [30.0, 41.5] and np.isnan(age[2])
    assert ds.load_images().shape == (3, 40, 48, 3)
    train, val, _ = identity_split(ds, (0.5, 0.5, 0.0))
    assert {tuple(sorted(train)), tuple(sorted(val))} == {(0,), (1, 2)}  # person "3" stays together


def test_folder_csv_missing_files(tmp_path):
    _write_faces(tmp_path, ["a.png"])
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"file": ["a.png", "gone.png", "sub/lost.jpg"], "age": [1, 2, 3]}).to_csv(csv, index=False)
    with pytest.raises(DatasetError, match=r"2 listed file\(s\) do not exist.*gone\.png, sub/lost\.jpg"):
        load_folder(tmp_path, csv)
    pd.DataFrame({"name": ["a.png"]}).to_csv(csv, index=False)
    with pytest.raises(DatasetError, match="no 'file' column"):
        load_folder(tmp_path, csv)


def test_folder_scan_skips_corrupt_image(tmp_path):
    _write_faces(tmp_path, ["good1.png", "good2.png"])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.warns(UserWarning, match="1 unreadable"):
        ds = load_folder(tmp_path, scan=True, layout="chip")
    assert [p.name for p in ds.paths] == ["good1.png", "good2.png"]
    assert [p.name for p, _ in ds.skipped] == ["broken.jpg"]
    assert ds.load_images().shape == (2, 40, 48, 3)
    unscanned = load_folder(tmp_path)
    assert len(unscanned) == 3
    with pytest.raises(ImageError, match="broken.jpg"):
        unscanned.load_images()


def test_with_labels_marks_source(tmp_path):
    _write_faces(tmp_path, ["x.png", "y.png"])
    ds = load_folder(tmp_path)
    with pytest.raises(DatasetError, match="no 'age' labels"):
        ds.labels("age")
    aged = ds.with_labels(age=[20.0, 30.0], source="estimated by test")
    assert aged.labels("age").tolist() == [20.0, 30.0] and aged.label_source["age"] == "estimated by test"
    with pytest.raises(DatasetError, match="one value per image"):
        ds.with_labels(age=[1.0])


def test_load_dataset_dispatch(tmp_path, monkeypatch):
    with pytest.raises(UnknownNameError, match="utkface, lfw, folder"):
        load_dataset("celeba")
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="nowhere"):
        load_dataset("utkface", root=missing)
    monkeypatch.delenv("FACEPROBE_DATA", raising=False)
    with pytest.raises(DatasetError, match="FACEPROBE_DATA"):
        load_dataset("utkface")
    monkeypatch.setenv("FACEPROBE_DATA", str(missing))
    with pytest.raises(DatasetError, match=r"nowhere \(from FACEPROBE_DATA\)"):
        load_dataset("utkface")
    _write_faces(tmp_path, ["p.png"])
    assert len(load_dataset("folder", root=tmp_path)) == 1


def test_download_goes_through_sklearn_only_when_asked(tmp_path, monkeypatch):
    import sklearn.datasets

    calls = []

    def fake_fetch(subset, data_home, funneled, download_if_missing):
        calls.append((subset, data_home, funneled, download_if_missing))
        home = Path(data_home) / "lfw_home"
        _write_faces(home / "lfw", ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0001.jpg"], size=(25, 25))
        (home / "pairsDevTest.txt").write_text("1\nAnn\t1\t2\nAnn\t1\tBob\t1\n")

    monkeypatch.setattr(sklearn.datasets, "fetch_lfw_pairs", fake_fetch)
    with pytest.raises(DatasetError, match="download_if_missing=True"):
        load_lfw_pairs(tmp_path, subset="test")
    assert calls == []
    with pytest.warns(UserWarning, match="not the official"):
        pairs = load_lfw_pairs(tmp_path, subset="test", download_if_missing=True)
    assert calls == [("test", str(tmp_path), False, True)]
    assert pairs.same.tolist() == [True, False] and len(pairs.unique_paths()) == 3
