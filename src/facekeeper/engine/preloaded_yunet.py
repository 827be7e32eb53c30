"""Imported by the worker pools' fork server when the engine detects with YuNet (the default): what the workers
need, loaded once before any worker forks.

That is dlib's 5-point model, the ONNX embedder built from its ``.dat``, the 68-point model and the imports of
OpenCV and Pillow. dlib's HOG detector (0.5 s to load) is not needed at all. The 68-point model measures the
jaw line of the few faces the yaw screen cannot clear (2% of London's photos, 5% of faces94's): loaded by the
first worker that met one, it cost that worker 0.6 s in the middle of a run, and every worker loads it on a set
of any size, so London's 204 photos took 2.65-3.04 s; loaded here once, while the parent records consent, they
take 2.59-2.71 s (alternating runs, quiet machine).
"""

import cv2  # noqa: F401  (imported here once rather than in every worker)

from facekeeper.engine import dlib_onnx, image, models  # noqa: F401  (image: Pillow)

models.shape_predictor(models.SHAPE_5)
models.shape_predictor(models.SHAPE_68)
dlib_onnx.prebuild()
