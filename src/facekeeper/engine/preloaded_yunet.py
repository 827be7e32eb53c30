"""Imported by the worker pools' fork server when the engine detects with YuNet (the default): what every
worker needs for every photo, loaded once before any worker forks.

That is dlib's 5-point model, the ONNX embedder built from its ``.dat``, and the imports of OpenCV and Pillow.
dlib's HOG detector (0.5 s to load) is not needed at all, and the 68-point model (1.25 s, 100 MB) only for a
face YuNet does not find looking ahead (1 in 100 London photos, 1 in 16 of faces94): loading them here
would keep both cores waiting for one, so a worker loads the 68-point model itself when a face first needs it.
"""

import cv2  # noqa: F401  (imported here once rather than in every worker)

from facekeeper.engine import dlib_onnx, image, models  # noqa: F401  (image: Pillow)

models.shape_predictor(models.SHAPE_5)
dlib_onnx.prebuild()
