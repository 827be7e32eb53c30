"""Imported by the worker pools' fork server: dlib's detector and shape predictors loaded, and the ONNX
embedder built, once, before any worker forks. Every worker starts with them (shared, copy-on-write)
rather than reading ~130 MB and rebuilding the network itself; it only opens its onnxruntime session."""

from facekeeper.engine import dlib_onnx, models

models.preload()
dlib_onnx.prebuild()
