"""The subject list as an operator reads it: each person, their consents' states and the date retention will
erase the face, built in one pass so one audited ``subject.list`` call answers the whole page.

Only what the subject list and the consent listing already show: ids, pseudonyms, template counts, purposes,
states and dates; never a template, the consent evidence or a guardian's record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from facekeeper.errors import InvalidInput
from facekeeper.gallery.gallery import SubjectInfo
from facekeeper.privacy.core import Privacy
from facekeeper.privacy.retention import consent_due


@dataclass(frozen=True)
class ConsentState:
    """One consent of a listed person: its state, and for a live one when (and by which rule) it ends."""

    purpose: str
    status: str  # live, pending, expired, or the reason it ended (withdrawn, erased, ...)
    expires_at: float
    due_at: float | None  # live only: the earliest of its expiry, the idle limit and the purpose's ceiling
    due_rule: str | None


@dataclass(frozen=True)
class SubjectRow:
    info: SubjectInfo
    consents: tuple[ConsentState, ...]

    @property
    def erased_by(self) -> float | None:
        """When retention erases the face unless a consent is renewed: once the last live consent ends."""
        due = [c.due_at for c in self.consents if c.due_at is not None]
        return max(due) if due else None


@dataclass(frozen=True)
class SubjectsOverview:
    total: int  # everyone enrolled; ``rows`` holds the first ``limit`` of them
    rows: tuple[SubjectRow, ...]


def subjects_overview(privacy: Privacy, people: Sequence[SubjectInfo], now: float,
                      limit: int | None = None) -> SubjectsOverview:
    """``people`` (the gallery's subjects) with their consent states, the first ``limit`` of them."""
    if limit is not None and limit < 1:
        raise InvalidInput("a subject list's limit is a positive number of people")
    rows = []
    for info in people[:limit]:
        states = []
        for c in privacy.ledger.of_subject(info.pseudonym):
            live = c.live(now)
            due_at, rule = consent_due(privacy.settings, privacy.ledger, c) if live else (None, None)
            states.append(ConsentState(c.purpose, c.status(now), c.expires_at, due_at, rule))
        rows.append(SubjectRow(info, tuple(states)))
    return SubjectsOverview(len(people), tuple(rows))
