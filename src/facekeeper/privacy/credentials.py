"""The non-face alternative: a random PIN or QR token that passes the same purpose check as a face.

Refusing face recognition must cost a person nothing, so any subject (enrolled or not) can hold one.
Secrets are shown once and stored only as ``scrypt(HMAC(pepper, id|secret), salt)`` with n=2^15, r=8,
p=1 (32 MiB, ~0.13 s here): the scrypt cost slows guessing, and the pepper, derived from the deployment
key, means a stolen gallery file alone gives nothing to guess against. A 6-digit PIN is weak by nature, so
it locks after ``privacy.credential_max_failures`` wrong tries; a token carries 256 random bits.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from dataclasses import asdict, dataclass
from hashlib import sha256
from typing import Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from facekeeper.db.database import Connection
from facekeeper.errors import CredentialError, InvalidInput
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.gallery.store import Store

KINDS = ("pin", "token")
PIN_DIGITS = 6
TOKEN_PREFIX = "fk1"
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
_COLUMNS = "id, pseudonym, purpose, kind, salt, hash, params, created_at, expires_at, failures, last_used_at"


@dataclass(frozen=True)
class Issued:
    """What the person is handed, once: the PIN or the token (for a QR code). Never stored in clear."""

    credential_id: str
    kind: str
    purpose: str
    secret: str
    expires_at: float | None


@dataclass(frozen=True)
class CredentialInfo:
    id: str
    pseudonym: str
    purpose: str
    kind: str
    created_at: float
    expires_at: float | None
    failures: int
    last_used_at: float | None
    locked: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Credentials:
    def __init__(self, store: Store, key: DeploymentKey, max_failures: int) -> None:
        self.store = store
        self._pepper = key.derive("credentials/pepper")
        self.max_failures = max_failures

    def _hash(self, credential_id: str, secret: str, salt: bytes, params: dict[str, int]) -> bytes:
        peppered = hmac.new(self._pepper, f"{credential_id}|{secret}".encode(), sha256).digest()
        return Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"]).derive(peppered)

    def issue(self, db: Connection, pseudonym: str, purpose: str, kind: str, now: float,
              expires_at: float | None = None) -> Issued:
        if kind not in KINDS:
            raise InvalidInput(f"credential kind must be one of {', '.join(KINDS)}")
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("a credential must expire after it is issued")
        cid = "k_" + secrets.token_hex(8)
        if kind == "pin":
            secret = f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"
        else:
            secret = f"{TOKEN_PREFIX}.{cid}.{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip('=')}"
        salt = os.urandom(16)
        params = f"scrypt:n={SCRYPT['n']},r={SCRYPT['r']},p={SCRYPT['p']}"
        db.execute(f"INSERT INTO credentials ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL)",
                   (cid, pseudonym, purpose, kind, salt, self._hash(cid, secret, salt, SCRYPT), params, now,
                    expires_at))
        return Issued(cid, kind, purpose, secret, expires_at)

    def check(self, purpose: str, now: float, *, token: str | None = None, pseudonym: str | None = None,
              pin: str | None = None) -> CredentialInfo:
        """The credential a token or (subject, PIN) opens for ``purpose``, or ``CredentialError``.

        The answer to every failure is the same sentence, and the work done is the same, so a caller cannot
        tell an unknown subject from a wrong PIN.
        """
        if token is not None:
            parts = token.strip().split(".")
            rows = self._rows("id = ?", parts[1]) if len(parts) == 3 and parts[0] == TOKEN_PREFIX else []
            secret = token.strip()
        elif pseudonym is not None and pin is not None:
            rows = self._rows("pseudonym = ? AND kind = 'pin'", pseudonym)
            secret = pin.strip()
        else:
            raise InvalidInput("give a token, or a subject and a PIN")
        candidates = [r for r in rows if r.purpose == purpose and (r.expires_at is None or now < r.expires_at)]
        if not candidates:
            self._hash("k_dummy", secret, b"\0" * 16, SCRYPT)  # same cost as a real check
            raise CredentialError("credential not accepted")
        for info in candidates:
            salt, stored, params = self._secret_of(info.id)
            ok = hmac.compare_digest(self._hash(info.id, secret, salt, params), stored)
            with self.store.transaction() as db:
                if info.locked:
                    continue
                if ok:
                    db.execute("UPDATE credentials SET failures = 0, last_used_at = ? WHERE id = ?", (now, info.id))
                    return self.get(info.id)
                db.execute("UPDATE credentials SET failures = failures + 1 WHERE id = ?", (info.id,))
        if any(c.locked or c.failures + 1 >= self.max_failures for c in candidates):
            raise CredentialError(f"credential not accepted; locked after {self.max_failures} wrong tries:"
                                  " issue a new one", locked=True)
        raise CredentialError("credential not accepted")

    def revoke(self, db: Connection, credential_id: str) -> bool:
        return bool(db.execute("DELETE FROM credentials WHERE id = ?", (credential_id,)).rowcount)

    def get(self, credential_id: str) -> CredentialInfo:
        rows = self._rows("id = ?", credential_id)
        if not rows:
            raise InvalidInput("no such credential")
        return rows[0]

    def of_subject(self, pseudonym: str) -> list[CredentialInfo]:
        return self._rows("pseudonym = ?", pseudonym)

    def active(self, pseudonym: str, now: float, db: Connection | None = None) -> int:
        return int((db or self.store.db).execute(
            "SELECT count(*) FROM credentials WHERE pseudonym = ? AND (expires_at IS NULL OR expires_at > ?)",
            (pseudonym, now)).fetchone()[0])

    def expired(self, now: float) -> list[CredentialInfo]:
        return self._rows("expires_at IS NOT NULL AND expires_at <= ?", now)

    def _rows(self, where: str, *args: Any) -> list[CredentialInfo]:
        out = []
        for r in self.store.db.execute(f"SELECT {_COLUMNS} FROM credentials WHERE {where} ORDER BY created_at, id",
                                       args):
            failures = int(r[9])
            out.append(CredentialInfo(r[0], r[1], r[2], r[3], float(r[7]), None if r[8] is None else float(r[8]),
                                      failures, None if r[10] is None else float(r[10]),
                                      r[3] == "pin" and failures >= self.max_failures))
        return out

    def _secret_of(self, credential_id: str) -> tuple[bytes, bytes, dict[str, int]]:
        salt, stored, params = self.store.db.execute(
            "SELECT salt, hash, params FROM credentials WHERE id = ?", (credential_id,)).fetchone()
        parsed = dict(kv.split("=") for kv in str(params).removeprefix("scrypt:").split(","))
        return bytes(salt), bytes(stored), {k: int(v) for k, v in parsed.items()}
