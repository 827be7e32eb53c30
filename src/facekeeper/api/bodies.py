"""Request bodies: images as a multipart upload or as base64 in JSON, or a template (edge mode).

Both forms are parsed in memory. Starlette's own form parser spools any upload over 1 MB to a temporary
file, which would put a photo on disk, so multipart is parsed here with ``python_multipart`` into bytes.
The body was already capped by the size limit (``app.Guard``) before it got here. A JSON body is then
bounded before pydantic sees it (values, nesting, keys, string sizes: ``Bounds``), because a 12 MB body of
a million keys costs seconds to parse and, unbounded, a million-entry error. Errors name the field, never
its content, and list at most ``MAX_PROBLEMS`` problems.
"""

from __future__ import annotations

import binascii
import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from facekeeper.errors import BadImage, InvalidInput, UnsupportedMediaType

M = TypeVar("M", bound=BaseModel)
JSON = "application/json"
MULTIPART = "multipart/form-data"
MAX_PARTS = 32
MAX_PROBLEMS = 5  # validation problems listed in an error: enough to fix a request, never a flood
MAX_NAME_CHARS = 64  # of a field name quoted in an error (a key is caller-chosen text)


@dataclass(frozen=True)
class Bounds:
    """What a JSON body may hold. ``values`` counts every value (objects, arrays and scalars, keys not
    included); strings in image fields may be as long as the body, the others at most ``string_chars``."""

    values: int = 10_000
    depth: int = 16
    keys: int = 100
    items: int = 10_000
    key_chars: int = 100
    string_chars: int = 64 * 1024


DEFAULT_BOUNDS = Bounds()


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[bytes]] = field(default_factory=dict)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def parse_multipart(body: bytes, content_type: str) -> Form:
    """Every part of a ``multipart/form-data`` body: file parts as bytes, the others as text."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInput("the multipart body has no boundary")
    form = Form()
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "data": bytearray(), "parts": 0}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_begin() -> None:
        state["headers"], state["data"] = {}, bytearray()
        state["parts"] += 1
        if state["parts"] > MAX_PARTS:
            raise InvalidInput(f"at most {MAX_PARTS} parts in one request")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"] += data[start:end]

    def on_part_end() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise InvalidInput("a multipart part has no name")
        if b"filename" in disposition:
            form.files.setdefault(name, []).append(bytes(state["data"]))
        else:
            try:
                form.fields.setdefault(name, []).append(bytes(state["data"]).decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidInput(f"form field {name!r} is not UTF-8 text") from None

    parser = MultipartParser(boundary, {"on_header_field": on_header_field, "on_header_value": on_header_value,
                                        "on_header_end": on_header_end, "on_part_begin": on_part_begin,
                                        "on_part_data": on_part_data, "on_part_end": on_part_end})
    try:
        parser.write(body)
        parser.finalize()
    except (InvalidInput, BadImage):
        raise
    except Exception:
        raise InvalidInput("the multipart body is malformed") from None
    return form


def b64decode(text: object, name: str) -> bytes:
    """Strict base64 (standard or URL-safe alphabet): anything else is a ``BadImage`` naming the field."""
    if not isinstance(text, str):
        raise BadImage(f"{name}: expected a base64 string")
    cleaned = "".join(text.split())
    if cleaned.startswith("data:") and "," in cleaned:
        cleaned = cleaned.split(",", 1)[1]
    cleaned = cleaned.replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return binascii.a2b_base64(cleaned.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise BadImage(f"{name}: not valid base64") from None


async def parse(request: Request, model: type[M], images: tuple[str, ...] = ()) -> M:
    """Read the body as ``model``; ``images`` names its fields that hold image bytes (lists or single)."""
    kind = media_type(request)
    body = await request.body()
    raw: dict[str, Any]
    if kind == JSON:
        raw = load_json(body, getattr(model, "json_bounds", DEFAULT_BOUNDS), images)
        for name in images:
            value = raw.get(name)
            if isinstance(value, list):
                raw[name] = [b64decode(v, f"{name}[{i}]") for i, v in enumerate(value)]
            elif value is not None:
                raw[name] = b64decode(value, name)
    elif kind == MULTIPART:
        form = parse_multipart(body, request.headers.get("content-type", ""))
        raw = {}
        for name, values in form.fields.items():
            if any(len(v) > DEFAULT_BOUNDS.string_chars for v in values):
                raise InvalidInput(f"form field {_name(name)!r} is over {DEFAULT_BOUNDS.string_chars} characters")
            raw[name] = values if _is_list(model, name) else values[-1]
        for name, files in form.files.items():
            if name not in images:
                raise InvalidInput(f"field {name!r} does not take a file")
            raw[name] = files if _is_list(model, name) else files[-1]
    else:
        raise UnsupportedMediaType(f"send {JSON} or {MULTIPART}", accepted=[JSON, MULTIPART])
    return validate(model, raw)


async def parse_json(request: Request, model: type[M]) -> M:
    """A JSON-only body (no images)."""
    if media_type(request) != JSON:
        raise UnsupportedMediaType(f"send {JSON}", accepted=[JSON])
    return await parse(request, model)


def load_json(body: bytes, bounds: Bounds = DEFAULT_BOUNDS, images: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object within ``bounds``; anything else is an ``InvalidInput`` that quotes no content.

    Every value after the first in an array or object follows a comma, so counting commas (in C, a few
    ms) refuses a body of too many values before the parser spends seconds building it.
    """
    if body.count(b",") >= bounds.values:
        raise InvalidInput(f"the JSON body holds over {bounds.values} values")
    try:
        loaded = json.loads(body or b"{}", parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise InvalidInput(f"the JSON body is nested over {bounds.depth} levels deep") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(loaded, dict):
        raise InvalidInput("the JSON body must be an object")
    _check(loaded, bounds, images)
    return loaded


def _check(root: dict[str, Any], bounds: Bounds, images: tuple[str, ...]) -> None:
    """Walk the parsed body once (no recursion: a stack of (value, depth, holds image bytes))."""
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    seen = 0
    while stack:
        value, depth, image = stack.pop()
        seen += 1
        if seen > bounds.values:
            raise InvalidInput(f"the JSON body holds over {bounds.values} values")
        if depth > bounds.depth:
            raise InvalidInput(f"the JSON body is nested over {bounds.depth} levels deep")
        if isinstance(value, dict):
            if len(value) > bounds.keys:
                raise InvalidInput(f"a JSON object in the body has over {bounds.keys} members")
            for key, item in value.items():
                if len(key) > bounds.key_chars:
                    raise InvalidInput(f"a JSON member name is over {bounds.key_chars} characters")
                stack.append((item, depth + 1, value is root and key in images))
        elif isinstance(value, list):
            if len(value) > bounds.items:
                raise InvalidInput(f"a JSON array in the body has over {bounds.items} items")
            stack.extend((item, depth + 1, image) for item in value)
        elif isinstance(value, str) and not image and len(value) > bounds.string_chars:
            raise InvalidInput(f"a JSON string in the body is over {bounds.string_chars} characters")


def validate(model: type[M], raw: dict[str, Any]) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput("the request does not have the expected fields: see 'fields'",
                           **problems_of(exc.errors())) from None


def problems_of(errors: list[Any]) -> dict[str, Any]:
    """The first ``MAX_PROBLEMS`` validation problems as ``fields`` (field path and pydantic's message, never
    the value), and how many there were when that is more."""
    fields = [{"field": ".".join(_name(str(p)) for p in e.get("loc", ()) if p != "body"),
               "problem": str(e.get("msg", ""))[:200]} for e in errors[:MAX_PROBLEMS]]
    more = {"problems": len(errors)} if len(errors) > MAX_PROBLEMS else {}
    return {"fields": fields, **more}


def _name(text: str) -> str:
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS] + "..."


def _no_constant(name: str) -> None:
    """NaN and Infinity are not JSON (Python's parser accepts them): refused."""
    raise ValueError(name)


def _finite(text: str) -> float:
    """A number too large for a float (1e999) would arrive as infinity: refused like ``Infinity``."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _is_list(model: type[BaseModel], name: str) -> bool:
    info = model.model_fields.get(name)
    return info is not None and "list" in str(info.annotation)


# -- OpenAPI ---------------------------------------------------------------------------------------
def openapi_body(model: type[BaseModel], images: tuple[str, ...] = (), json_only: tuple[str, ...] = (),
                 *, multipart: bool = True) -> dict[str, Any]:
    """``openapi_extra`` documenting both body forms: multipart files, or base64 strings in JSON."""
    schema = model.model_json_schema()
    as_json = copy.deepcopy(schema)
    for name in images:
        b64 = {"type": "string", "contentEncoding": "base64", "description": "the image file, base64-encoded"}
        _replace_binary(as_json["properties"][name], b64)
    content: dict[str, Any] = {JSON: {"schema": as_json}}
    if multipart:
        form = copy.deepcopy(schema)
        for name in json_only:
            form["properties"].pop(name, None)
        content[MULTIPART] = {"schema": form}
    return {"requestBody": {"required": True, "content": content}}


def _replace_binary(node: Any, replacement: dict[str, Any]) -> None:
    if isinstance(node, dict):
        if node.get("format") == "binary":
            node.pop("format")
            node.update(replacement)
        for value in node.values():
            _replace_binary(value, replacement)
    elif isinstance(node, list):
        for value in node:
            _replace_binary(value, replacement)
