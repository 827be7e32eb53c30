"""Liveness sessions: a nonce and a random challenge, answered once, consumed once.

A terminal asks for a session for a purpose (and, when it knows it, the person): the server draws a
challenge of two or three different actions and a nonce, valid ``SESSION_TTL_S``. The terminal shows each
action in turn (``rules.WINDOW_PER_STEP_S`` apart), records, and sends the frames with the nonce. The
server decides ``live``, ``spoof`` or ``uncertain``. A ``live`` session may then be consumed, once, within
``LIVE_TTL_S``, by a verify or identify of the same purpose whose probe is the face of the session's frames.

Sessions live in the tenant's database (a table beside the gallery's), so any worker process of the HTTP
service can answer or consume them. A session keeps the challenge, the decision and its reasons; of the
frames it keeps only two descriptors (the first and last described frames), sealed with AES-GCM under a key
derived from the deployment key and bound to the session's id, and wiped when the session is consumed.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
from dataclasses import dataclass

import numpy as np

from facekeeper.db.database import Connection
from facekeeper.errors import InvalidInput, LivenessAttempts, LivenessRequired
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.gallery.protect import SealError, open_sealed, seal, vector_from_bytes, vector_to_bytes
from facekeeper.gallery.store import Store
from facekeeper.liveness.rules import ACTIONS, SAME_PERSON, Action, Decision

SESSION_TTL_S = 60.0  # seconds to answer a challenge once it is shown
LIVE_TTL_S = 60.0  # seconds a live result may wait for the verify or identify that consumes it
ATTEMPT_WINDOW_S = 15 * 60.0  # attempts that were not live are counted over this long ...
MAX_FAILED_PER_DEVICE = 5  # ... and a device that reached this many is refused new sessions until they age
MAX_FAILED_PER_SUBJECT = 3  # ... as is a person (from any device): a replay needs many tries (docs/liveness.md)
MAX_OPEN_PER_DEVICE = 3  # unanswered sessions one device may hold at once

SCHEMA = """
CREATE TABLE IF NOT EXISTS liveness_sessions (
    id TEXT PRIMARY KEY,
    nonce_mac TEXT NOT NULL,                 -- keyed hash of the nonce: the nonce itself is not kept
    purpose TEXT NOT NULL,
    subject TEXT,                            -- pseudonym, when the session was started for a person
    device TEXT NOT NULL,                    -- tenant/actor id of the terminal that started it
    challenge TEXT NOT NULL,                 -- JSON list of actions
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL,                     -- open | live | spoof | uncertain | consumed
    decided_at REAL,
    reasons TEXT,                            -- JSON: the decision's reason codes
    sealed TEXT                              -- hex: sealed first and last descriptors; NULL once consumed
)
"""


def challenges(steps: int) -> list[tuple[Action, ...]]:
    """Every challenge of ``steps`` different actions: 6 of two steps, 6 of three. No action repeats, so none
    reads the same backwards and a recording played in reverse answers none of them."""
    return list(itertools.permutations(ACTIONS, steps))


def draw(steps: int | None = None) -> tuple[Action, ...]:
    """A challenge drawn with the system's CSPRNG: two or three steps (each equally likely when not given)."""
    n = steps or secrets.choice((2, 3))
    if n not in (2, 3):
        raise InvalidInput("a challenge has 2 or 3 steps")
    return secrets.choice(challenges(n))


@dataclass(frozen=True)
class Session:
    id: str
    purpose: str
    subject: str | None
    device: str
    challenge: list[Action]
    created_at: float
    expires_at: float
    state: str
    decided_at: float | None
    reasons: list[str]
    sealed: str | None


SESSION_COLUMNS = ("id, purpose, subject, device, challenge, created_at, expires_at, state, decided_at, reasons,"
                   " sealed")


class Sessions:
    """The session table of one tenant's store; every method takes the time from the caller."""

    def __init__(self, store: Store, key: DeploymentKey) -> None:
        self.store = store
        self._seal_key = key.derive("liveness-session-seal")
        self._mac_key = key.derive("liveness-session-nonce")
        with store.transaction() as db:
            db.execute(SCHEMA)

    def _mac(self, session_id: str, nonce: str) -> str:
        return hmac.new(self._mac_key, f"{session_id}\n{nonce}".encode(), hashlib.sha256).hexdigest()

    def open(self, db: Connection, *, purpose: str, subject: str | None, device: str, challenge: tuple[Action, ...],
             now: float) -> tuple[str, str]:
        """A new session's id and nonce, after the attempt limits; refused with ``LivenessAttempts``."""
        since = now - ATTEMPT_WINDOW_S
        failed = db.execute("SELECT COUNT(*) FROM liveness_sessions WHERE device = ? AND decided_at >= ?"
                            " AND state IN ('spoof', 'uncertain')", (device, since)).fetchone()[0]
        if failed >= MAX_FAILED_PER_DEVICE:
            raise LivenessAttempts(f"{failed} liveness attempts from this terminal were not live in the last"
                                   f" {ATTEMPT_WINDOW_S / 60:.0f} minutes: wait, or use the non-face alternative",
                                   retry_after=int(ATTEMPT_WINDOW_S))
        if subject is not None:
            failed = db.execute("SELECT COUNT(*) FROM liveness_sessions WHERE subject = ? AND decided_at >= ?"
                                " AND state IN ('spoof', 'uncertain')", (subject, since)).fetchone()[0]
            if failed >= MAX_FAILED_PER_SUBJECT:
                raise LivenessAttempts(f"{failed} liveness attempts for this person were not live in the last"
                                       f" {ATTEMPT_WINDOW_S / 60:.0f} minutes: wait, or use the non-face"
                                       " alternative", retry_after=int(ATTEMPT_WINDOW_S))
        pending = db.execute("SELECT COUNT(*) FROM liveness_sessions WHERE device = ? AND state = 'open'"
                             " AND expires_at > ?", (device, now)).fetchone()[0]
        if pending >= MAX_OPEN_PER_DEVICE:
            raise LivenessAttempts(f"this terminal already has {pending} unanswered liveness sessions: answer or"
                                   f" let them expire ({SESSION_TTL_S:.0f} s)", retry_after=int(SESSION_TTL_S))
        session_id, nonce = "ls_" + secrets.token_hex(12), secrets.token_urlsafe(24)
        db.execute("INSERT INTO liveness_sessions (id, nonce_mac, purpose, subject, device, challenge, created_at,"
                   " expires_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open')",
                   (session_id, self._mac(session_id, nonce), purpose, subject, device, json.dumps(list(challenge)),
                    now, now + SESSION_TTL_S))
        return session_id, nonce

    def get(self, session_id: str, db: Connection | None = None) -> Session:
        if not isinstance(session_id, str) or not session_id.startswith("ls_") or len(session_id) > 40:
            raise LivenessRequired("not a liveness session id: start a session with liveness_start")
        query = f"SELECT {SESSION_COLUMNS} FROM liveness_sessions WHERE id = ?"
        row = (db.execute(query, (session_id,)) if db is not None
               else self.store.db.execute(query, (session_id,))).fetchone()
        if row is None:
            raise LivenessRequired("no such liveness session: start one with liveness_start")
        return Session(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7], row[8],
                       json.loads(row[9]) if row[9] else [], row[10])

    def check_answerable(self, session: Session, nonce: str, now: float) -> None:
        """The session may be answered now, with its nonce (else nothing is decoded). The nonce, given only to
        the terminal that started the session, is what binds the answer to it."""
        if not hmac.compare_digest(self._mac(session.id, str(nonce)), self._get_mac(session.id)):
            raise LivenessRequired("the nonce does not belong to this liveness session")
        if session.state != "open":
            raise LivenessRequired(f"this liveness session was already answered ({session.state}): start another")
        if now > session.expires_at:
            raise LivenessRequired(f"this liveness session expired ({SESSION_TTL_S:.0f} s to answer): start another")

    def _get_mac(self, session_id: str) -> str:
        row = self.store.db.execute("SELECT nonce_mac FROM liveness_sessions WHERE id = ?", (session_id,)).fetchone()
        return str(row[0]) if row else ""

    def decide(self, db: Connection, session: Session, decision: Decision, references: list[np.ndarray],
               now: float) -> None:
        """Record the decision; a live one keeps the sealed reference descriptors until it is consumed."""
        sealed = None
        if decision.live and references:
            blob = b"".join(vector_to_bytes(r) for r in references)
            sealed = seal(self._seal_key, blob, session.id.encode()).hex()
        changed = db.execute("UPDATE liveness_sessions SET state = ?, decided_at = ?, reasons = ?, sealed = ?"
                             " WHERE id = ? AND state = 'open'",
                             (decision.outcome, now, json.dumps(decision.reasons), sealed, session.id))
        if getattr(changed, "rowcount", 1) == 0:
            raise LivenessRequired("this liveness session was answered meanwhile: start another")

    def consume(self, db: Connection, session_id: str, *, purpose: str, subject: str | None,
                probe: np.ndarray, now: float) -> Session:
        """Use a live session once, for ``purpose`` (and ``subject``, when the session named one), with a probe
        whose face is within ``SAME_PERSON`` of the session's first and last frames. Any failure consumes
        nothing except a face that does not match, which ends the session (no second try with it)."""
        session = self.get(session_id, db)
        if session.state == "consumed":
            raise LivenessRequired("this liveness session was already used: start another")
        if session.state != "live":
            raise LivenessRequired(f"this liveness session is not live ({session.state}): start another")
        if session.purpose != purpose:
            raise LivenessRequired(f"this liveness session was for {session.purpose}, not {purpose}")
        if session.decided_at is None or now > session.decided_at + LIVE_TTL_S:
            raise LivenessRequired(f"this liveness session's result expired ({LIVE_TTL_S:.0f} s): start another")
        if session.subject is not None and subject is not None and session.subject != subject:
            raise LivenessRequired("this liveness session was started for another person")
        references = self._references(session)
        changed = db.execute("UPDATE liveness_sessions SET state = 'consumed', sealed = NULL WHERE id = ?"
                             " AND state = 'live'", (session.id,))
        if getattr(changed, "rowcount", 1) == 0:
            raise LivenessRequired("this liveness session was already used: start another")
        far = max(float(np.linalg.norm(np.asarray(probe, np.float32) - r)) for r in references)
        if far > SAME_PERSON:
            raise LivenessRequired("the face in this photo is not the face of the liveness session's frames")
        return session

    def _references(self, session: Session) -> list[np.ndarray]:
        if not session.sealed:
            raise LivenessRequired("this liveness session holds no face: start another")
        try:
            blob = open_sealed(self._seal_key, bytes.fromhex(session.sealed), session.id.encode())
        except (SealError, ValueError):
            raise LivenessRequired("this liveness session's record does not open: start another") from None
        out, offset = [], 0
        while offset < len(blob):
            n = int.from_bytes(blob[offset:offset + 2], "little")
            out.append(vector_from_bytes(blob[offset:offset + 2 + 4 * n]))
            offset += 2 + 4 * n
        return out

    def expire(self, db: Connection, now: float) -> int:
        """Wipe what expired sessions hold (their descriptors); the rows stay for the attempt counts."""
        changed = db.execute("UPDATE liveness_sessions SET sealed = NULL WHERE sealed IS NOT NULL AND"
                             " decided_at < ?", (now - LIVE_TTL_S,))
        return int(getattr(changed, "rowcount", 0) or 0)
