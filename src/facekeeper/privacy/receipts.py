"""Signed statements a deployment gives out: erasure receipts and audit exports.

The signing key is Ed25519, derived from the deployment key (HKDF label ``receipts/ed25519``), so it needs
no storage of its own and dies with the deployment key. Anyone holding the public key (printed by
``facekeeper receipt public-key``) can check a receipt offline; nobody without the deployment key can
make one.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from facekeeper.errors import ReceiptInvalid
from facekeeper.gallery.keys import DeploymentKey

ERASURE_RECEIPT = "facekeeper.erasure-receipt/v1"
AUDIT_EXPORT = "facekeeper.audit-export/v1"


def canonical(doc: dict[str, Any]) -> bytes:
    """The exact bytes that are signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Signer:
    def __init__(self, key: DeploymentKey) -> None:
        self._private = Ed25519PrivateKey.from_private_bytes(key.derive("receipts/ed25519"))
        raw = self._private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_key = _b64(raw)

    def __repr__(self) -> str:
        return f"Signer(public_key={self.public_key})"

    def sign(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` with the public key and a signature over everything else added."""
        body = {k: v for k, v in doc.items() if k != "signature"}
        body["public_key"] = self.public_key
        return {**body, "signature": _b64(self._private.sign(canonical(body)))}


def verify(doc: dict[str, Any], public_key: str) -> dict[str, Any]:
    """Check ``doc``'s signature against ``public_key`` (base64); returns ``doc`` or raises ``ReceiptInvalid``.

    The key inside the document is not trusted on its own: it must be the one the caller expects, or
    anyone could sign a receipt with a key of their own.
    """
    if not isinstance(doc, dict) or "signature" not in doc:
        raise ReceiptInvalid("not a signed facekeeper document")
    if doc.get("public_key") != public_key:
        raise ReceiptInvalid("signed with another key: this receipt is not from this deployment")
    try:
        pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        signature = base64.b64decode(str(doc["signature"]), validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptInvalid("the public key or the signature is not valid base64 Ed25519") from None
    body = {k: v for k, v in doc.items() if k != "signature"}
    try:
        pub.verify(signature, canonical(body))
    except InvalidSignature:
        raise ReceiptInvalid("the signature does not match: the document was altered") from None
    return doc
