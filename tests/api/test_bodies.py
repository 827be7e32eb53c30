"""Request bodies: multipart parsed in memory, strict base64, errors that name the field not the data."""

from __future__ import annotations

import base64

import pytest

from facekeeper.api.bodies import b64decode, parse_multipart
from facekeeper.errors import BadImage, InvalidInput

BOUNDARY = "xXx"


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def test_multipart_files_and_fields_are_kept_in_memory_byte_exact() -> None:
    photo = bytes(range(256)) * 5000 + b"\r\n--not-a-boundary\r\n"
    form = parse_multipart(multipart(("image", "a.jpg", photo), ("image", "b.jpg", b"2"), ("subject_id", None, b"e-1")),
                           f"multipart/form-data; boundary={BOUNDARY}")
    assert form.files["image"] == [photo, b"2"]
    assert form.fields == {"subject_id": ["e-1"]}


def test_malformed_multipart_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        parse_multipart(b"garbage", f"multipart/form-data; boundary={BOUNDARY}")
    with pytest.raises(InvalidInput):
        parse_multipart(b"", "multipart/form-data")


def test_base64_is_strict_and_accepts_urlsafe_and_data_urls() -> None:
    data = bytes(range(200))
    assert b64decode(base64.b64encode(data).decode(), "image") == data
    assert b64decode(base64.urlsafe_b64encode(data).decode().rstrip("="), "image") == data
    assert b64decode("data:image/jpeg;base64," + base64.b64encode(data).decode(), "image") == data
    for bad in ("not base64!", "QUJD$", 12):
        with pytest.raises(BadImage) as info:
            b64decode(bad, "images[0]")
        assert info.value.message.startswith("images[0]:") and "$" not in info.value.message
