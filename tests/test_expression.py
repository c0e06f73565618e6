"""faceapi-expression: face-api's FaceExpressionNet port, its registry entry and its use in the sweep."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from probes.errors import ImageError, UnknownNameError
from probes.expressivity.labels import DEFAULT_LABELLERS, DISCRETE_LABELLER_OUTPUTS, KNOWN_ATTRIBUTES
from probes.labellers import create_labeller, get_labeller_spec
from probes.labellers.expression import EXPRESSIONS, ExpressionLabeller
from probes.labellers.faceapi import faceapi_to_state
from probes.labellers.landmarks import FaceFeatureNet, FaceLandmark68Net
from probes.tfjs import read_weights_manifest


def test_net_shapes_and_registry_entry():
    assert FaceFeatureNet(7).eval()(torch.zeros(3, 3, 112, 112)).shape == (3, 7)
    assert set(FaceFeatureNet(7).state_dict()) - {"fc.weight", "fc.bias"} == \
        set(FaceLandmark68Net().state_dict()) - {"fc.weight", "fc.bias"}  # the same body and names
    spec = get_labeller_spec("faceapi-expression")
    assert spec.attributes == ("expression", "p_neutral", "p_happy", "p_sad", "p_angry", "p_fearful",
                               "p_disgusted", "p_surprised")
    assert EXPRESSIONS[0] == "neutral" and EXPRESSIONS[6] == "surprised"


def test_sweep_takes_expression_as_a_seven_class_label():
    assert "expression" in KNOWN_ATTRIBUTES and "expression" in DISCRETE_LABELLER_OUTPUTS
    assert DEFAULT_LABELLERS["expression"] == "faceapi-expression"


def test_random_init_predicts_probabilities_and_refuses_bad_inputs():
    labeller = ExpressionLabeller(pretrained=False)
    out = labeller.predict(np.random.default_rng(0).integers(0, 256, (3, 90, 80, 3), dtype=np.uint8))
    p = np.stack([out[f"p_{e}"] for e in EXPRESSIONS], 1)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert out["expression"].dtype == np.int64 and (out["expression"] == p.argmax(1)).all()
    with pytest.raises(ImageError, match="smaller than 16"):
        labeller.predict(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ImageError, match="empty batch"):
        labeller.predict([])
    with pytest.raises(UnknownNameError, match="labeller 'faceapi-expression' has no crop for layout 'selfie'"):
        labeller.predict(np.zeros((64, 64, 3), np.uint8), layout="selfie")


# ---- with the face-api weights -----------------------------------------------------------------


@pytest.fixture(scope="module")
def expression(expression_weights):
    return create_labeller("faceapi-expression")


def test_manifest_decodes_into_the_port(expression):
    from probes.weights import WEIGHT_FILES, weight_path

    tensors = read_weights_manifest(weight_path("face_expression_model-weights_manifest.json"))
    state = faceapi_to_state(tensors, "manifest")
    assert len(tensors) == 49 and set(state) == set(expression.net.state_dict())
    np.testing.assert_array_equal(expression.net.fc.weight.detach().numpy(), tensors["fc/weights"].T)
    assert expression.weights_id == WEIGHT_FILES["face_expression_model.bin"].sha256


def _pattern(h: int, w: int) -> torch.Tensor:
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    values = (3 * y + 5 * x + 71 * c + (x * y) % 17) % 256
    return torch.from_numpy(values.astype(np.float32)).permute(2, 0, 1)[None] / 255


# face-api's 7 probabilities (FaceExpressionNet.predictExpressions, @vladmandic/face-api 1.7.15 on
# TensorFlow.js 4.22, CPU backend, Node.js 20) for _pattern(112, 112) and a UTKFace crop at 112 x 112.
FACEAPI_EXPRESSIONS = {
    "pattern_112": [0.04877958819270134, 0.02245848812162876, 0.910402774810791, 0.006690931040793657,
                    0.009572920389473438, 0.0005943445721641183, 0.0015009265625849366],
    # UTKFace 22_1_3_20170104222853135.jpg.chip.jpg resized to 112 x 112 (PIL bilinear)
    "utk0_112": [0.0029764152131974697, 0.9969833493232727, 1.3163183609776752e-7, 6.607792784052435e-7,
                 5.519364076889133e-9, 0.0000040717645788390655, 0.00003533532071742229],
}


def test_port_matches_faceapi_js_on_a_pattern(expression):
    expected = FACEAPI_EXPRESSIONS["pattern_112"]
    out = expression.predict(_pattern(112, 112))
    np.testing.assert_allclose([out[f"p_{e}"][0] for e in EXPRESSIONS], expected, atol=1e-5)


@pytest.mark.data
def test_expressions_of_real_faces(expression, data_root):
    from PIL import Image

    from probes.datasets import load_utkface
    from probes.images import load_image

    utk = load_utkface(data_root, max_images=24, seed=0)
    images = utk.load_images()
    out = expression.predict(images, layout="utkface")
    assert out["expression"].shape == (24,) and set(np.unique(out["expression"])) <= set(range(7))
    # most portraits here are neutral or happy; a mirrored face keeps its expression
    assert np.isin(out["expression"], [0, 1]).mean() >= 0.6
    mirrored = expression.predict(np.ascontiguousarray(images[:, :, ::-1]), layout="utkface")
    assert (mirrored["expression"] == out["expression"]).mean() >= 0.8
    face = load_image(data_root / "utkface" / "22_1_3_20170104222853135.jpg.chip.jpg")
    crop = np.asarray(Image.fromarray(face).resize((112, 112), Image.BILINEAR))
    ours = expression.predict(crop[None])
    np.testing.assert_allclose([ours[f"p_{e}"][0] for e in EXPRESSIONS], FACEAPI_EXPRESSIONS["utk0_112"],
                               atol=1e-4)


@pytest.mark.data
def test_expressivity_command_estimates_expression(tmp_path, data_root, expression_weights):
    from probes.expressivity.__main__ import main

    out = tmp_path / "run"
    argv = ["--dataset", "utkface", "--data-root", str(data_root), "--max-images", "120", "--attributes",
            "expression", "--layers", "fc", "--estimator", "probe", "--seeds", "0", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    table = pd.read_csv(out / "results.csv")
    assert set(table["attribute"]) == {"expression"} and set(table["label_source"]) == {"faceapi-expression"}
    assert (table["ceiling_nats"] <= math.log(7) + 1e-9).all()
    assert (table["attribute_kind"] == "discrete").all()
    assert (table["estimate"] <= table["ceiling_nats"] + 1e-9).all()
    summary = json.loads((out / "results.json").read_text())
    assert summary["config"]["attributes"] == ["expression"]
