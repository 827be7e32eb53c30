"""Console accounts, their sessions, one-time logins and the self-service codes people hold.

One SQLite file beside the API keys (``ROOT/console.db``, 0600), because accounts, like keys, belong to the
server that hosts the tenants, not to one deployment's data.

- An account is a person of one tenant with one role (admin, operator, auditor). Passwords are hashed with
  Argon2id (``argon2-cffi``'s defaults). After ``MAX_FAILURES`` wrong passwords in a row the account is
  locked for ``LOCK_SECONDS``; the lock ends by itself, so a stranger who guesses a name can delay its
  holder, never shut them out. An unknown name costs a hash too, and gets the same answer.
- An admin may add a TOTP (RFC 6238, ``pyotp``); once confirmed, signing in asks for its code.
- A session is 256 random bits in an HttpOnly cookie; the file keeps its SHA-256 only. It carries its
  tenant, its role and a CSRF token that every form and script POST must echo. It ends after
  ``IDLE_SECONDS`` unused or ``MAX_SESSION_SECONDS`` in all.
- A one-time login (``facekeeper console admin create``) is a link that opens one session, once, within
  ``ONCE_SECONDS``; the account then sets its own password.
- A self-service code is what a person takes home at enrolment: a reference code (80 random bits) and a
  six-digit PIN. The file keeps a hash of the code, an Argon2 hash of the PIN and the subject id sealed
  (AES-GCM, ``gallery.protect``) under a key derived from the code, so without the paper the row names no
  one; after an erasure it is noise even before it is deleted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from facekeeper.db.database import open_private_sqlite
from facekeeper.errors import AuthError, InvalidInput, RateLimited
from facekeeper.gallery import protect

ACCOUNTS_FILE = "console.db"
CONSOLE_ROLES = ("admin", "operator", "auditor")
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
IDLE_SECONDS = 30 * 60
MAX_SESSION_SECONDS = 12 * 3600
ONCE_SECONDS = 3600
SELF_SERVICE_DAYS = 3 * 365
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
MIN_PASSWORD = 12
_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    tenant TEXT NOT NULL, username TEXT NOT NULL, role TEXT NOT NULL,
    hash TEXT,                      -- Argon2id; NULL until the one-time login sets a password
    totp TEXT, totp_confirmed INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0, locked_until REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, PRIMARY KEY (tenant, username));
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,            -- SHA-256 of the cookie's token
    tenant TEXT NOT NULL, username TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL,
    kind TEXT NOT NULL,             -- 'account' or 'person'
    subject TEXT,                   -- a person session: the self-service row it opened
    sealed BLOB,                    -- and the subject id, sealed under a key derived from the cookie
    created_at REAL NOT NULL, seen_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS once (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, username TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS self_service (
    id TEXT PRIMARY KEY,            -- SHA-256 of the reference code
    tenant TEXT NOT NULL, pin TEXT NOT NULL, sealed BLOB NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0, locked_until REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, expires_at REAL NOT NULL);
"""
_hasher = PasswordHasher()
_DUMMY = _hasher.hash("an unknown name costs a hash too")
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed from paper


@dataclass(frozen=True)
class Account:
    tenant: str
    username: str
    role: str
    has_password: bool
    totp: bool
    locked_until: float
    created_at: float

    def audit_facts(self) -> dict[str, str | None]:
        """What the tenant's chain records of an account created or removed: access like an API key's."""
        return {"key_id": f"console:{self.username}", "role": self.role, "key_purpose": None}


@dataclass(frozen=True)
class Session:
    """A signed-in browser: an account's, or a person's holding a self-service code."""

    token: str
    tenant: str
    username: str
    role: str
    csrf: str
    kind: str
    subject: str | None = None  # a person session: the self-service row id
    subject_id: str | None = None  # and the person's subject id (opened with the cookie's token)

    @property
    def actor_id(self) -> str:
        """Who the audit names: ``console:alice``, or ``person:`` and the start of the code's hash."""
        return f"console:{self.username}" if self.kind == "account" else f"person:{self.username}"


@dataclass(frozen=True)
class SelfService:
    """What a person is handed at enrolment, shown once: the reference code and the PIN."""

    code: str
    pin: str
    expires_at: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _code_key(code: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"facekeeper console self-service v1").derive(code.encode())


def normal_code(code: str) -> str:
    """A reference code as typed: case, spaces and dashes do not matter."""
    return re.sub(r"[\s-]", "", code).upper()


def check_username(name: str) -> str:
    if not USERNAME_RE.match(name or ""):
        raise InvalidInput("a console user name is 1-40 lowercase letters, digits, '.', '_' or '-'")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise InvalidInput("a password has at most 1024 characters")
    return password


class AccountStore:
    """The console's accounts, sessions, one-time logins and self-service codes (``ROOT/console.db``)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] | None = None) -> None:
        self.path = path
        self.now = clock or time.time
        self._db = open_private_sqlite(path, _SCHEMA)
        self._lock = threading.Lock()

    @classmethod
    def beside(cls, root: Path) -> AccountStore:
        return cls(root / ACCOUNTS_FILE)

    def close(self) -> None:
        self._db.close()

    # -- accounts ---------------------------------------------------------------------------------
    def create(self, tenant: str, username: str, role: str, password: str | None = None) -> Account:
        """A new account; without a password it can only be entered through a one-time login."""
        check_username(username)
        if role not in CONSOLE_ROLES:
            raise InvalidInput(f"a console role is one of {', '.join(CONSOLE_ROLES)}")
        digest = _hasher.hash(check_password(password)) if password is not None else None
        with self._lock:
            try:
                self._db.execute("INSERT INTO accounts (tenant, username, role, hash, created_at) VALUES (?,?,?,?,?)",
                                 (tenant, username, role, digest, self.now()))
            except sqlite3.IntegrityError:
                raise InvalidInput(f"tenant {tenant} already has a console account {username}") from None
        account = self.get(tenant, username)
        assert account is not None
        return account

    def get(self, tenant: str, username: str) -> Account | None:
        with self._lock:
            row = self._db.execute("SELECT tenant, username, role, hash IS NOT NULL, totp_confirmed, locked_until,"
                                   " created_at FROM accounts WHERE tenant = ? AND username = ?",
                                   (tenant, username)).fetchone()
        return None if row is None else Account(row[0], row[1], row[2], bool(row[3]), bool(row[4]), row[5], row[6])

    def list_accounts(self, tenant: str) -> list[Account]:
        with self._lock:
            names = [r[0] for r in self._db.execute("SELECT username FROM accounts WHERE tenant = ? ORDER BY username",
                                                    (tenant,))]
        return [a for a in (self.get(tenant, n) for n in names) if a is not None]

    def remove(self, tenant: str, username: str) -> Account:
        """Delete an account and end its sessions at once."""
        account = self.get(tenant, username)
        if account is None:
            raise InvalidInput(f"no console account {username} in tenant {tenant}")
        with self._lock:
            self._db.execute("DELETE FROM accounts WHERE tenant = ? AND username = ?", (tenant, username))
            self._db.execute("DELETE FROM sessions WHERE tenant = ? AND username = ? AND kind = 'account'",
                             (tenant, username))
            self._db.execute("DELETE FROM once WHERE tenant = ? AND username = ?", (tenant, username))
        return account

    def set_password(self, tenant: str, username: str, password: str) -> None:
        digest = _hasher.hash(check_password(password))
        with self._lock:
            self._db.execute("UPDATE accounts SET hash = ?, failures = 0, locked_until = 0 WHERE tenant = ? AND"
                             " username = ?", (digest, tenant, username))

    # -- signing in -------------------------------------------------------------------------------
    def login(self, tenant: str, username: str, password: str, totp: str | None = None) -> Session:
        """A new session, or ``AuthError`` (the same words for an unknown name and a wrong password) /
        ``RateLimited`` while the account is locked."""
        with self._lock:
            row = self._db.execute("SELECT hash, totp, totp_confirmed, failures, locked_until, role FROM accounts"
                                   " WHERE tenant = ? AND username = ?", (tenant, username)).fetchone()
        now = self.now()
        if row is None or row[0] is None:
            _verify(_DUMMY, password)
            raise AuthError("wrong tenant, name or password")
        digest, secret, confirmed, failures, locked_until, role = row
        if locked_until > now:
            minutes = max(1, round((locked_until - now) / 60))
            raise RateLimited(f"too many wrong passwords: this account is locked for {minutes} more minute(s)",
                              retry_after=int(locked_until - now) + 1)
        ok = _verify(digest, password)
        if ok and confirmed and not pyotp.TOTP(secret).verify((totp or "").strip(), valid_window=1):
            ok = False
        if not ok:
            failures += 1
            lock = now + LOCK_SECONDS if failures >= MAX_FAILURES else 0
            with self._lock:
                self._db.execute("UPDATE accounts SET failures = ?, locked_until = ? WHERE tenant = ? AND"
                                 " username = ?", (0 if lock else failures, lock, tenant, username))
            if confirmed and _verify(digest, password):
                raise AuthError("the authenticator code is missing or wrong")
            raise AuthError("wrong tenant, name or password")
        if _hasher.check_needs_rehash(digest):
            self.set_password(tenant, username, password)
        with self._lock:
            self._db.execute("UPDATE accounts SET failures = 0 WHERE tenant = ? AND username = ?", (tenant, username))
        return self._open(tenant, username, role, "account")

    def one_time_login(self, tenant: str, username: str) -> str:
        """A token that opens one session for the account, once, within ``ONCE_SECONDS``."""
        if self.get(tenant, username) is None:
            raise InvalidInput(f"no console account {username} in tenant {tenant}")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._db.execute("INSERT INTO once VALUES (?, ?, ?, ?)", (_digest(token), tenant, username,
                                                                     self.now() + ONCE_SECONDS))
        return token

    def use_once(self, token: str) -> Session:
        with self._lock:
            row = self._db.execute("DELETE FROM once WHERE id = ? RETURNING tenant, username, expires_at",
                                   (_digest(token),)).fetchone()
        if row is None or row[2] < self.now():
            raise AuthError("this one-time login was used already or has expired: ask an admin for a new one")
        account = self.get(row[0], row[1])
        if account is None:
            raise AuthError("this one-time login's account no longer exists")
        return self._open(account.tenant, account.username, account.role, "account")

    def _open(self, tenant: str, username: str, role: str, kind: str, subject: str | None = None,
              subject_id: str | None = None) -> Session:
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.now()
        sealed = None if subject_id is None else protect.seal(_code_key(token), subject_id.encode(), b"session")
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE seen_at < ? OR created_at < ?",
                             (now - IDLE_SECONDS, now - MAX_SESSION_SECONDS))
            self._db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (_digest(token), tenant, username, role, csrf, kind, subject, sealed, now, now))
        return Session(token, tenant, username, role, csrf, kind, subject, subject_id)

    def session(self, token: str | None, kind: str = "account") -> Session | None:
        """The live session a cookie holds (its idle clock restarted), or None."""
        if not token:
            return None
        now = self.now()
        with self._lock:
            row = self._db.execute("SELECT tenant, username, role, csrf, kind, subject, created_at, seen_at, sealed"
                                   " FROM sessions WHERE id = ?", (_digest(token),)).fetchone()
            if row is None or row[4] != kind:
                return None
            if row[7] < now - IDLE_SECONDS or row[6] < now - MAX_SESSION_SECONDS:
                self._db.execute("DELETE FROM sessions WHERE id = ?", (_digest(token),))
                return None
            self._db.execute("UPDATE sessions SET seen_at = ? WHERE id = ?", (now, _digest(token)))
        if kind == "account":
            account = self.get(row[0], row[1])
            if account is None or account.role != row[2]:
                return None
        subject_id = None if row[8] is None else protect.open_sealed(_code_key(token), bytes(row[8]),
                                                                     b"session").decode()
        return Session(token, row[0], row[1], row[2], row[3], row[4], row[5], subject_id)

    def logout(self, token: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE id = ?", (_digest(token),))

    # -- TOTP for admins ---------------------------------------------------------------------------
    def start_totp(self, tenant: str, username: str) -> str:
        """A new TOTP secret for the account, in force once ``confirm_totp`` sees a code made from it."""
        secret = pyotp.random_base32()
        with self._lock:
            self._db.execute("UPDATE accounts SET totp = ?, totp_confirmed = 0 WHERE tenant = ? AND username = ?",
                             (secret, tenant, username))
        return secret

    def confirm_totp(self, tenant: str, username: str, code: str) -> None:
        with self._lock:
            row = self._db.execute("SELECT totp FROM accounts WHERE tenant = ? AND username = ?",
                                   (tenant, username)).fetchone()
        if row is None or not row[0] or not pyotp.TOTP(row[0]).verify(code.strip(), valid_window=1):
            raise InvalidInput("that code does not match: check the authenticator's clock and try the next code")
        with self._lock:
            self._db.execute("UPDATE accounts SET totp_confirmed = 1 WHERE tenant = ? AND username = ?",
                             (tenant, username))

    # -- self-service codes -----------------------------------------------------------------------
    def issue_self_service(self, tenant: str, subject_id: str, days: int = SELF_SERVICE_DAYS) -> SelfService:
        raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(16))  # 16 x 5 bits
        code = "-".join(raw[i:i + 4] for i in range(0, 16, 4))
        pin = f"{secrets.randbelow(10**6):06d}"
        row_id = _digest(raw)
        now = self.now()
        sealed = protect.seal(_code_key(raw), subject_id.encode(), f"{row_id}|{tenant}".encode())
        with self._lock:
            self._db.execute("INSERT INTO self_service (id, tenant, pin, sealed, created_at, expires_at)"
                             " VALUES (?, ?, ?, ?, ?, ?)", (row_id, tenant, _hasher.hash(pin), sealed, now,
                                                            now + days * 86400))
        return SelfService(code, pin, now + days * 86400)

    def open_self_service(self, code: str, pin: str) -> Session:
        """A person's session, holding the subject id their code opens; ``AuthError`` for a wrong code or PIN
        (the same words), ``RateLimited`` while the code is locked after ``MAX_FAILURES`` wrong PINs."""
        raw = normal_code(code)
        row_id = _digest(raw)
        with self._lock:
            row = self._db.execute("SELECT tenant, pin, sealed, failures, locked_until, expires_at FROM self_service"
                                   " WHERE id = ?", (row_id,)).fetchone()
        now = self.now()
        if row is None or row[5] < now:
            _verify(_DUMMY, pin)
            raise AuthError("this reference code and PIN do not match: check both and try again")
        tenant, digest, sealed, failures, locked_until, _ = row
        if locked_until > now:
            raise RateLimited("too many wrong PINs for this code: try again in 15 minutes",
                              retry_after=int(locked_until - now) + 1)
        if not _verify(digest, pin.strip()):
            failures += 1
            lock = now + LOCK_SECONDS if failures >= MAX_FAILURES else 0
            with self._lock:
                self._db.execute("UPDATE self_service SET failures = ?, locked_until = ? WHERE id = ?",
                                 (0 if lock else failures, lock, row_id))
            raise AuthError("this reference code and PIN do not match: check both and try again")
        subject_id = protect.open_sealed(_code_key(raw), bytes(sealed), f"{row_id}|{tenant}".encode()).decode()
        with self._lock:
            self._db.execute("UPDATE self_service SET failures = 0 WHERE id = ?", (row_id,))
        return self._open(tenant, row_id[:12], "operator", "person", row_id, subject_id)

    def forget_self_service(self, row_id: str) -> None:
        """Delete a person's code (after their face is erased) and end the sessions it opened."""
        with self._lock:
            self._db.execute("DELETE FROM self_service WHERE id = ?", (row_id,))
            self._db.execute("DELETE FROM sessions WHERE subject = ?", (row_id,))


def _verify(digest: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(digest, password))
    except (VerificationError, InvalidHashError):
        return False


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf.encode(), (presented or "").encode())


def random_password() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()
