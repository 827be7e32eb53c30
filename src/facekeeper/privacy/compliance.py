"""The compliance report: what a privacy officer or regulator asks first, computed, not declared.

Per purpose: people with a live consent, enrolled people a search for it sees, their templates, active
credentials. Consents expiring soon; what the next sweep will erase; the audit chain's state; a real scan
of the data and key directories for photos and plaintext templates (see ``scan``); the notice's
completeness; and the count of enrolled people against China's 2025 filing threshold (100,000 people,
warned from 80,000).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from facekeeper.privacy import policy, scan
from facekeeper.privacy.core import Privacy, iso
from facekeeper.privacy.policy import Actor
from facekeeper.privacy.schema import DAY


def report(privacy: Privacy, actor: Actor) -> dict[str, Any]:
    with privacy.operation(actor, "compliance.report") as op:
        now = op.now
        settings = privacy.settings
        store = privacy.store
        purposes: dict[str, Any] = {}
        for name in settings.purposes:
            consented = store.db.execute(
                "SELECT count(DISTINCT pseudonym) FROM consents WHERE purpose = ? AND ended_at IS NULL"
                " AND granted_at <= ? AND expires_at > ?", (name, now, now)).fetchone()[0]
            allowed = privacy.ledger.allowed(name, now)
            templates = sum(_template_counts(store, allowed).values())
            creds = store.db.execute(
                "SELECT count(*) FROM credentials WHERE purpose = ? AND (expires_at IS NULL OR expires_at > ?)",
                (name, now)).fetchone()[0]
            purposes[name] = {"consented_people": int(consented), "enrolled_people": len(allowed),
                              "templates": templates, "credentials": int(creds),
                              "notice_missing": policy.missing_notice_fields(settings, name)}
        enrolled = store.subject_count()
        warn_days = settings.privacy.expiry_warning_days
        expiring = [{"subject": c.pseudonym, "purpose": c.purpose, "expires_at": iso(c.expires_at)}
                    for c in privacy.ledger.expiring(now, warn_days * DAY)]
        due = privacy.plan(now=now)
        chain = privacy.audit.verify()
        disk = scan.check_template_rows(store, scan.scan_paths([settings.data_dir, settings.key_dir]))
        filing = _filing(enrolled, settings.privacy.filing_warning, settings.privacy.filing_threshold)
        warnings = []
        if filing["status"] != "ok":
            warnings.append(filing["message"])
        if not chain.ok:
            warnings.append(f"the audit chain is broken at entry {chain.first_bad}: {chain.problem}")
        if not disk.clean:
            warnings.append("an image or a plaintext template was found on disk: see disk_scan")
        if due:
            warnings.append(f"{len(due)} item(s) are due for erasure: run 'facekeeper sweep'")
        data = {
            "generated_at": iso(now),
            "deployment_id": settings.deployment_id,
            "totals": {"people": len(privacy.registry.people()), "enrolled_people": enrolled,
                       "templates": store.template_count(), "audit_entries": privacy.audit.count()},
            "purposes": purposes,
            "expiring_within_days": warn_days,
            "expiring": expiring,
            "next_sweep": {"counts": dict(Counter(d.kind for d in due)), "items": [d.to_dict() for d in due]},
            "audit_chain": chain.to_dict(),
            "disk_scan": {**disk.to_dict(), "checks": [line.strip() for line in _CHECKS]},
            "filing": filing,
            "warnings": warnings,
        }
        privacy.record(op, "ok", detail={"warnings": len(warnings), "disk_clean": disk.clean, "chain_ok": chain.ok})
        return data


_CHECKS = [
    "PNG/JPEG/WebP/GIF signatures anywhere in every file of the data and key directories",
    "every whole file offered to Pillow's format detection",
    "runs of >= 128 descriptor-like float32 values at every byte alignment (plaintext templates)",
    "every template row is AES-GCM sized and does not parse as a bare vector",
]


def _template_counts(store: Any, pseudonyms: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(0, len(pseudonyms), 500):
        chunk = pseudonyms[i : i + 500]
        marks = ",".join("?" * len(chunk))
        out.update(store.db.execute(
            f"SELECT pseudonym, count(*) FROM templates WHERE pseudonym IN ({marks}) GROUP BY pseudonym", chunk))
    return out


def _filing(enrolled: int, warning: int, threshold: int) -> dict[str, Any]:
    """China's Measures for the Security Management of Face Recognition Technology (in force 1 June 2025),
    art. 15: whoever holds the face information of 100,000 people files with the provincial CAC within 30
    working days."""
    if enrolled >= threshold:
        status, message = "filing-required", (f"{enrolled} people enrolled: at or past {threshold}, a filing with"
                                               " the provincial cyberspace administration is due within 30"
                                               " working days (China, 2025 face recognition measures, art. 15)")
    elif enrolled >= warning:
        status, message = "approaching", (f"{enrolled} people enrolled: approaching the {threshold} filing"
                                          " threshold of China's 2025 face recognition measures")
    else:
        status, message = "ok", f"{enrolled} people enrolled, below the {warning} warning level"
    return {"enrolled_people": enrolled, "warning_at": warning, "threshold": threshold, "status": status,
            "message": message}
