"""Who may do what, for which purpose: the checks every service operation passes before any work.

An operation is allowed when the actor's role permits the action, the purpose is declared and permits
the operation, and (for anything that creates biometric data) the privacy notice is complete. Consent is
checked by the ledger, per subject and purpose, in the same transaction as the write it guards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from facekeeper.config import CONFIG_NAME, PurposeSettings, Settings
from facekeeper.errors import Forbidden, InvalidInput, NoticeIncomplete, PurposeError

ROLES = ("admin", "operator", "device", "auditor")

# The device at the gate matches and checks credentials; it never enrolls, erases or reads the audit.
# The auditor reads the audit, the compliance report, the license and the metrics; it never sees or changes
# subjects. Only an admin installs a license or manages API keys (``*``).
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"*"}),
    "operator": frozenset({
        "enroll", "verify", "identify", "consent.grant", "consent.withdraw", "consent.list", "subject.erase",
        "subject.export", "subject.list", "credential.issue", "credential.revoke", "credential.check",
        "sweep", "compliance.report", "detect", "liveness.start", "liveness.submit",
    }),
    # gate.decide: a door decision of gate mode (a face pass or a PIN at the door), one audit entry each
    # liveness.start/submit: a till or cash machine runs a challenge-response session before verify
    "device": frozenset({"verify", "identify", "credential.check", "detect", "gate.decide", "liveness.start",
                         "liveness.submit"}),
    # calibration.status: the thresholds in force, where they were measured, the last eval (aggregates only)
    # templates.coverage: who still lacks a new model's template, by pseudonym (an admin sees subject ids)
    "auditor": frozenset({"audit.verify", "audit.export", "compliance.report", "receipt.verify", "license.status",
                          "metrics.read", "calibration.status", "templates.coverage"}),
}


@dataclass(frozen=True)
class Actor:
    """Who asks: an operator, an admin, a gate device or an auditor, within one tenant."""

    id: str
    role: str = "admin"
    tenant: str = "default"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        for value in (self.id, self.tenant):
            if not value or len(value) > 100 or not value.isprintable():
                raise InvalidInput("actor id and tenant must be 1-100 printable characters")


def may(role: str, action: str) -> bool:
    allowed = PERMISSIONS.get(role, frozenset())
    return "*" in allowed or action in allowed


def require_role(actor: Actor, action: str) -> None:
    if not may(actor.role, action):
        raise Forbidden(f"the {actor.role} role may not {action}", action=action, role=actor.role)


def purpose(settings: Settings, name: str | None, operation: str | None = None) -> tuple[str, PurposeSettings]:
    """The declared purpose ``name`` (the configured default when None), checked to allow ``operation``."""
    name = name or settings.privacy.default_purpose
    ps = settings.purposes.get(name)
    if ps is None:
        raise PurposeError(f"unknown purpose {name!r}: declared purposes are {', '.join(sorted(settings.purposes))}",
                           purpose=name)
    if operation is not None and operation in ("enroll", "verify", "identify") and operation not in ps.operations:
        raise PurposeError(f"purpose {name} does not allow {operation}", purpose=name, operation=operation)
    return name, ps


NOTICE_FIELDS = ("version", "controller", "contact", "retention", "rights")


def missing_notice_fields(settings: Settings, purpose_name: str) -> list[str]:
    missing = [f"notice.{f}" for f in NOTICE_FIELDS if not getattr(settings.notice, f).strip()]
    ps = settings.purposes.get(purpose_name)
    if ps is not None and not ps.description.strip():
        missing.append(f"purposes.{purpose_name}.description")
    return missing


def require_notice(settings: Settings, purpose_name: str) -> None:
    """People consent to a notice they read; without a complete one there is nothing valid to consent to."""
    missing = missing_notice_fields(settings, purpose_name)
    if missing:
        raise NoticeIncomplete(
            f"the privacy notice is incomplete ({', '.join(missing)}): fill it in the deployment's"
            f" {CONFIG_NAME} ('facekeeper notice set FIELD TEXT') before collecting consent or enrolling",
            missing=missing)


def fmr_bucket(estimated_fmr: float) -> str:
    """A coarse decision score for the audit: the order of magnitude of the false-match rate.

    Enough to review a decision ("a stranger gets this close one time in 10^5"), too coarse to help anyone
    hill-climb a template from the audit trail.
    """
    if estimated_fmr <= 0:
        return "fmr<1e-9"
    exponent = max(-9, min(0, math.floor(math.log10(estimated_fmr))))
    return f"fmr~1e{exponent}"
