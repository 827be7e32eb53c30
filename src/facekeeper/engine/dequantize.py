"""Quantised ONNX weights expanded to float32 once, at load, instead of on every run.

OpenCV Zoo ships YuNet with int8 weights that ``DequantizeLinear`` nodes expand (per block of input channels)
before each use. OpenCV's dnn expands such constants once when it reads the file; onnxruntime refuses the
per-tensor nodes that carry a ``block_size`` and would expand the others on every run. Expanding them here, by the
operator's own formula ``(q - zero_point) * scale`` in float32, gives the weights OpenCV computes, bit for bit
(tests/engine/test_yunet_runtime.py runs both graphs in OpenCV), so onnxruntime runs the file as OpenCV does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

# The nodes expanded when every input is a constant: the weights' dequantisation and the reshape that follows it.
FOLDED = ("DequantizeLinear", "Reshape")


def expand_constant_dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with each ``DequantizeLinear`` (and ``Reshape``) of constants replaced by its float32 result.

    Initializers nothing reads any more are dropped. Every other node is kept as it is.
    """
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type in FOLDED and all(name in values for name in node.input if name):
            values[node.output[0]] = _evaluate(node, [values[name] if name else None for name in node.input])
        else:
            kept.append(node)
    read = {name for node in kept for name in node.input} | {out.name for out in model.graph.output}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(kept)
    del out.graph.initializer[:]
    out.graph.initializer.extend(numpy_helper.from_array(np.ascontiguousarray(values[name]), name)
                                 for name in values if name in read)
    return out


def _evaluate(node: onnx.NodeProto, inputs: list[np.ndarray | None]) -> np.ndarray:
    if node.op_type == "Reshape":
        data, shape = inputs[0], inputs[1]
        assert data is not None and shape is not None
        target = [int(d) for d in shape]
        if not _attribute(node, "allowzero", 0):  # a 0 keeps the input's size on that axis
            target = [data.shape[i] if d == 0 else d for i, d in enumerate(target)]
        return data.reshape(target)
    return dequantize(inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else None,
                      axis=_attribute(node, "axis", 1), block_size=_attribute(node, "block_size", 0))


def dequantize(q: np.ndarray | None, scale: np.ndarray | None, zero_point: np.ndarray | None, *, axis: int = 1,
               block_size: int = 0) -> np.ndarray:
    """ONNX ``DequantizeLinear``: ``(q - zero_point) * scale`` in float32, per tensor, per axis or per block."""
    assert q is not None and scale is not None
    scale = np.asarray(scale, np.float32)
    zero = np.zeros_like(scale, dtype=np.int32) if zero_point is None else np.asarray(zero_point, np.int32)
    axis = axis % max(q.ndim, 1)
    if scale.size > 1:  # else one scale for the tensor (a per-tensor node may still carry a block size)
        if block_size:  # one scale per block of ``block_size`` along the axis: repeat it over its block
            scale = np.repeat(scale, block_size, axis=axis).take(range(q.shape[axis]), axis=axis)
            zero = np.repeat(zero, block_size, axis=axis).take(range(q.shape[axis]), axis=axis)
        else:  # one scale per index of the axis
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (q.astype(np.int32) - zero).astype(np.float32) * scale


def _attribute(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default
