"""The consent ledger: one consent per subject and purpose, with the evidence a regulator asks for.

A consent records the notice version the person was shown, who collected it, how (signature, checkbox,
paper form), when, until when, and for a person under the guardian age the guardian's record. The
evidence reference and the guardian record are sealed under the person's privacy key (see ``registry``).
It also records whether the person allowed templates of a newer model to be added from later matches
(``template_updates``, default no): moving a site to a new model without photos needs that permission.

A consent is *live* at time t when it has not ended (withdrawn, renewed, swept, erased) and
``granted_at <= t < expires_at``. Only live consents let templates be stored or matched for a purpose.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Any

from facekeeper.db.database import Connection
from facekeeper.errors import ConsentRequired, InvalidInput
from facekeeper.gallery.store import Store
from facekeeper.privacy.registry import Registry

METHODS = ("signature", "checkbox", "paper")
# No consent outlives its subject; a date past it is a typo (or year 10000, which no export can print).
MAX_CONSENT_YEARS = 100
_MAX_CONSENT_SECONDS = MAX_CONSENT_YEARS * 365.25 * 86400
_COLUMNS = ("id, pseudonym, purpose, notice_version, collected_by, method, granted_at, expires_at, minor, sealed,"
            " ended_at, end_reason, ended_by, template_updates")
_LIVE = "ended_at IS NULL AND granted_at <= ? AND expires_at > ?"
_LIVE_C = "c.ended_at IS NULL AND c.granted_at <= ? AND c.expires_at > ?"


def check_expiry(expires_at: float, now: float) -> None:
    """A consent expires after it is given and at most ``MAX_CONSENT_YEARS`` later."""
    if not now < expires_at <= now + _MAX_CONSENT_SECONDS:
        raise InvalidInput(f"a consent must expire after it is given and within {MAX_CONSENT_YEARS} years")


@dataclass(frozen=True)
class Guardian:
    """Who consented for a minor: relationship (parent, legal guardian), and how it was verified."""

    relationship: str
    reference: str  # the signed form, the ID checked: a reference, not a copy
    name: str | None = None


@dataclass(frozen=True)
class ConsentForm:
    """A consent as collected (kiosk checkbox, signed form): what the operator records for the person."""

    method: str
    evidence: str  # form number, signature file, checkbox record: a reference, not a copy
    expires_at: float | None = None  # default: the purpose's maximum retention from now
    minor: bool = False
    guardian: Guardian | None = None
    collected_by: str | None = None  # default: the actor recording it
    age: int | None = None  # stated age in years when consenting: under ``privacy.guardian_age`` is a minor
    # the person allows the new model's template to be added from a later match (no new photo is taken)
    template_updates: bool = False


@dataclass(frozen=True)
class Consent:
    id: str
    pseudonym: str
    purpose: str
    notice_version: str
    collected_by: str
    method: str
    granted_at: float
    expires_at: float
    minor: bool
    sealed: bytes | None
    ended_at: float | None
    end_reason: str | None
    ended_by: str | None
    template_updates: bool = False  # templates of a newer model may be added from later matches

    def live(self, now: float) -> bool:
        return self.ended_at is None and self.granted_at <= now < self.expires_at

    def status(self, now: float) -> str:
        if self.end_reason is not None:
            return self.end_reason
        if now >= self.expires_at:
            return "expired"
        return "live" if now >= self.granted_at else "pending"

    def to_dict(self, now: float) -> dict[str, Any]:
        """Without the sealed evidence (see ``ConsentLedger.evidence``)."""
        d = asdict(self)
        d.pop("sealed")
        d["status"] = self.status(now)
        return d


class ConsentLedger:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry

    def grant(self, db: Connection, pseudonym: str, purpose: str, *, notice_version: str,
              collected_by: str, method: str, evidence: str, granted_at: float, expires_at: float,
              minor: bool = False, guardian: Guardian | None = None, age: int | None = None,
              guardian_age: int = 14, template_updates: bool = False) -> tuple[Consent, Consent | None]:
        """Record a consent (inside the caller's transaction); a live one for the same purpose is renewed.

        A person whose stated ``age`` is under ``guardian_age`` is a minor, whatever ``minor`` says (the flag
        can only add protection), and a minor's consent needs the guardian's record. The age itself is not
        kept: only whether the person was a minor. A renewal records what the new form says, so a permission
        to add templates from matches is never carried over unasked. Returns the new consent and the one it
        replaced, if any.
        """
        if method not in METHODS:
            raise InvalidInput(f"consent method must be one of {', '.join(METHODS)}")
        if not evidence.strip() or len(evidence) > 500:
            raise InvalidInput("give the consent evidence: the form number, signature file or checkbox record")
        check_expiry(expires_at, granted_at)
        if age is not None:
            if isinstance(age, bool) or not 0 <= age <= 150:
                raise InvalidInput("the stated age must be a whole number of years from 0 to 150")
            minor = minor or age < guardian_age
        if minor and (guardian is None or not guardian.relationship.strip() or not guardian.reference.strip()):
            raise ConsentRequired("a subject under the guardian age needs a guardian's consent: give the guardian's"
                                  " relationship and a reference to the signed form")
        sealed = self.registry.seal(pseudonym, "consent", {
            "evidence": evidence, "guardian": asdict(guardian) if guardian else None})
        previous = self.live(pseudonym, purpose, granted_at, db)
        if previous is not None:
            db.execute("UPDATE consents SET ended_at = ?, end_reason = 'renewed', ended_by = ? WHERE id = ?",
                       (granted_at, collected_by, previous.id))
        cid = "c_" + secrets.token_hex(8)
        db.execute(f"INSERT INTO consents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
                   (cid, pseudonym, purpose, notice_version, collected_by, method, granted_at, expires_at,
                    int(minor), sealed, int(bool(template_updates))))
        _bump(db)
        return self.get(cid, db), previous

    def end(self, db: Connection, consent_id: str, reason: str, by: str, at: float) -> bool:
        """End one consent if it is still open; False when someone else ended it first (idempotent)."""
        ended = bool(db.execute(
            "UPDATE consents SET ended_at = ?, end_reason = ?, ended_by = ? WHERE id = ? AND ended_at IS NULL",
            (at, reason, by, consent_id)).rowcount)
        if ended:
            _bump(db)
        return ended

    def epoch(self) -> int:
        """A counter bumped by every consent change, in its transaction: what caches key on."""
        row = self.store.db.execute("SELECT value FROM meta WHERE key = 'consent_epoch'").fetchone()
        return 0 if row is None else int(row[0])

    def get(self, consent_id: str, db: Connection | None = None) -> Consent:
        row = (db or self.store.db).execute(f"SELECT {_COLUMNS} FROM consents WHERE id = ?",
                                            (consent_id,)).fetchone()
        if row is None:
            raise InvalidInput("no such consent")
        return _consent(row)

    def live(self, pseudonym: str, purpose: str, now: float, db: Connection | None = None) -> Consent | None:
        row = (db or self.store.db).execute(
            f"SELECT {_COLUMNS} FROM consents WHERE pseudonym = ? AND purpose = ? AND {_LIVE}"
            " ORDER BY granted_at DESC LIMIT 1", (pseudonym, purpose, now, now)).fetchone()
        return None if row is None else _consent(row)

    def require_live(self, pseudonym: str | None, purpose: str, now: float,
                     db: Connection | None = None) -> Consent:
        consent = None if pseudonym is None else self.live(pseudonym, purpose, now, db)
        if consent is None:
            raise ConsentRequired(f"no live consent for purpose {purpose}: record the person's consent first"
                                  " ('facekeeper consent grant')", purpose=purpose)
        return consent

    def allows_template_updates(self, pseudonym: str, purpose: str, now: float,
                                db: Connection | None = None) -> bool:
        """Whether the person's live consent for ``purpose`` lets a later match add a newer model's template."""
        consent = self.live(pseudonym, purpose, now, db)
        return consent is not None and consent.template_updates

    def live_purposes(self, pseudonym: str, now: float, db: Connection | None = None) -> list[str]:
        return [r[0] for r in (db or self.store.db).execute(
            f"SELECT DISTINCT purpose FROM consents WHERE pseudonym = ? AND {_LIVE} ORDER BY purpose",
            (pseudonym, now, now))]

    def open_consents(self, db: Connection | None = None) -> list[Consent]:
        """Consents not yet ended, live or past their expiry (what the sweep looks at)."""
        return [_consent(r) for r in (db or self.store.db).execute(
            f"SELECT {_COLUMNS} FROM consents WHERE ended_at IS NULL ORDER BY granted_at, id")]

    def open_consents_of(self, pseudonym: str) -> list[Consent]:
        return [_consent(r) for r in self.store.db.execute(
            f"SELECT {_COLUMNS} FROM consents WHERE pseudonym = ? AND ended_at IS NULL ORDER BY granted_at, id",
            (pseudonym,))]

    def of_subject(self, pseudonym: str) -> list[Consent]:
        return [_consent(r) for r in self.store.db.execute(
            f"SELECT {_COLUMNS} FROM consents WHERE pseudonym = ? ORDER BY granted_at, id", (pseudonym,))]

    def evidence(self, consent: Consent) -> dict[str, Any] | None:
        """The unsealed evidence and guardian record; None once the person is forgotten."""
        return self.registry.unseal(consent.pseudonym, "consent", consent.sealed)

    def allowed(self, purpose: str, now: float) -> list[str]:
        """Pseudonyms that hold templates and a live consent for ``purpose``: the only ones a search sees."""
        return [r[0] for r in self.store.db.execute(
            f"SELECT DISTINCT c.pseudonym FROM consents c JOIN subjects s ON s.pseudonym = c.pseudonym"
            f" WHERE c.purpose = ? AND {_LIVE_C} ORDER BY c.pseudonym",
            (purpose, now, now))]

    def next_expiry(self, purpose: str, now: float) -> float | None:
        """When the next live consent for ``purpose`` expires (the allowed set changes then)."""
        row = self.store.db.execute(f"SELECT min(expires_at) FROM consents WHERE purpose = ? AND {_LIVE}",
                                    (purpose, now, now)).fetchone()
        return None if row[0] is None else float(row[0])

    def next_start(self, purpose: str, now: float) -> float | None:
        row = self.store.db.execute(
            "SELECT min(granted_at) FROM consents WHERE purpose = ? AND ended_at IS NULL AND granted_at > ?",
            (purpose, now)).fetchone()
        return None if row[0] is None else float(row[0])

    def expiring(self, now: float, within: float) -> list[Consent]:
        return [_consent(r) for r in self.store.db.execute(
            f"SELECT {_COLUMNS} FROM consents WHERE {_LIVE} AND expires_at <= ? ORDER BY expires_at",
            (now, now, now + within))]


def _bump(db: Connection) -> None:
    db.execute("INSERT INTO meta VALUES ('consent_epoch', '1') ON CONFLICT(key) DO UPDATE"
               " SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)")


def _consent(r: tuple[Any, ...]) -> Consent:
    return Consent(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), float(r[6]), float(r[7]),
                   bool(r[8]), r[9], None if r[10] is None else float(r[10]), r[11], r[12], bool(r[13]))
