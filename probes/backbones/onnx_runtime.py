"""ONNX face-embedding graphs run by onnxruntime, as modules (``arcface-r50-onnx``, or any ``.onnx`` you bring).

onnxruntime runs the graph: only its output is visible (one parameter-free tap,
``embedding``) and gradients do not flow through it. It is imported when a file
is opened, never at faceprobe's import; without it the error says to install it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import FaceprobeError, WeightFileError

ONNX_NEEDS = ("ONNX backbones need the onnxruntime package (pip install onnxruntime); faceprobe runs the graph "
              "with it, since no ONNX-to-PyTorch converter (onnx2torch) is installed")


class OnnxEmbedder(nn.Module):
    """An ONNX face-embedding graph run by onnxruntime, as a module.

    Only the output is visible: ``embedding`` is a parameter-free tap point on
    it. Gradients do not flow through onnxruntime, so an input that requires
    grad is refused rather than silently cut off. ``input_size`` /
    ``embedding_size`` None: taken from the file when opened (a free height or
    width becomes ``default_size``; a free embedding size is learnt on the first run).
    """

    def __init__(self, input_size: tuple[int, int] | None = (112, 112), embedding_size: int | None = 512,
                 name: str = "arcface-r50-onnx", default_size: tuple[int, int] = (112, 112)):
        super().__init__()
        self.default_size = tuple(default_size)
        self.input_size = tuple(input_size) if input_size is not None else None
        self.embedding_size = embedding_size
        self.name = name
        self.embedding = nn.Identity()
        self.session = None
        self.input_name = ""
        self.fixed_batch: int | None = None

    def load(self, path: Path) -> None:
        """Open ``path`` with onnxruntime and check it is a single-input, single-output embedder."""
        try:
            import onnxruntime as ort  # imported here: only ONNX backbones need it
        except ImportError as exc:
            raise FaceprobeError(f"{path}: {ONNX_NEEDS} ({exc})") from exc

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise WeightFileError(f"{path} is not a loadable ONNX model: {exc}") from exc
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise WeightFileError(
                f"{path}: expected one input and one output (an embedding model), got inputs "
                f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}")
        shape, out_shape = inputs[0].shape, outputs[0].shape
        if self.input_size is None:
            fixed = len(shape) == 4 and all(isinstance(s, int) for s in shape[2:])
            self.input_size = (shape[2], shape[3]) if fixed else self.default_size
        expected = (3,) + self.input_size
        if len(shape) != 4 or any(isinstance(s, int) and s != e for s, e in zip(shape[1:], expected)):
            raise WeightFileError(f"{path}: input {inputs[0].name!r} has shape {shape}, expected "
                                  f"[N, {', '.join(map(str, expected))}]")
        if self.embedding_size is None and out_shape and isinstance(out_shape[-1], int):
            self.embedding_size = out_shape[-1]
        if not out_shape or len(out_shape) != 2 or (self.embedding_size is not None and isinstance(
                out_shape[-1], int) and out_shape[-1] != self.embedding_size):
            raise WeightFileError(f"{path}: output {outputs[0].name!r} has shape {out_shape}, expected "
                                  f"[N, {self.embedding_size or 'D'}]")
        self.session, self.input_name = session, inputs[0].name
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.session is None:
            raise WeightFileError(f"no ONNX model loaded: use create_backbone({self.name!r}, weights=PATH)")
        if x.requires_grad:
            raise FaceprobeError(f"backbone {self.name!r} runs in onnxruntime and has no gradients; "
                                 "use a PyTorch model of the network for gradient work")
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        step = self.fixed_batch or max(1, len(array))  # a graph exported with batch 1 runs image by image
        outs = [self.session.run(None, {self.input_name: array[i:i + step]})[0] for i in range(0, len(array), step)]
        out = np.concatenate(outs) if outs else np.zeros((0, self.embedding_size or 0), np.float32)
        return self.embedding(torch.from_numpy(out.reshape(len(array), -1)).to(x.device))
