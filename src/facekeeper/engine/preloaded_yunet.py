"""Imported by the worker pools' fork server when the engine detects with YuNet (the default): what every
worker needs for every photo, loaded once before any worker forks.

That is dlib's 5-point model, the ONNX embedder built from its ``.dat``, YuNet's graph with its weights expanded
to float32, and the imports of OpenCV and Pillow.
dlib's HOG detector (0.5 s to load) is not needed at all, and the 68-point model (0.6 s, 100 MB) only for the
2-5% of faces the yaw screen cannot clear: one worker of the pool loads it as it starts and the others hand it
those faces (``pipeline.WorkerPool``), so loading it here would only hold every worker back.
"""

import cv2  # noqa: F401  (imported here once rather than in every worker)

from facekeeper.engine import dlib_onnx, image, models, yunet  # noqa: F401  (image: Pillow)

models.shape_predictor(models.SHAPE_5)
dlib_onnx.prebuild()
yunet.graph()
