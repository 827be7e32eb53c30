"""The subject access request: everything held about one person, as JSON, without the templates.

Templates are left out on purpose: they are encrypted vectors, meaningless outside this deployment, and
handing them out would create exactly the portable biometric the design avoids. Their count, model and
creation dates are given instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from facekeeper.errors import UnknownSubject
from facekeeper.gallery.gallery import normal_subject_id
from facekeeper.privacy import retention
from facekeeper.privacy.core import Privacy
from facekeeper.privacy.policy import Actor

SUBJECT_ACCESS = "facekeeper.subject-access/v1"


def subject_access(privacy: Privacy, actor: Actor, subject_id: str) -> dict[str, Any]:
    subject_id = normal_subject_id(subject_id)
    with privacy.operation(actor, "subject.export") as op:
        now = op.now
        pseudonym = privacy.registry.find(subject_id) or privacy.gallery.find(subject_id)
        if pseudonym is None:
            raise UnknownSubject(f"no subject '{subject_id}' is known here: nothing is held about them")
        op.subject = pseudonym
        face: dict[str, Any] = {"enrolled": False, "templates": 0}
        if privacy.store.subject_exists(pseudonym):
            info = privacy.gallery.subject(pseudonym)
            rows = privacy.store.templates_of(pseudonym)
            face = {"enrolled": True, "templates": info.templates, "display_name": info.name,
                    "enrolled_at": iso(info.created_at), "template_dates": [iso(t) for t in info.template_dates],
                    "models": sorted({r.model_id for r in rows}),
                    # accurate-mode purposes keep a FaceNet template beside each dlib one: both are held
                    "templates_by_model": {m: sum(r.model_id == m for r in rows) for m in sorted({r.model_id
                                                                                                 for r in rows})},
                    "protection": "rotated by a deployment secret, AES-256-GCM under this person's own key"}
        consents = []
        for c in privacy.ledger.of_subject(pseudonym):
            d = c.to_dict(now)
            for key in ("granted_at", "expires_at", "ended_at"):
                d[key] = _iso_or_none(d[key])
            d["evidence"] = privacy.ledger.evidence(c)
            if c.live(now):
                due_at, reason = retention.consent_due(privacy.settings, privacy.ledger, c)
                d["erased_by"] = {"date": iso(due_at), "rule": reason}
            consents.append(d)
        usage = [{"purpose": p, "last_used_at": iso(t)} for p, t in privacy.store.db.execute(
            "SELECT purpose, last_used_at FROM usage WHERE pseudonym = ? ORDER BY purpose", (pseudonym,))]
        credentials = [{k: v for k, v in c.to_dict().items() if k != "pseudonym"}
                       for c in privacy.credentials.of_subject(pseudonym)]
        audit = [{**e.to_dict(), "at": iso(e.at)} for e in privacy.audit.entries(subject=pseudonym)]
        n = privacy.settings.notice
        data = {
            "type": SUBJECT_ACCESS,
            "generated_at": iso(now),
            "controller": n.controller,
            "contact": n.contact,
            "subject": {"subject_id": subject_id, "pseudonym": pseudonym,
                        "known_since": _iso_or_none(privacy.registry.created_at(pseudonym))},
            "face": face,
            "consents": consents,
            "credentials": credentials,
            "usage": usage,
            "audit": audit,
            "rights": n.rights,
            "not_included": "the templates themselves: encrypted, useless outside this deployment, never exported",
        }
        privacy.record(op, "ok", detail={"consents": len(consents), "audit_entries": len(audit)})
        return data


def iso(ts: float) -> str:
    """A UTC time; one no calendar date can hold (an expiry past 9999 recorded before expiries were bounded)
    is said in words, so the person still gets everything else that is held about them."""
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        return "after 9999-12-31T23:59:59Z" if ts > 0 else "before 0001-01-01T00:00:00Z"


def _iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)
