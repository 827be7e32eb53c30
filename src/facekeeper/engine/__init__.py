"""Pure computation on faces: pixels in, descriptors out. Nothing here stores or logs anything."""

from facekeeper.engine.core import Described, Engine, Face
from facekeeper.engine.detect import Detection

__all__ = ["Described", "Detection", "Engine", "Face"]
