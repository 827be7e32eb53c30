"""The tamper-evident audit log: every operation, append-only, each entry chained to the one before.

Entry ``n`` carries ``mac_n = HMAC-SHA256(K, mac_{n-1} || canonical(entry_n))`` with ``K`` derived from
the deployment key (label ``audit-chain/hmac-sha256``). A plain hash chain only proves the entries agree
with each other: whoever can write the file can rewrite the whole chain consistently. Keying it means a
person with the data directory (a backup, a compromised host without the key directory) cannot forge,
alter, reorder or delete entries without ``audit verify`` naming the first broken one.

Cutting the tail (or emptying the chain) is caught by two head records, each a (sequence number, MAC)
pair tagged with the key so a copy of an entry's MAC cannot pass for one: ``audit_head`` in the gallery's
``meta``, written in the transaction of every entry (so it is exact), and the anchor in the key directory,
written after each commit and never moved backwards. A deployment's chain starts with entry 1
(``audit.start``) when its privacy tables are first opened, so an empty chain, a missing head record or a
missing anchor is always a break. What a thief with both folders and no key can still do is put back an
older copy of both, whole: the signed export, kept elsewhere, is what dates a chain.
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
HEAD_META = "audit_head"
START_ACTION = "audit.start"
_DETAIL_STR_MAX = 120
_DETAIL_LIST_MAX = 50
_COLUMNS = "seq, at, actor, role, tenant, purpose, action, subject, outcome, bucket, detail, mac"


# The entries written by the operation running in this context (``facekeeper.contract``'s guard counts them
# to leave exactly one per operation; a nested operation gets a list of its own).
_written: ContextVar[list[str] | None] = ContextVar("facekeeper_audit_written", default=None)


@contextmanager
def counting() -> Iterator[list[str]]:
    """Collect the actions of the entries appended in this context (an erasure that a withdrawal causes is
    an entry of its own action, beside the withdrawal's)."""
    entries: list[str] = []
    token = _written.set(entries)
    try:
        yield entries
    finally:
        _written.reset(token)


# Set while a batch defers its anchors (``AuditLog.anchoring_once``): True once an anchor was asked for.
_deferred: ContextVar[list[bool] | None] = ContextVar("facekeeper_audit_deferred", default=None)


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
        """The entry's MAC over the previous MAC and every column of the row (``_COLUMNS`` but ``mac``)."""
        body = json.dumps(list(row), separators=(",", ":"), ensure_ascii=False).encode()
        return hmac.new(self._key, prev.encode() + b"|" + body, sha256).hexdigest()

    def _head_record(self, seq: int, mac: str) -> dict[str, Any]:
        """A head (seq, MAC of entry seq) tagged with the key: only a head this deployment wrote carries it."""
        tag = hmac.new(self._key, f"head|{self._deployment_id}|{seq}|{mac}".encode(), sha256).hexdigest()
        return {"deployment_id": self._deployment_id, "seq": seq, "mac": mac, "tag": tag}

    def _parse_head(self, text: str | None) -> tuple[int, str] | None:
        """(seq, mac) of a head record; None if absent; (-1, "") if unreadable, foreign or untagged."""
        if text is None:
            return None
        try:
            data = json.loads(text)
            seq, mac = int(data["seq"]), str(data["mac"])
            good = hmac.compare_digest(str(data.get("tag", "")), self._head_record(seq, mac)["tag"])
        except (ValueError, TypeError, KeyError):
            return (-1, "")
        return (seq, mac) if good else (-1, "")

    def start(self, now: float) -> None:
        """Begin a new deployment's chain with entry 1, once; adopt a chain written before head records.

        Only a deployment that holds nothing yet starts afresh: on one that holds people, subjects or
        consents, an empty chain without head records is what an attacker left, and stays a break.
        """
        if self.store.get_meta(HEAD_META) is not None:
            return
        with self.store.transaction() as db:
            if db.execute("SELECT value FROM meta WHERE key = ?", (HEAD_META,)).fetchone() is not None:
                return
            last = db.execute("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            anchor = self._read_anchor(legacy=True)
            if last is None:
                used = any(db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()
                           for t in ("people", "consents", "subjects"))
                if used or anchor is not None:
                    return
                self.append(db, Actor("facekeeper", "admin"), START_ACTION, "ok", at=now,
                            detail={"deployment_id": self._deployment_id})
            elif anchor is not None and 0 <= anchor[0] <= int(last[0]):  # a chain older than head records
                self._write_head(db, int(last[0]), str(last[1]))
            else:
                return
        self.anchor(retag=True)

    def _write_head(self, db: Connection, seq: int, mac: str) -> None:
        db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                   (HEAD_META, json.dumps(self._head_record(seq, mac))))

    def append(self, db: Connection, actor: Actor, action: str, outcome: str, *, at: float,
               purpose: str | None = None, subject: str | None = None, bucket: str | None = None,
               detail: dict[str, Any] | None = None) -> int:
        """Add one entry inside the caller's transaction (so it commits or rolls back with the change)."""
        detail_text = _check_detail(detail or {})
        last = db.execute("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (1, self._genesis) if last is None else (int(last[0]) + 1, str(last[1]))
        row = (seq, float(at), actor.id, actor.role, actor.tenant, purpose, action, subject, outcome, bucket,
               detail_text)
        mac = self._mac(prev, row)
        db.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, mac))
        self._write_head(db, seq, mac)
        written = _written.get()
        if written is not None:
            written.append(action)
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

    def anchor(self, *, retag: bool = False) -> None:
        """Copy the committed head (seq, MAC) to the key directory; call after every commit that audits.

        Never moves backwards, so concurrent writers can call it in any order. ``retag`` rewrites an
        anchor at the head that was written before anchors were tagged.
        """
        pending = _deferred.get()
        if pending is not None and not retag:
            pending.append(True)
            return
        row = self.store.db.execute("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return
        seq, mac = int(row[0]), str(row[1])
        self.anchor_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = self._read_anchor(legacy=retag)
            if current is not None and (current[0] > seq or (current[0] == seq and not retag)):
                return
            tmp = self.anchor_path.with_suffix(".tmp")
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(out, "w") as fh:
                json.dump(self._head_record(seq, mac), fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.anchor_path)
        finally:
            os.close(fd)

    @contextmanager
    def anchoring_once(self) -> Iterator[None]:
        """Anchor once when the block ends (even by an error) instead of after each of its commits.

        For a batch of operations in this thread (enroll-dir's consents): every entry and head record is
        still written in its own transaction, and an anchor that lags the head is no break (``verify``), so
        a crash inside the block loses no entry; it saves an fsync'd file write per operation.
        """
        if _deferred.get() is not None:
            yield
            return
        pending: list[bool] = []
        token = _deferred.set(pending)
        try:
            yield
        finally:
            _deferred.reset(token)
            if pending:
                self.anchor()

    def _read_anchor(self, *, legacy: bool = False) -> tuple[int, str] | None:
        """The anchor's (seq, mac); ``legacy`` also reads an untagged one (to be retagged at start)."""
        try:
            text = self.anchor_path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return (-1, "")
        parsed = self._parse_head(text)
        if parsed == (-1, "") and legacy:
            try:
                data = json.loads(text)
                if data.get("deployment_id") == self._deployment_id and "tag" not in data:
                    return int(data["seq"]), str(data["mac"])
            except (ValueError, TypeError, KeyError, AttributeError):
                pass
        return parsed

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
        """Recompute every MAC from the first entry on, then hold the end against both head records."""
        started = time.perf_counter()
        # both read before the chain: neither is ever ahead of what is committed
        anchor = self._read_anchor()
        head = self._parse_head(self.store.get_meta(HEAD_META))
        prev, expected, n = self._genesis, 1, 0
        macs: dict[int, str] = {}
        marks = {r[0] for r in (anchor, head) if r is not None}

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
            if seq in marks:
                macs[seq] = prev
            expected += 1
            n += 1
        if n == 0:
            return report(False, 1, "the chain is empty: every deployment's chain starts with entry 1")
        for record, where in ((head, "the head record in the gallery"), (anchor, "the anchor in the key directory")):
            if record is None:
                return report(False, None, f"{where} is missing: the chain's end cannot be checked")
            if record[0] < 0:
                return report(False, None, f"{where} is unreadable, untagged or from another deployment")
            if record[0] >= expected:
                return report(False, expected, f"entries {expected} to {record[0]} were removed from the end"
                                                f" ({where} has seen them)")
            if not hmac.compare_digest(macs.get(record[0], ""), record[1]):
                return report(False, record[0], f"entry {record[0]} does not match {where}")
        return report(True, None, None)


def _entry(r: tuple[Any, ...]) -> AuditEntry:
    return AuditEntry(int(r[0]), float(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], json.loads(r[10]),
                      r[11])
