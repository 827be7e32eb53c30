"""The tamper-evident audit log: every operation, append-only, each entry chained to the one before.

Entry ``n`` carries ``mac_n = HMAC-SHA256(K, mac_{n-1} || canonical(entry_n))`` with ``K`` derived from
the deployment key (label ``audit-chain/hmac-sha256``). A plain hash chain only proves the entries agree
with each other: whoever can write the file can rewrite the whole chain consistently. Keying it means a
person with the data directory (a backup, a compromised host without the key directory) cannot forge,
alter, reorder or delete entries without ``audit verify`` naming the first broken one. Cutting the tail is
caught by an anchor (the latest sequence number and MAC) kept in the key directory, apart from the data.
Auditors without the key check the signed export instead (see ``receipts``).

What an entry holds: time, actor (id, role, tenant), purpose, action, subject pseudonym, outcome, a coarse
decision bucket and a few counters. Never an image, a template, a key or a name; ``detail`` is checked.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from facekeeper.db.database import Connection
from facekeeper.errors import InvalidInput
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.gallery.store import Store
from facekeeper.privacy.policy import Actor

ANCHOR_NAME = "audit.anchor"
_DETAIL_STR_MAX = 120
_DETAIL_LIST_MAX = 50
_COLUMNS = "seq, at, actor, role, tenant, purpose, action, subject, outcome, bucket, detail, mac"


# The entries written by the operation running in this context (``facekeeper.contract``'s guard counts them
# to leave exactly one per operation; a nested operation gets a list of its own).
_written: ContextVar[list[int] | None] = ContextVar("facekeeper_audit_written", default=None)


@contextmanager
def counting() -> Iterator[list[int]]:
    """Collect the sequence numbers of the entries appended in this context."""
    entries: list[int] = []
    token = _written.set(entries)
    try:
        yield entries
    finally:
        _written.reset(token)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: float
    actor: str
    role: str
    tenant: str
    purpose: str | None
    action: str
    subject: str | None
    outcome: str
    bucket: str | None
    detail: dict[str, Any]
    mac: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChainReport:
    """The result of recomputing the chain. ``first_bad`` is the first entry that does not hold."""

    ok: bool
    entries: int
    head_seq: int
    first_bad: int | None
    problem: str | None
    anchored_seq: int | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_detail(detail: dict[str, Any]) -> str:
    """Counters, codes and ids only: a detail that could carry a vector or free text is refused."""
    for name, value in detail.items():
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and len(value) > _DETAIL_LIST_MAX:
            raise InvalidInput(f"audit detail {name!r} is too long for an audit entry")
        for item in items:
            if isinstance(item, str) and len(item) > _DETAIL_STR_MAX:
                raise InvalidInput(f"audit detail {name!r} is too long for an audit entry")
            if isinstance(value, list) and not isinstance(item, str):
                raise InvalidInput(f"audit detail {name!r} may only list short strings")
            if not isinstance(item, str | int | float | bool | type(None)):
                raise InvalidInput(f"audit detail {name!r} must be a plain value")
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class AuditLog:
    def __init__(self, store: Store, key: DeploymentKey, deployment_id: str, key_dir: Path) -> None:
        self.store = store
        self._key = key.derive("audit-chain/hmac-sha256")
        self._deployment_id = deployment_id
        self._genesis = hmac.new(self._key, b"genesis|" + deployment_id.encode(), sha256).hexdigest()
        self.anchor_path = key_dir / ANCHOR_NAME
        self._lock_path = key_dir / (ANCHOR_NAME + ".lock")

    # -- writing --------------------------------------------------------------------------------
    def _mac(self, prev: str, row: tuple[Any, ...]) -> str:
        body = json.dumps(list(row), separators=(",", ":"), ensure_ascii=False).encode()
        return hmac.new(self._key, prev.encode() + b"|" + body, sha256).hexdigest()

    def append(self, db: Connection, actor: Actor, action: str, outcome: str, *, at: float,
               purpose: str | None = None, subject: str | None = None, bucket: str | None = None,
               detail: dict[str, Any] | None = None) -> int:
        """Add one entry inside the caller's transaction (so it commits or rolls back with the change)."""
        detail_text = _check_detail(detail or {})
        last = db.execute("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (1, self._genesis) if last is None else (int(last[0]) + 1, str(last[1]))
        row = (seq, float(at), actor.id, actor.role, actor.tenant, purpose, action, subject, outcome, bucket,
               detail_text)
        db.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (*row, self._mac(prev, row)))
        written = _written.get()
        if written is not None:
            written.append(seq)
        return seq

    def record(self, actor: Actor, action: str, outcome: str, *, at: float, purpose: str | None = None,
               subject: str | None = None, bucket: str | None = None,
               detail: dict[str, Any] | None = None) -> int:
        """Append in a transaction of its own (operations that change no data: reads, refusals)."""
        with self.store.transaction() as db:
            seq = self.append(db, actor, action, outcome, at=at, purpose=purpose, subject=subject, bucket=bucket,
                              detail=detail)
        self.anchor()
        return seq

    def anchor(self) -> None:
        """Copy the committed head (seq, MAC) to the key directory; call after every commit that audits.

        Never moves backwards, so concurrent writers can call it in any order.
        """
        row = self.store.db.execute("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return
        seq, mac = int(row[0]), str(row[1])
        self.anchor_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = self._read_anchor()
            if current is not None and current[0] >= seq:
                return
            tmp = self.anchor_path.with_suffix(".tmp")
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(out, "w") as fh:
                json.dump({"deployment_id": self._deployment_id, "seq": seq, "mac": mac}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.anchor_path)
        finally:
            os.close(fd)

    def _read_anchor(self) -> tuple[int, str] | None:
        try:
            data = json.loads(self.anchor_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return (-1, "")
        if data.get("deployment_id") != self._deployment_id:
            return (-1, "")
        return int(data["seq"]), str(data["mac"])

    # -- reading --------------------------------------------------------------------------------
    def entries(self, *, since: float | None = None, subject: str | None = None,
                after_seq: int = 0, limit: int | None = None) -> list[AuditEntry]:
        sql = f"SELECT {_COLUMNS} FROM audit WHERE seq > ?"
        args: list[Any] = [after_seq]
        if since is not None:
            sql += " AND at >= ?"
            args.append(since)
        if subject is not None:
            sql += " AND subject = ?"
            args.append(subject)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_entry(r) for r in self.store.db.execute(sql, args)]

    def head(self) -> tuple[int, str]:
        row = self.store.db.execute("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, self._genesis) if row is None else (int(row[0]), str(row[1]))

    def count(self) -> int:
        return int(self.store.db.execute("SELECT count(*) FROM audit").fetchone()[0])

    def verify(self) -> ChainReport:
        """Recompute every MAC from the first entry on, then hold the head against the anchor."""
        started = time.perf_counter()
        anchor = self._read_anchor()  # before the snapshot: an anchor is never ahead of what is committed
        prev, expected, n = self._genesis, 1, 0
        macs: dict[int, str] = {}

        def report(ok: bool, first_bad: int | None, problem: str | None) -> ChainReport:
            return ChainReport(ok, n, expected - 1, first_bad, problem, anchor[0] if anchor else None,
                               round(time.perf_counter() - started, 4))

        cursor = self.store.db.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq")
        for r in cursor:
            seq = int(r[0])
            if seq != expected:
                return report(False, expected, f"entry {expected} is missing (the next entry is {seq})")
            if not hmac.compare_digest(self._mac(prev, tuple(r[:11])), str(r[11])):
                return report(False, seq, f"entry {seq} was altered, inserted or moved: its MAC does not hold")
            prev = str(r[11])
            if anchor is not None and seq == anchor[0]:
                macs[seq] = prev
            expected += 1
            n += 1
        if anchor is not None:
            if anchor[0] < 0:
                return report(False, None, "the anchor in the key directory is unreadable or from another"
                                           " deployment")
            if anchor[0] >= expected:
                return report(False, expected, f"entries {expected} to {anchor[0]} were removed from the end"
                                               " (the anchor in the key directory has seen them)")
            if not hmac.compare_digest(macs.get(anchor[0], ""), anchor[1]):
                return report(False, anchor[0], f"entry {anchor[0]} does not match the anchor in the key"
                                                " directory")
        return report(True, None, None)


def _entry(r: tuple[Any, ...]) -> AuditEntry:
    return AuditEntry(int(r[0]), float(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], json.loads(r[10]),
                      r[11])
