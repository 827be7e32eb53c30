"""Who still lacks a model's template: the progress report of moving a site to a new model without photos.

Per purpose, among the people it may match (enrolled, with a live consent for it), and per model (the
gallery's primary model and each ``[engine] side_models``): how many hold a template of it, how many lack one,
and which. An admin is told subject ids, to invite those people to enroll again; an auditor only pseudonyms,
as in the audit chain. ``update_allowed`` counts the people lacking a template whose consent lets a later match
add it: the others need a new consent or a new photo. Counts and names only, never a template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from facekeeper.privacy.core import Privacy


@dataclass(frozen=True)
class ModelCoverage:
    model_id: str
    have: int
    lack: int
    update_allowed: int  # of those lacking, whose consent allows a template from a later match
    lacking: tuple[str, ...]  # subject ids (admin) or pseudonyms (auditor), sorted; cut at the report's limit

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "have": self.have, "lack": self.lack,
                "update_allowed": self.update_allowed, "lacking": list(self.lacking)}


@dataclass(frozen=True)
class PurposeCoverage:
    purpose: str
    template_update: str  # the purpose's setting: "off" or "on-match"
    subjects: int
    models: tuple[ModelCoverage, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"purpose": self.purpose, "template_update": self.template_update, "subjects": self.subjects,
                "models": [m.to_dict() for m in self.models]}


@dataclass(frozen=True)
class CoverageReport:
    identified_by: str  # "subject_id" or "pseudonym": what the ``lacking`` lists hold
    enrolled: int
    purposes: tuple[PurposeCoverage, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"identified_by": self.identified_by, "enrolled": self.enrolled,
                "purposes": [p.to_dict() for p in self.purposes]}


def report(privacy: Privacy, purposes: Sequence[str], models: Sequence[str], now: float, *, subject_ids: bool,
           limit: int | None = None) -> CoverageReport:
    """The coverage of ``models`` for each of ``purposes`` at ``now``; ``subject_ids`` names people by their
    subject id (unsealed), else by pseudonym; ``limit`` cuts each ``lacking`` list (the counts stay whole)."""
    held = privacy.gallery.models_held()
    names: dict[str, str] = {}

    def name(pseudonym: str) -> str:
        if not subject_ids:
            return pseudonym
        if pseudonym not in names:
            names[pseudonym] = privacy.gallery.identity(pseudonym)[0]
        return names[pseudonym]

    out = []
    for purpose in purposes:
        people = privacy.ledger.allowed(purpose, now)
        rows = []
        for model in models:
            missing = [p for p in people if model not in held.get(p, set())]
            allowed = sum(privacy.ledger.allows_template_updates(p, purpose, now) for p in missing)
            shown = sorted(name(p) for p in missing)
            rows.append(ModelCoverage(model, len(people) - len(missing), len(missing), allowed,
                                      tuple(shown if limit is None else shown[:limit])))
        out.append(PurposeCoverage(purpose, privacy.settings.purposes[purpose].template_update, len(people),
                                   tuple(rows)))
    return CoverageReport("subject_id" if subject_ids else "pseudonym", len(held), tuple(out))
