"""When data is due for erasure, per consent: the earliest of three dates.

1. the consent's own expiry;
2. ``idle_days`` (default 3 years) after the last use for the purpose: the enrollment or the last
   successful match, or the consent itself when neither happened since;
3. ``max_retention_days`` after the consent was given: the purpose's ceiling, whatever the use.

A consent for a purpose the configuration no longer declares is due at once. When a person has no live
consent left, their templates are due; when they also hold no credential, the person is forgotten.
``plan`` only reads; ``Privacy.sweep`` carries the plan out, re-checking each step in its transaction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from facekeeper.config import Settings
from facekeeper.privacy.consent import Consent, ConsentLedger
from facekeeper.privacy.credentials import Credentials
from facekeeper.privacy.registry import Registry
from facekeeper.privacy.schema import DAY


@dataclass(frozen=True)
class Due:
    """One thing the sweep erases: a consent ending, a face erased, a credential dropped, a person forgotten."""

    kind: str  # "consent" | "face" | "credential" | "person"
    pseudonym: str
    reason: str
    due_at: float
    purpose: str | None = None
    ref: str | None = None  # consent or credential id

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def last_used(ledger: ConsentLedger, pseudonym: str, purpose: str) -> float | None:
    row = ledger.store.db.execute("SELECT last_used_at FROM usage WHERE pseudonym = ? AND purpose = ?",
                                  (pseudonym, purpose)).fetchone()
    return None if row is None else float(row[0])


def consent_due(settings: Settings, ledger: ConsentLedger, consent: Consent) -> tuple[float, str]:
    """When ``consent`` stops allowing use, and why."""
    ps = settings.purposes.get(consent.purpose)
    if ps is None:
        return consent.granted_at, "purpose-not-declared"
    used = last_used(ledger, consent.pseudonym, consent.purpose)
    base = max(consent.granted_at, used) if used is not None else consent.granted_at
    candidates = [
        (consent.expires_at, "consent-expired"),
        (base + ps.idle_days * DAY, "unused"),
        (consent.granted_at + ps.max_retention_days * DAY, "max-retention"),
    ]
    return min(candidates)


def plan(settings: Settings, registry: Registry, ledger: ConsentLedger, credentials: Credentials,
         now: float, horizon: float = 0.0) -> list[Due]:
    """Everything due by ``now + horizon`` (``horizon`` > 0 previews what later sweeps will erase)."""
    until = now + horizon
    out: list[Due] = []
    ending: set[str] = set()
    for c in ledger.open_consents():
        due_at, reason = consent_due(settings, ledger, c)
        if due_at <= until:
            out.append(Due("consent", c.pseudonym, reason, due_at, c.purpose, c.id))
            ending.add(c.id)
    dropped: set[str] = set()
    for cred in credentials.expired(until):
        out.append(Due("credential", cred.pseudonym, "credential-expired", cred.expires_at or now, cred.purpose,
                       cred.id))
        dropped.add(cred.id)
    enrolled = {p for p, _ in ledger.store.subjects()}
    people = set(registry.people())
    for pseudonym in sorted(enrolled | people):
        remaining = [c for c in ledger.open_consents_of(pseudonym) if c.id not in ending and c.live(until)]
        if remaining:
            continue
        if pseudonym in enrolled:
            out.append(Due("face", pseudonym, "no-live-consent", until))
        holds = [k for k in credentials.of_subject(pseudonym) if k.id not in dropped
                 and (k.expires_at is None or k.expires_at > until)]
        if pseudonym in people and not holds:
            out.append(Due("person", pseudonym, "nothing-left", until))
    return out
