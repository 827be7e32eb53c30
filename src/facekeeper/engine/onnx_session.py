"""The one way facekeeper opens an onnxruntime session: on the CPU, on the threads the engine was given.

Each worker process runs one thread of its own (``[engine] onnx_threads``, default 1: the workers already use
every core), one op at a time, with every graph optimisation (YuNet's network: 0.7 ms at 160x128 with them,
1.9 ms with the basic ones only).
"""

from __future__ import annotations

import onnxruntime as ort


def cpu_session(model: bytes, threads: int, *, spin: bool = True) -> ort.InferenceSession:
    """A session on ``model`` (serialized ONNX). ``spin=False``: idle intra-op threads sleep instead of spinning,
    for models run on several threads on a busy box (spinning tripled MTCNN's time on 2 threads)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
