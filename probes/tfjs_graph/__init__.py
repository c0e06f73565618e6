"""TensorFlow.js graph models (``model.json`` + ``*.bin``) as differentiable PyTorch modules.

A graph model's ``model.json`` holds a TF GraphDef as JSON (``modelTopology.node``:
``name``, ``op``, ``input``, ``attr``) and a weights manifest; every ``Const``
node takes its value from the manifest by name (decoded by
:func:`probes.tfjs.decode_weight_groups`, the one decoder of that format).
:class:`TFJSGraph` interprets the nodes in topological order.

Why an interpreter rather than a mapping onto a timm model: the two face
graphs we load (a Keras MobileNet with batch norm spelled out as Mul/Add and
ReLU6 as Relu/Minimum/Maximum, and an MXNet MobileFace with PReLU spelled out
as Maximum/Minimum/Mul/AddV2 and explicit Pad nodes) would each need a
hand-written name and layout map, and every intermediate node would be lost
as a tap point. Interpreting the graph keeps TF's node names, so any node's
output can be read by name and the TF.js runtime is the reference, op by op.

Layout: TF graphs are NHWC. Internally every 4-D activation is kept in
PyTorch's NCHW order (convolutions are faster so) and each value carries a
flag saying so; ops whose semantics depend on the axis order (Pad, Mean,
Reshape, Softmax, MatMul, broadcasting against constants, ...) translate
their axes or convert to TF's order first. Outputs and tap points give 4-D
values as N x C x H x W; everything else in TF's own shape.

Filters are stored converted to PyTorch's layouts (Conv2D: OIHW; depthwise:
(C*M) x 1 x H x W; channels-last memory), so ``state_dict`` keys are the TF
node names (prefixed ``params.``, see :func:`param_key`) with those shapes. Every float constant is an
``nn.Parameter``; integer constants (pad widths, axes, shapes) are static.

Speed: a convolution followed by a per-channel Mul, an Add and a clip chain
(Keras' batch norm and ReLU6) runs as one convolution with a scaled filter,
a bias and a clamp, unless one of those nodes is requested or tapped (then
the chain stops there); ``fuse=False`` interprets node by node. Both agree
with TensorFlow.js to ~1e-6 relative (benchmarks/tfjs_reference.py).

Modules: :mod:`.model_file` (parsing ``model.json``), :mod:`.values` (the value type, layout and
padding rules), :mod:`.ops` (one builder per TF op), :mod:`.program` (order, folding, freeing) and
:mod:`.graph` (the module).
"""

from .graph import TapPoint, TFJSGraph, load_graph_model
from .model_file import GraphModelFile, GraphNode, node_attr, ops_used, read_graph_model
from .values import param_key, tf_same_padding

__all__ = ["GraphModelFile", "GraphNode", "TFJSGraph", "TapPoint", "load_graph_model",
           "node_attr", "ops_used", "param_key", "read_graph_model", "tf_same_padding"]
