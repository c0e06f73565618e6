"""Image loading: every bad file gets one clear error naming it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from probes.errors import ImageError
from probes.images import list_image_files, load_image, scan_images


def test_modes_are_converted_or_refused(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgb.png"), rgb)

    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    gray = load_image(tmp_path / "gray.png")
    assert gray.shape == (40, 30, 3) and (gray[..., 0] == gray[..., 2]).all()

    rgba = np.dstack([rgb, np.full((40, 30), 0, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert load_image(tmp_path / "rgba.png").max() == 0  # fully transparent over black

    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    deep = load_image(tmp_path / "deep.png")
    assert deep.dtype == np.uint8 and abs(int(deep[..., 0].astype(int).max()) - int(rgb[..., 0].max())) <= 1

    for name in ("gray.png", "rgba.png", "deep.png"):
        with pytest.raises(ImageError, match=name):
            load_image(tmp_path / name, strict=True)


def test_corrupt_truncated_small_and_missing(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.jpg").write_bytes(b"definitely not a jpeg")
    Image.fromarray(rgb[:8, :8]).save(tmp_path / "tiny.png")
    for name in ("truncated.jpg", "noise.jpg", "tiny.png", "missing.png"):
        with pytest.raises(ImageError, match=name):
            load_image(tmp_path / name)
    with pytest.warns(UserWarning, match="unreadable"):
        good, bad = scan_images(sorted(tmp_path.iterdir()))
    assert [p.name for p in good] == ["ok.jpg"]
    assert {p.name for p, _ in bad} == {"truncated.jpg", "noise.jpg", "tiny.png"}


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(ImageError, match="no image files"):
        list_image_files(tmp_path)
    with pytest.raises(ImageError, match="does not exist"):
        list_image_files(tmp_path / "nope")
