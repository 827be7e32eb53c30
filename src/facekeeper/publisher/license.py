"""Issue offline licenses: signed terms bound to one customer deployment.

The customer sends its deployment id (``facekeeper license show``); the vendor issues a file for it;
the customer installs it with ``facekeeper license install``. No server is involved at any point.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from facekeeper.bundle import signing
from facekeeper.bundle.license import FEATURES, payload_from_terms
from facekeeper.errors import InvalidInput
from facekeeper.publisher.keys import sign

_RELATIVE = re.compile(r"^\+(\d+)d$")


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """``+30d`` (days from now), ``2026-12-31`` (the end of that day, UTC) or a full ISO time with zone."""
    now = now or datetime.now(UTC)
    if match := _RELATIVE.match(text.strip()):
        return now + timedelta(days=int(match.group(1)))
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"cannot read the expiry {text!r}: use +30d, 2026-12-31 or 2026-12-31T18:00:00Z") from None
    if len(text.strip()) == 10:
        return when.replace(tzinfo=UTC) + timedelta(days=1, seconds=-1)
    if when.tzinfo is None:
        raise InvalidInput(f"the expiry {text!r} needs a time zone (e.g. a trailing Z for UTC)")
    return when.astimezone(UTC)


def parse_features(text: str | Sequence[str]) -> list[str]:
    names = [f.strip() for f in (text.split(",") if isinstance(text, str) else text) if f.strip()]
    if unknown := sorted(set(names) - set(FEATURES)):
        raise InvalidInput(f"unknown feature(s) {', '.join(unknown)}: choose from {', '.join(FEATURES)}"
                           " ('detect' needs no license)")
    if not names:
        raise InvalidInput("a license must grant at least one feature")
    return names


def issue_license(key: Ed25519PrivateKey, *, licensee: str, deployment_id: str, expires_at: datetime,
                  features: Sequence[str], max_subjects: int, issued_at: datetime | None = None,
                  license_id: str | None = None) -> bytes:
    """The license file's bytes: the terms, and the vendor's signature of their canonical form."""
    issued_at = issued_at or datetime.now(UTC)
    if expires_at <= issued_at:
        raise InvalidInput("the license would expire before it is issued")
    if max_subjects < 1:
        raise InvalidInput("max_subjects must be at least 1")
    try:
        payload = payload_from_terms(
            license_id=license_id or uuid.uuid4().hex, licensee=licensee.strip(), deployment_id=deployment_id.strip(),
            issued_at=issued_at, expires_at=expires_at, features=parse_features(features), max_subjects=max_subjects)
    except ValueError as exc:
        raise InvalidInput(f"cannot issue this license: {exc}") from None
    doc = {"license": payload, "key_id": signing.key_id(key.public_key()),
           "signature": sign(key, signing.LICENSE_DOMAIN, signing.canonical_json(payload))}
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")
