"""Ed25519 signatures as facekeeper uses them: the verifying half, shared by bundles and licenses.

Every signature covers a domain label followed by the signed bytes, so a signature made for a bundle
manifest can never be replayed as a license (or the reverse), even though one vendor key signs both.
Signing lives in ``facekeeper.publisher``: nothing on the customer side holds or needs a private key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

BUNDLE_DOMAIN = b"facekeeper bundle manifest v1\x00"
LICENSE_DOMAIN = b"facekeeper license v1\x00"


class SignatureError(ValueError):
    """A key or signature that cannot be read; callers turn it into a ``BundleError``/``LicenseError``."""


def key_id(key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key (first 16 hex of SHA-256 of its raw bytes), for messages."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError("the public key is not an Ed25519 key")
    return key


def load_public_key_file(path: Path) -> Ed25519PublicKey:
    try:
        return load_public_key(path.read_bytes())
    except OSError as exc:
        raise SignatureError(f"cannot read {path} ({exc.strerror})") from None


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def verify(key: Ed25519PublicKey, domain: bytes, data: bytes, signature_b64: str) -> bool:
    """True when ``signature_b64`` is ``key``'s signature of ``domain + data``."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(signature, domain + data)
    except InvalidSignature:
        return False
    return True


def canonical_json(value: Any) -> bytes:
    """The one byte encoding of a JSON value that is signed: sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def strict_json(data: bytes) -> Any:
    """Parse JSON, refusing duplicate keys: two readers must never see two different documents."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise SignatureError(f"duplicate key {key!r}")
            out[key] = value
        return out

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError(f"not valid JSON ({exc})") from None
