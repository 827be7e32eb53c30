"""The photo scan finds a copy of an enrolled photo in every form a careless or hostile change could write."""

from __future__ import annotations

import base64
import gzip
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facekeeper.engine import Engine
from facekeeper.privacy import scan
from tests.conftest import london

PHOTO = london("001")


def _rgb(engine: Engine) -> np.ndarray:
    return engine.decode(PHOTO)


def _chip(engine: Engine) -> np.ndarray:
    return engine.single_face(_rgb(engine), enrollment=True).chip


# what a change might write: (form the scan must name, encoding, bytes that land in a file)
COPIES: dict[str, tuple[str, str, Callable[[Engine], bytes]]] = {
    "chip": ("chip", "raw", lambda e: _chip(e).tobytes()),
    "grayscale chip": ("grayscale chip", "raw", lambda e: np.asarray(Image.fromarray(_chip(e)).convert("L")).tobytes()),
    "grayscale photo": ("grayscale", "raw", lambda e: np.asarray(Image.fromarray(_rgb(e)).convert("L")).tobytes()),
    "base64 file": ("file bytes", "base64", lambda e: base64.b64encode(PHOTO.read_bytes())),
    "base64 url-safe in json": ("file bytes", "base64",
                                lambda e: b'{"photo":"' + base64.urlsafe_b64encode(PHOTO.read_bytes()) + b'"}'),
    "base64 pixels": ("pixels", "base64", lambda e: base64.b64encode(_rgb(e).tobytes())),
    "zlib pixels": ("pixels", "zlib", lambda e: zlib.compress(_rgb(e).tobytes())),
    "gzip chip": ("chip", "zlib", lambda e: gzip.compress(_chip(e).tobytes())),
}


@pytest.mark.parametrize("name", sorted(COPIES))
def test_the_scan_finds_a_copy_of_an_enrolled_photo(engine: Engine, tmp_path: Path, name: str) -> None:
    form, encoding, make = COPIES[name]
    data = tmp_path / "data"
    data.mkdir()
    (data / "facekeeper.toml").write_text("[privacy]\nguardian_age = 14\n")
    assert scan.photo_copies([data], [PHOTO], engine) == []
    # inside other bytes, as a database page or a log line would hold it
    (data / "cache.bin").write_bytes(np.random.default_rng(0).bytes(5000) + make(engine) + b"\n" * 100)
    found = scan.photo_copies([data], [PHOTO], engine)
    assert (form, encoding) in {(c.form, c.encoding) for c in found}, found
    assert {c.file for c in found} == {str(data / "cache.bin")}


def test_another_persons_photo_is_not_taken_for_the_enrolled_one(engine: Engine, tmp_path: Path) -> None:
    other = london("002")
    (tmp_path / "other.jpg").write_bytes(other.read_bytes())
    (tmp_path / "other.raw").write_bytes(engine.single_face(engine.decode(other), enrollment=True).chip.tobytes())
    assert scan.photo_copies([tmp_path], [PHOTO], engine) == []
