"""API keys: who is calling the service, for which tenant, in which role, and for which purpose.

A key is ``fkapi1.<key id>.<secret>``: the id is public (it is the actor id in the audit chain), the
secret is 256 random bits shown once at creation. The store keeps ``HMAC-SHA256(salt, secret)``, never
the secret. A slow hash (scrypt, bcrypt) exists to protect guessable secrets if the file leaks; nothing
guesses 256 random bits, so a fast verifier loses nothing, and it is what lets every attempt be checked
exactly. The file is created 0600.

Checking is microseconds, so nothing has to be rationed before the check. That matters: rationing
checks per key id (as an earlier version did for scrypt) let anyone who knew an id spend its budget with
wrong secrets, and after a restart the real holder was refused with 429. Now the right secret is always
let through, and only failures are counted: after ``MAX_FAILURES_PER_MINUTE`` wrong secrets for one id,
further wrong secrets for it are answered 429 until the minute is over. An unknown id is refused at once.
Keys stored by that earlier version (``scrypt:`` parameters) are checked with scrypt once and rewritten.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from facekeeper.db.database import open_private_sqlite
from facekeeper.errors import AuthError, InvalidInput, RateLimited
from facekeeper.privacy.policy import ROLES

PREFIX = "fkapi1"
VERIFIER = "hmac-sha256"
SCRYPT = {"n": 2**15, "r": 8, "p": 1}  # only to check keys stored before VERIFIER; never used for new keys
MAX_FAILURES_PER_MINUTE = 10
_COLUMNS = "id, tenant, role, purpose, label, created_at, revoked_at"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL,
    purpose TEXT,                 -- when set, the only purpose this key may act for
    label TEXT,                   -- the operator's note (which gate, which team): never personal data
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    params TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""


@dataclass(frozen=True)
class ApiKey:
    """A key as the service sees it: never the secret, never its hash."""

    id: str
    tenant: str
    role: str
    purpose: str | None
    label: str | None
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def audit_facts(self) -> dict[str, str | None]:
        """What the tenant's audit chain records of a key created or revoked (never its secret)."""
        return {"key_id": self.id, "role": self.role, "key_purpose": self.purpose}


@dataclass(frozen=True)
class NewKey:
    """What ``create`` hands back once: the record and the full key to give to the caller."""

    key: ApiKey
    token: str


def split_token(token: str) -> tuple[str, str]:
    """(key id, secret) of a presented key, or ``AuthError``; the message never echoes the key."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1].startswith("ak_") or not parts[2]:
        raise AuthError("the API key is malformed: send 'Authorization: Bearer fkapi1.<id>.<secret>'")
    return parts[1], parts[2]


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_private_sqlite(path, _SCHEMA)
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}

    def close(self) -> None:
        self._db.close()

    # -- administration -------------------------------------------------------------------------
    def create(self, tenant: str, role: str, purpose: str | None = None, label: str | None = None) -> NewKey:
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        if role == "device" and not purpose:
            raise InvalidInput("a device key acts for one declared purpose: give --purpose")
        if label is not None and (len(label) > 100 or not label.isprintable()):
            raise InvalidInput("a key label is at most 100 printable characters")
        key_id = "ak_" + secrets.token_hex(8)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        salt = os.urandom(16)
        now = time.time()
        with self._lock:
            self._db.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                             (key_id, tenant, role, purpose, label, salt, _verifier(secret, salt), VERIFIER, now))
        return NewKey(ApiKey(key_id, tenant, role, purpose, label, now, None), f"{PREFIX}.{key_id}.{secret}")

    def list_keys(self, tenant: str | None = None, *, include_revoked: bool = False) -> list[ApiKey]:
        sql = f"SELECT {_COLUMNS} FROM api_keys WHERE (? IS NULL OR tenant = ?)"
        if not include_revoked:
            sql += " AND revoked_at IS NULL"
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at, id", (tenant, tenant)).fetchall()
        return [_key(r) for r in rows]

    def get(self, key_id: str) -> ApiKey | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else _key(row)

    def revoke(self, key_id: str, tenant: str | None = None) -> ApiKey:
        """Revoke a key (of ``tenant`` only, when given: an admin key cannot touch another tenant's keys)."""
        key = self.get(key_id)
        if key is None or (tenant is not None and key.tenant != tenant):
            raise InvalidInput("no such API key")
        with self._lock:
            self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (time.time(), key_id))
        revoked = self.get(key_id)
        assert revoked is not None
        return revoked

    # -- authentication -------------------------------------------------------------------------
    def authenticate(self, token: str) -> ApiKey:
        """The active key a presented token opens, or ``AuthError`` (``RateLimited`` once an id has had
        too many wrong secrets this minute). The right secret is never refused for others' failures."""
        key_id, secret = split_token(token)
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS}, salt, hash, params FROM api_keys WHERE id = ?",
                                   (key_id,)).fetchone()
        if row is None or row[6] is not None:
            raise AuthError("the API key is unknown or revoked")
        key = _key(row[:7])
        salt, digest, params = bytes(row[7]), bytes(row[8]), str(row[9])
        if params == VERIFIER:
            if hmac.compare_digest(_verifier(secret, salt), digest):
                return key
        elif self._legacy_matches(key_id, secret, salt, digest, params):
            return key
        self._failed(key_id)
        raise AuthError("the API key is unknown or revoked")

    def _legacy_matches(self, key_id: str, secret: str, salt: bytes, digest: bytes, params: str) -> bool:
        """A key stored as scrypt: checked at scrypt's cost (so only while its id is not flooded), then
        rewritten to the fast verifier so that it is never rationed again."""
        self._refuse_if_flooded(key_id)
        cost = {k: int(v) for k, v in (kv.split("=") for kv in params.removeprefix("scrypt:").split(","))}
        if not hmac.compare_digest(_hash(secret, salt, cost), digest):
            return False
        with self._lock:
            self._db.execute("UPDATE api_keys SET hash = ?, params = ? WHERE id = ? AND params = ?",
                             (_verifier(secret, salt), VERIFIER, key_id, params))
        return True

    def _refuse_if_flooded(self, key_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            flooded = sum(now - t < 60.0 for t in self._failures.get(key_id, [])) >= MAX_FAILURES_PER_MINUTE
        if flooded:
            raise RateLimited("too many wrong secrets for this API key id: wait a minute", retry_after=60)

    def _failed(self, key_id: str) -> None:
        """Count a wrong secret; past the limit the answer is 429, so a guesser is told to stop."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(key_id, []) if now - t < 60.0]
            flooded = len(recent) >= MAX_FAILURES_PER_MINUTE
            self._failures[key_id] = recent if flooded else [*recent, now]
        if flooded:
            raise RateLimited("too many wrong secrets for this API key id: wait a minute", retry_after=60)


def _verifier(secret: str, salt: bytes) -> bytes:
    return hmac.new(salt, secret.encode(), sha256).digest()


def _hash(secret: str, salt: bytes, params: dict[str, int]) -> bytes:
    return Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"]).derive(secret.encode())


def _key(r: tuple[Any, ...]) -> ApiKey:
    return ApiKey(str(r[0]), str(r[1]), str(r[2]), r[3], r[4], float(r[5]), None if r[6] is None else float(r[6]))
