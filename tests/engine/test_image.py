"""Bad input gets a clear error before any pixel is used."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facekeeper.engine import image
from facekeeper.errors import BadImage, ImageTooLarge
from tests.conftest import DATA, london


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming huge dimensions, with a tiny compressed body: a decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\0" + b"\0" * (width * 3)
    body = zlib.compress(row * 16, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_jpeg_decodes_to_rgb8() -> None:
    rgb = image.load(london("001"))
    assert rgb.shape == (600, 600, 3) and rgb.dtype == np.uint8


def test_not_an_image_is_bad_image() -> None:
    with pytest.raises(BadImage, match="not an image format"):
        image.decode(b"%PDF-1.4 definitely not a photo" * 10)


def test_zero_byte_file_is_bad_image(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(BadImage, match="empty"):
        image.load(empty)


def test_truncated_jpeg_is_rejected_not_padded() -> None:
    data = london("001").read_bytes()
    with pytest.raises(BadImage, match=r"truncated|corrupt"):
        image.decode(data[: len(data) // 2])


def test_png_bomb_is_refused_before_decoding() -> None:
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLarge, match="20000x20000"):
        image.decode(bomb)


def test_byte_limit_is_checked_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + b"\0" * 2048)
    with pytest.raises(ImageTooLarge):
        image.load(big, max_bytes=1024)


def test_missing_file_is_bad_image(tmp_path: Path) -> None:
    with pytest.raises(BadImage, match="cannot read"):
        image.load(tmp_path / "nope.jpg")


def test_error_messages_never_echo_the_bytes() -> None:
    secret = b"\x89PNG\r\n\x1a\nSECRETPIXELS" * 3
    with pytest.raises(BadImage) as info:
        image.decode(secret)
    assert "SECRETPIXELS" not in str(info.value)


def test_alpha_png_is_composited_to_rgb() -> None:
    rgb = image.load(DATA / "edge" / "32bit.png")
    assert rgb.ndim == 3 and rgb.shape[2] == 3


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, "PNG")
    rgb = image.decode(buf.getvalue())
    assert rgb.shape == (64, 64, 3)
    assert rgb.max() == 255 and rgb.min() == 0
    assert len(np.unique(rgb[..., 0])) > 200  # a ramp, not a saturated white image


def test_exif_orientation_is_applied() -> None:
    src = Image.open(london("001")).convert("RGB")
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    src.crop((0, 0, 600, 400)).save(buf, "JPEG", exif=exif.tobytes())
    rgb = image.decode(buf.getvalue())
    assert rgb.shape[:2] == (600, 400)


def test_webp_decodes() -> None:
    buf = io.BytesIO()
    Image.open(london("002")).save(buf, "WEBP")
    assert image.decode(buf.getvalue()).shape == (600, 600, 3)


def encoded(kind: str, frames: int = 1, size: tuple[int, int] = (64, 64)) -> bytes:
    """``frames`` distinct pictures saved as one ``kind`` file (animated when more than one)."""
    pictures = [Image.new("RGB", size, (80 * i % 256, 255 - 80 * i % 256, 40)) for i in range(frames)]
    buf = io.BytesIO()
    extra = {"save_all": True, "append_images": pictures[1:], "duration": 100} if frames > 1 else {}
    pictures[0].save(buf, kind, **extra)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["TIFF", "BMP", "GIF", "PPM", "ICO"])
def test_formats_other_than_jpeg_png_webp_are_refused_with_the_accepted_list(kind: str) -> None:
    with pytest.raises(BadImage) as info:
        image.decode(encoded(kind))
    assert "JPEG, PNG or WebP" in info.value.message
    assert info.value.details["accepted"] == ["JPEG", "PNG", "WEBP"]


def test_a_300_frame_gif_is_refused_without_reading_its_frames() -> None:
    with pytest.raises(BadImage, match="JPEG, PNG or WebP"):
        image.decode(encoded("GIF", frames=300))


@pytest.mark.parametrize("kind", ["PNG", "WEBP"])
def test_animated_png_and_webp_are_refused_not_cut_to_their_first_frame(kind: str) -> None:
    still = image.decode(encoded(kind))
    assert still.shape == (64, 64, 3)
    with pytest.raises(BadImage, match="animated") as info:
        image.decode(encoded(kind, frames=3))
    assert info.value.details["accepted"] == ["JPEG", "PNG", "WEBP"]


def test_a_multi_picture_jpeg_from_a_phone_is_read_as_its_primary_picture() -> None:
    rgb = image.decode(encoded("MPO", frames=2))
    assert rgb.shape == (64, 64, 3) and rgb[0, 0, 1] > 240  # the first picture (green), not the second


def test_the_suffixes_folder_enrollment_picks_are_the_decodable_ones() -> None:
    from facekeeper import evaluation, service

    assert service.IMAGE_SUFFIXES == evaluation.IMAGE_SUFFIXES == image.SUFFIXES


@pytest.mark.parametrize("size", [(1, 30000), (30000, 1), (8, 64), (40, 1000)])
def test_a_strip_or_a_speck_cannot_hold_a_face_and_says_so(size: tuple[int, int]) -> None:
    with pytest.raises(BadImage, match="cannot hold a face") as info:
        image.decode(encoded("PNG", size=size))
    assert type(info.value) is BadImage and (info.value.details["width"], info.value.details["height"]) == size


def test_the_smallest_and_narrowest_accepted_shapes_decode() -> None:
    assert image.decode(encoded("PNG", size=(16, 320))).shape == (320, 16, 3)
