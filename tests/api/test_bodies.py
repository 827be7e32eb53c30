"""Request bodies: multipart parsed in memory, strict base64, errors that name the field not the data."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from facekeeper.api import bodies
from facekeeper.api.bodies import b64decode, parse_multipart
from facekeeper.api.schemas import ConsentIn, CredentialIn, DetectIn, ReceiptCheckIn
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


def test_a_body_of_a_million_members_is_refused_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    body = json.dumps({f"k{i}": 1 for i in range(1_000_000)}).encode()
    monkeypatch.setattr(bodies.json, "loads", lambda *a, **k: pytest.fail("parsed a body over the bounds"))
    with pytest.raises(InvalidInput, match="over 10000 values") as info:
        bodies.load_json(body)
    assert len(str(info.value.to_dict())) < 200


@pytest.mark.parametrize(("body", "rule"), [
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),  # the parser's own recursion limit
    (b'{"a": ' + b"[" * 20 + b"]" * 20 + b"}", "nested"),
    (json.dumps({f"k{i}": 1 for i in range(101)}).encode(), "members"),
    (json.dumps({"a": [1] * 10_001}).encode(), "over 10000"),
    (json.dumps({"k" * 101: 1}).encode(), "member name"),
    (json.dumps({"subject_id": "x" * 70_000}).encode(), "string"),
    (json.dumps({"document": {"a": {"b": ["x" * 70_000]}}}).encode(), "string"),
    (b'{"expires_at": 1e999}', "not valid JSON"),
    (b'{"expires_at": NaN}', "not valid JSON"),
    (b'["not", "an object"]', "must be an object"),
])
def test_json_bodies_are_bounded_and_errors_quote_no_content(body: bytes, rule: str) -> None:
    with pytest.raises(InvalidInput, match=rule) as info:
        bodies.load_json(body)
    assert "xxxx" not in info.value.message and "kkkk" not in info.value.message


def test_image_fields_may_hold_long_strings_and_a_model_may_allow_bigger_documents() -> None:
    photo = base64.b64encode(bytes(range(256)) * 1000).decode()
    assert bodies.load_json(json.dumps({"image": photo, "images": [photo]}).encode(), images=("image", "images"))
    with pytest.raises(InvalidInput, match="string"):
        bodies.load_json(json.dumps({"reference": photo}).encode(), images=("image",))
    export = json.dumps({"document": {"entries": [{"seq": i, "detail": {"n": 1}} for i in range(20_000)]}}).encode()
    with pytest.raises(InvalidInput):
        bodies.load_json(export)
    assert bodies.load_json(export, ReceiptCheckIn.json_bounds)["document"]["entries"][-1]["seq"] == 19_999


def test_validation_errors_list_a_few_problems_and_never_the_values() -> None:
    raw = {f"secret-{i}": "SECRETVALUE" for i in range(90)} | {"subject_id": ["SECRETVALUE"]}
    with pytest.raises(InvalidInput) as info:
        bodies.validate(ConsentIn, raw)
    details = info.value.details
    assert len(details["fields"]) == bodies.MAX_PROBLEMS and details["problems"] > 90
    assert "SECRETVALUE" not in json.dumps(info.value.to_dict())
    assert all(len(f["field"]) <= bodies.MAX_NAME_CHARS + 3 for f in details["fields"])


@pytest.mark.parametrize(("model", "raw", "field"), [
    (DetectIn, {"image": b"x", "landmarks": 7}, "landmarks"),
    (ConsentIn, {"subject_id": "a", "method": "paper", "evidence": "e", "expires_at": 253_402_300_800.0 + 3600},
     "expires_at"),  # in year 10000
    (ConsentIn, {"subject_id": "a", "method": "paper", "evidence": "e", "expires_at": time.time() - 60}, "expires_at"),
    (CredentialIn, {"subject_id": "a", "expires_at": 1e12}, "expires_at"),
])
def test_out_of_range_inputs_are_invalid_input_naming_the_field(model: type[Any], raw: dict[str, Any],
                                                                field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        bodies.validate(model, raw)
    assert [f["field"] for f in info.value.details["fields"]] == [field]
