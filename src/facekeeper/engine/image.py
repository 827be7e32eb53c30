"""Decoding untrusted images into RGB pixels, safely.

Only still photos in ``FORMATS`` are read: Pillow is asked to try just those parsers, so a TIFF, BMP,
GIF or any other format never reaches its (larger, rarely exercised) decoder, and an animated PNG or
WebP is refused rather than silently cut to its first frame. A JPEG with a Multi-Picture block (MPO: many
phone cameras add a depth or preview picture) is a JPEG, and its primary picture is the photo.

Limits are checked *before* pixels are decoded (a 20000x20000 PNG is a few kB on disk and 1.2 GB in
memory; a 1x30000 strip holds no face and breaks resizing), truncated files are errors rather than grey
bottoms, and EXIF orientation is applied so a phone photo taken sideways is upright. Messages never echo
the bytes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facekeeper.errors import BadImage, ImageTooLarge

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 16  # pixels: no detector finds a face in less
MAX_ASPECT = 20  # longer side / shorter side: a photo of a face is never a strip
FORMATS = ("JPEG", "PNG", "WEBP")  # what Pillow may parse; MPO is what its JPEG parser calls a multi-picture JPEG
SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
ACCEPTED = "JPEG, PNG or WebP, one still picture"

# Pillow's own bomb guard is global and its message vague; ``decode`` checks the header's size against
# the deployment's limit right after ``Image.open`` (which reads only the header), before any pixel.
Image.MAX_IMAGE_PIXELS = None


def read_bytes(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a file, refusing it before reading when it is larger than ``max_bytes``."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise ImageTooLarge(f"{p.name}: {size} bytes is over the limit of {max_bytes}", bytes=size)
        with p.open("rb") as fh:
            return fh.read(max_bytes + 1)
    except ImageTooLarge:
        raise
    except OSError as exc:
        raise BadImage(f"{p.name}: cannot read file ({exc.strerror or type(exc).__name__})") from None


def decode(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str = "image",
) -> np.ndarray:
    """Decode image bytes to an upright (H, W, 3) uint8 RGB array.

    16-bit images are scaled to 8 bits, alpha is composited on white, palette and grey images are
    expanded. Raises ``ImageTooLarge`` over the byte or pixel limits and ``BadImage`` for anything that
    is not one complete, readable still picture in ``FORMATS`` with sides that could hold a face.
    """
    if len(data) == 0:
        raise BadImage(f"{name}: the file is empty")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{name}: {len(data)} bytes is over the limit of {max_bytes}", bytes=len(data))
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
        width, height = img.size
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"{name}: {width}x{height} pixels is over the limit of {max_pixels}",
                width=width, height=height,
            )
        if min(width, height) < MIN_SIDE or max(width, height) > MAX_ASPECT * min(width, height):
            raise BadImage(f"{name}: {width}x{height} pixels cannot hold a face: each side needs at least"
                           f" {MIN_SIDE} pixels and the longer at most {MAX_ASPECT} times the shorter",
                           width=width, height=height)
        if img.format != "MPO" and getattr(img, "is_animated", False):
            raise BadImage(f"{name}: an animated image is not a photo: send {ACCEPTED}", accepted=list(FORMATS))
        img.load()
        ImageOps.exif_transpose(img, in_place=True)  # no copy of an upright photo (most are)
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage(f"{name}: not an image format facekeeper reads: send {ACCEPTED}",
                       accepted=list(FORMATS)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = "truncated or corrupt" if "truncated" in str(exc).lower() else "corrupt"
        raise BadImage(f"{name}: the image is {reason}") from None
    return to_rgb8(img)


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Normalise any Pillow mode to 8-bit RGB without losing the picture."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([grey] * 3, axis=-1))
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        grey = np.clip(arr, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([grey] * 3, axis=-1))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":  # an RGB photo (most are) is read out once, not copied first
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def load(
    source: str | Path | bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str = "image",
) -> np.ndarray:
    """Decode from a path or from bytes (see ``decode``); ``name`` labels bytes in error messages."""
    if isinstance(source, bytes | bytearray | memoryview):
        return decode(bytes(source), max_bytes=max_bytes, max_pixels=max_pixels, name=name)
    data = read_bytes(source, max_bytes)
    return decode(data, max_bytes=max_bytes, max_pixels=max_pixels, name=Path(source).name)
