"""API keys: who is calling the service, for which tenant, in which role, and for which purpose.

A key is ``fkapi1.<key id>.<secret>``: the id is public (it is the actor id in the audit chain), the
secret is 256 random bits shown once at creation. The store keeps ``scrypt(secret, salt)`` with
n=2^15, r=8, p=1 (32 MiB, ~0.1 s): a 256-bit secret cannot be guessed anyway, so the cost only matters
if the file leaks together with a weak secret, and none is ever weak. The file is created 0600.

Checking scrypt on every request would cost 0.1 s of CPU each, so a key verified once is remembered
in memory as an HMAC under a per-process random key (never the secret itself), and the record is read
from the file on every request, so ``keys revoke`` from another process takes effect at once. An
unknown id is refused without any hashing; wrong secrets for a known id are limited to
``MAX_UNVERIFIED_PER_MINUTE`` scrypt checks per id, so a flood costs the server almost nothing and
never touches the budget of the legitimate holder, whose key is already remembered.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
import sqlite3
import stat
import threading
import time
from dataclasses import asdict, dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from facekeeper.errors import AuthError, ConfigError, InvalidInput, RateLimited
from facekeeper.privacy.policy import ROLES

PREFIX = "fkapi1"
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
MAX_UNVERIFIED_PER_MINUTE = 10
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
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        elif path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{path} is readable by others: run 'chmod 600 {path}'")
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._memo_key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._unverified: dict[str, list[float]] = {}

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
        params = f"scrypt:n={SCRYPT['n']},r={SCRYPT['r']},p={SCRYPT['p']}"
        now = time.time()
        with self._lock:
            self._db.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                             (key_id, tenant, role, purpose, label, salt, _hash(secret, salt, SCRYPT), params, now))
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
            self._verified.pop(key_id, None)
        revoked = self.get(key_id)
        assert revoked is not None
        return revoked

    # -- authentication -------------------------------------------------------------------------
    def authenticate(self, token: str) -> ApiKey:
        """The active key a presented token opens, or ``AuthError`` (``RateLimited`` for a guessing flood)."""
        key_id, secret = split_token(token)
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS}, salt, hash, params FROM api_keys WHERE id = ?",
                                   (key_id,)).fetchone()
        if row is None or row[6] is not None:
            raise AuthError("the API key is unknown or revoked")
        key = _key(row[:7])
        memo = hmac.new(self._memo_key, token.strip().encode(), sha256).digest()
        known = self._verified.get(key_id)
        if known is not None and hmac.compare_digest(known, memo):
            return key
        self._charge_unverified(key_id)
        params = {k: int(v) for k, v in (kv.split("=") for kv in str(row[9]).removeprefix("scrypt:").split(","))}
        if not hmac.compare_digest(_hash(secret, bytes(row[7]), params), bytes(row[8])):
            raise AuthError("the API key is unknown or revoked")
        with self._lock:
            self._verified[key_id] = memo
        return key

    def _charge_unverified(self, key_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._unverified.get(key_id, []) if now - t < 60.0]
            if len(recent) >= MAX_UNVERIFIED_PER_MINUTE:
                self._unverified[key_id] = recent
                raise RateLimited("too many attempts with this API key id: wait a minute", retry_after=60)
            recent.append(now)
            self._unverified[key_id] = recent


def _hash(secret: str, salt: bytes, params: dict[str, int]) -> bytes:
    return Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"]).derive(secret.encode())


def _key(r: tuple[Any, ...]) -> ApiKey:
    return ApiKey(str(r[0]), str(r[1]), str(r[2]), r[3], r[4], float(r[5]), None if r[6] is None else float(r[6]))
