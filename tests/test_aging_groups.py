"""Age groups, the aging-function contract and the aging-face loader."""

from __future__ import annotations

import numpy as np
import pytest

from decoders.aging import AGECGAN_GROUPS, IPCGAN_GROUPS, AgeGroups, AgingError, check_faces
from decoders.aging.data import load_aging_faces, resize_faces


def test_group_boundaries_follow_the_papers():
    assert IPCGAN_GROUPS.of([10, 11, 20, 21, 50, 51, 99]).tolist() == [-1, 0, 0, 1, 3, 4, 4]
    assert AGECGAN_GROUPS.of([0, 18, 19, 29, 30, 59, 60, np.nan]).tolist() == [0, 0, 1, 1, 2, 4, 5, -1]
    assert len(IPCGAN_GROUPS) == 5 and len(AGECGAN_GROUPS) == 6
    assert AgeGroups.from_dict(IPCGAN_GROUPS.to_dict()) == IPCGAN_GROUPS


def test_targets_outside_the_groups_are_refused_by_name():
    assert IPCGAN_GROUPS.check([0, 4]).tolist() == [0, 4]
    with pytest.raises(AgingError, match="target_group 5 is outside"):
        IPCGAN_GROUPS.check(5, argument="target_group")
    with pytest.raises(AgingError, match="integer group indices"):
        AGECGAN_GROUPS.check(1.5)
    with pytest.raises(AgingError, match="increase"):
        AgeGroups("bad", (10, 5), ("a", "b"))


def test_check_faces_names_shape_dtype_and_size():
    good = np.zeros((2, 64, 64, 3), np.uint8)
    assert check_faces(good, 64) is not None
    with pytest.raises(AgingError, match="outputs must be uint8"):
        check_faces(good.astype(np.float32), argument="outputs")
    with pytest.raises(AgingError, match="N x H x W x 3"):
        check_faces(np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(AgingError, match="must be 64x64"):
        check_faces(np.zeros((1, 32, 32, 3), np.uint8), 64)


def test_resize_faces_round_trip_keeps_a_smooth_image():
    y, x = np.mgrid[0:64, 0:64]
    image = np.stack([x * 4, y * 4, (x + y) * 2], -1).clip(0, 255).astype(np.uint8)[None]
    up = resize_faces(image, 200)
    assert up.shape == (1, 200, 200, 3) and up.dtype == np.uint8
    back = resize_faces(up, 64)
    assert np.abs(back.astype(int) - image.astype(int)).mean() < 2.0


@pytest.mark.data
def test_load_aging_faces_drops_faces_outside_the_groups(data_root, tmp_path):
    faces = load_aging_faces(IPCGAN_GROUPS, 32, root=data_root, max_images=40, seed=1, cache_dir=tmp_path,
                             progress=False)
    assert faces.images.shape == (40, 32, 32, 3)
    assert (faces.ages >= 11).all() and (faces.group == IPCGAN_GROUPS.of(faces.ages)).all()
    assert set(np.unique(faces.sex)) <= {0, 1}
    again = load_aging_faces(IPCGAN_GROUPS, 32, root=data_root, max_images=40, seed=1, cache_dir=tmp_path,
                             progress=False)
    assert np.array_equal(again.images, faces.images) and again.paths == faces.paths
    train, test = faces.split((0.75, 0.25), seed=0)
    assert len(train) == 30 and len(test) == 10 and not set(train.paths) & set(test.paths)
