"""``Privacy``: the consent ledger, registry, credentials, audit chain and receipts behind one object.

``service.py`` asks it before any work (``operation``: role, purpose, notice, consent), hands it the
transaction of the data change so the audit entry commits with it, and uses it for every privacy
operation: consent, withdrawal, erasure with a signed receipt, sweep, credentials, exports, compliance.
Every call takes the time from the injected clock, so tests can move it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from facekeeper.config import PurposeSettings, Settings
from facekeeper.db.database import Connection
from facekeeper.errors import ConsentRequired, CredentialError, FacekeeperError, InvalidInput, UnknownSubject
from facekeeper.gallery.gallery import Gallery
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.privacy import policy, receipts, retention
from facekeeper.privacy.audit import AuditLog, ChainReport
from facekeeper.privacy.consent import Consent, ConsentLedger, Guardian
from facekeeper.privacy.credentials import CredentialInfo, Credentials, Issued
from facekeeper.privacy.policy import Actor
from facekeeper.privacy.registry import KEYSTORE_NAME, Registry
from facekeeper.privacy.schema import DAY, Clock, ensure_schema, system_clock

SWEEP_LOCK = "sweep.lock"
TEMPLATE_ADD = "template.add"  # the audit action of a template added from a match (never a role's permission)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def outcome_of(error: FacekeeperError) -> str:
    """How the audit records an operation that raised: refused (403/409) or failed, with the error's code
    (or the fuller reason when the caller was told less)."""
    kind = "refused" if error.http_status in (403, 409) else "failed"
    return error.audited_as or f"{kind}:{error.code}"


@dataclass
class Operation:
    """One guarded call: who, why, when. ``audited`` is set once its single success entry is written."""

    actor: Actor
    action: str
    purpose: str | None
    purpose_settings: PurposeSettings | None
    now: float
    subject: str | None = None
    audited: bool = False


@dataclass
class WithdrawResult:
    consent: Consent | None  # None: there was no live consent for the purpose (nothing to do)
    remaining: list[str]
    receipt: dict[str, Any] | None  # set when the withdrawal erased the templates

    def to_dict(self, now: float) -> dict[str, Any]:
        return {"withdrawn": self.consent.to_dict(now) if self.consent else None, "remaining_purposes": self.remaining,
                "templates_erased": self.receipt is not None, "receipt": self.receipt}


@dataclass
class SweepReport:
    dry_run: bool
    at: float
    consents_ended: list[dict[str, Any]] = field(default_factory=list)
    faces_erased: list[dict[str, Any]] = field(default_factory=list)  # receipts
    credentials_dropped: list[dict[str, Any]] = field(default_factory=list)
    people_forgotten: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (len(self.consents_ended) + len(self.faces_erased) + len(self.credentials_dropped)
                + len(self.people_forgotten))

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "at": iso(self.at), "consents_ended": self.consents_ended,
                "faces_erased": self.faces_erased, "credentials_dropped": self.credentials_dropped,
                "people_forgotten": self.people_forgotten, "total": self.total}


class Privacy:
    def __init__(self, settings: Settings, key: DeploymentKey, gallery: Gallery, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.gallery = gallery
        self.store = gallery.store
        self.clock = clock
        ensure_schema(self.store)
        self.registry = Registry(self.store, gallery, key, settings.keystore_location(KEYSTORE_NAME))
        self.ledger = ConsentLedger(self.store, self.registry)
        self.credentials = Credentials(self.store, key, settings.privacy.credential_max_failures)
        self.audit = AuditLog(self.store, key, settings.deployment_id, settings.key_dir)
        self.audit.start(clock())
        self.signer = receipts.Signer(key)
        self._allowed_cache: dict[str, tuple[tuple[int, int], float, list[str]]] = {}  # purpose -> (stamp, until, set)
        self.registry.reconcile()

    def close(self) -> None:
        self.registry.close()

    # -- the guard every operation goes through -------------------------------------------------
    @contextmanager
    def operation(self, actor: Actor, action: str, purpose: str | None = None, *, needs_purpose: bool = False,
                  operation: str | None = None, subject: str | None = None) -> Iterator[Operation]:
        """Role and purpose checks, then the caller's work; a refusal or failure is audited, then re-raised.

        With ``needs_purpose`` (or ``operation``) a None purpose means the configured default; ``operation``
        (enroll/verify/identify) is checked against what the purpose allows.
        """
        op = Operation(actor, action, None, None, self.clock(), subject)
        try:
            policy.require_role(actor, action)
            if purpose is not None or needs_purpose or operation is not None:
                op.purpose, op.purpose_settings = policy.purpose(self.settings, purpose, operation)
            yield op
        except FacekeeperError as exc:
            self.audit.record(actor, action, outcome_of(exc), at=op.now, purpose=op.purpose or purpose,
                              subject=op.subject)
            raise
        if not op.audited:
            self.audit.record(actor, action, "ok", at=op.now, purpose=op.purpose, subject=op.subject)

    def refuse_role(self, actor: Actor, action: str) -> None:
        """The guard's first check, before any argument is read: the refusal is audited, then raised."""
        try:
            policy.require_role(actor, action)
        except FacekeeperError as exc:
            self.audit_outcome(actor, action, exc)
            raise

    def audit_outcome(self, actor: Actor, action: str, error: FacekeeperError | None) -> int:
        """The one entry of an operation whose work wrote none: ``ok``, or why it was refused or failed."""
        return self.audit.record(actor, action, "ok" if error is None else outcome_of(error), at=self.clock())

    def append(self, db: Connection, op: Operation, outcome: str, *, subject: str | None = None,
               bucket: str | None = None, detail: dict[str, Any] | None = None, action: str | None = None) -> int:
        """The operation's audit entry, inside the transaction of its data change."""
        seq = self.audit.append(db, op.actor, action or op.action, outcome, at=op.now, purpose=op.purpose,
                                subject=subject or op.subject, bucket=bucket, detail=detail)
        if action is None:
            op.audited = True
        return seq

    def record(self, op: Operation, outcome: str, *, subject: str | None = None, bucket: str | None = None,
               detail: dict[str, Any] | None = None) -> int:
        """The operation's audit entry when it changes no data (or only usage counters)."""
        seq = self.audit.record(op.actor, op.action, outcome, at=op.now, purpose=op.purpose,
                                subject=subject or op.subject, bucket=bucket, detail=detail)
        op.audited = True
        return seq

    # -- enrollment and matching hooks ----------------------------------------------------------
    def prepare_enroll(self, op: Operation, subject_id: str) -> str:
        """Before any photo is decoded: notice complete, person known, live consent for the purpose."""
        assert op.purpose is not None
        policy.require_notice(self.settings, op.purpose)
        op.subject = self.registry.find(subject_id)
        self.ledger.require_live(op.subject, op.purpose, op.now)
        assert op.subject is not None
        return op.subject

    def enroll_hook(self, op: Operation) -> Callable[[Connection, str, int], None]:
        """For ``Gallery.enroll(within=)``: re-check consent in the write transaction, note the use, audit."""
        assert op.purpose is not None
        purpose = op.purpose

        def within(db: Connection, pseudonym: str, templates: int) -> None:
            consent = self.ledger.require_live(pseudonym, purpose, op.now, db)
            self._touch(db, pseudonym, purpose, op.now)
            self.append(db, op, "ok", subject=pseudonym, detail={"templates": templates, "consent": consent.id})

        return within

    def template_update_hook(self, op: Operation, pseudonym: str, model_id: str, bucket: str,
                             source: str) -> Callable[[Connection], None]:
        """For ``Gallery.add_side_template(within=)``: in the write transaction, the subject's live consent for
        the purpose must still allow templates from matches (else nothing is added), then one ``template.add``
        entry: purpose, pseudonym, model, the old model's FMR bucket, never a template."""
        assert op.purpose is not None
        purpose = op.purpose

        def within(db: Connection) -> None:
            consent = self.ledger.live(pseudonym, purpose, op.now, db)
            if consent is None or not consent.template_updates:
                raise ConsentRequired(f"the consent for {purpose} does not allow templates from matches",
                                      purpose=purpose)
            self.append(db, op, "ok", subject=pseudonym, bucket=bucket, action=TEMPLATE_ADD,
                        detail={"model": model_id, "from": source, "consent": consent.id})

        return within

    def matchable(self, op: Operation, pseudonym: str) -> None:
        """A 1:1 comparison against a subject needs that subject's live consent for the purpose."""
        assert op.purpose is not None
        op.subject = pseudonym
        self.ledger.require_live(pseudonym, op.purpose, op.now)

    def allowed(self, purpose: str, now: float) -> list[str]:
        """Pseudonyms a search for ``purpose`` may return, cached until the data or a consent window changes."""
        stamp = (self.ledger.epoch(), self.store.last_change())
        cached = self._allowed_cache.get(purpose)
        if cached is not None and cached[0] == stamp and now < cached[1]:
            return cached[2]
        result = self.ledger.allowed(purpose, now)
        edges = [t for t in (self.ledger.next_expiry(purpose, now), self.ledger.next_start(purpose, now))
                 if t is not None]
        self._allowed_cache[purpose] = (stamp, min(edges, default=float("inf")), result)
        return result

    def matched(self, op: Operation, pseudonym: str | None, outcome: str, bucket: str | None,
                detail: dict[str, Any] | None = None) -> int:
        """Audit a verify/identify decision; a successful match also renews the purpose's idle clock."""
        with self.store.transaction() as db:
            if pseudonym is not None and outcome == "match" and op.purpose is not None:
                self._touch(db, pseudonym, op.purpose, op.now)
            seq = self.append(db, op, outcome, subject=pseudonym, bucket=bucket, detail=detail)
        self.audit.anchor()
        return seq

    @staticmethod
    def _touch(db: Connection, pseudonym: str, purpose: str, now: float) -> None:
        db.execute("INSERT INTO usage VALUES (?, ?, ?) ON CONFLICT(pseudonym, purpose) DO UPDATE SET"
                   " last_used_at = CASE WHEN excluded.last_used_at > usage.last_used_at"
                   " THEN excluded.last_used_at ELSE usage.last_used_at END", (pseudonym, purpose, now))

    # -- consent --------------------------------------------------------------------------------
    def grant(self, actor: Actor, subject_id: str, purpose: str | None, *, method: str, evidence: str,
              collected_by: str | None = None, expires_at: float | None = None, minor: bool = False,
              guardian: Guardian | None = None, age: int | None = None, template_updates: bool = False) -> Consent:
        """Record a person's consent for one purpose, shown the current notice; ``template_updates``: the person
        allows a newer model's template to be added from a later match."""
        with self.operation(actor, "consent.grant", purpose, needs_purpose=True) as op:
            assert op.purpose is not None and op.purpose_settings is not None
            policy.require_notice(self.settings, op.purpose)
            expiry = expires_at or op.now + op.purpose_settings.max_retention_days * DAY
            op.subject = self.registry.ensure(subject_id, op.now)
            with self.store.transaction() as db:
                consent, previous = self.ledger.grant(
                    db, op.subject, op.purpose, notice_version=self.settings.notice.version,
                    collected_by=collected_by or actor.id, method=method, evidence=evidence, granted_at=op.now,
                    expires_at=expiry, minor=minor, guardian=guardian, age=age,
                    guardian_age=self.settings.privacy.guardian_age, template_updates=template_updates)
                self.append(db, op, "ok", detail={"consent": consent.id, "method": method, "minor": consent.minor,
                                                  "notice_version": consent.notice_version,
                                                  "template_updates": consent.template_updates,
                                                  "renews": previous.id if previous else None})
            self.audit.anchor()
            return consent

    def consents(self, actor: Actor, subject_id: str) -> list[Consent]:
        with self.operation(actor, "consent.list") as op:
            op.subject = self.registry.resolve(subject_id)
            return self.ledger.of_subject(op.subject)

    def withdraw(self, actor: Actor, subject_id: str, purpose: str | None) -> WithdrawResult:
        """Withdraw one purpose, effective at once; the last one erases the templates (crypto-shredding)."""
        with self.operation(actor, "consent.withdraw", purpose, needs_purpose=True) as op:
            assert op.purpose is not None
            pseudonym = op.subject = self.registry.resolve(subject_id)
            consent = self.ledger.live(pseudonym, op.purpose, op.now)
            remaining = [p for p in self.ledger.live_purposes(pseudonym, op.now) if p != op.purpose]
            if consent is None:
                self.record(op, "no-live-consent")
                return WithdrawResult(None, remaining, None)

            def end_it(db: Connection) -> None:
                self.ledger.end(db, consent.id, "withdrawn", actor.id, op.now)
                self.append(db, op, "ok", detail={"consent": consent.id, "remaining": len(remaining)})

            receipt = None
            if remaining or not self.store.subject_exists(pseudonym):
                with self.store.transaction() as db:
                    end_it(db)
                    forget = not remaining and not self.credentials.active(pseudonym, op.now, db)
                    if forget:
                        self.registry.forget_rows(db, pseudonym)
                if forget:
                    self.registry.shred(pseudonym)
            else:
                receipt = self._erase_face(op, pseudonym, "consent-withdrawn", before=end_it)
            self.audit.anchor()
            return WithdrawResult(consent, remaining, receipt)

    # -- erasure --------------------------------------------------------------------------------
    def erase(self, actor: Actor, subject_id: str) -> dict[str, Any]:
        """The right to erasure: templates, consents' personal fields, credentials, the person. Signed receipt."""
        with self.operation(actor, "subject.erase") as op:
            pseudonym = self.registry.find(subject_id) or self.gallery.find(subject_id)
            if pseudonym is None:
                raise UnknownSubject(f"no subject '{subject_id}' is known here")
            op.subject = pseudonym
            receipt = self._erase_face(op, pseudonym, "erasure-request", forget=True)
            self.audit.anchor()
            return receipt

    def _erase_face(self, op: Operation, pseudonym: str, reason: str, *, forget: bool | None = None,
                    before: Callable[[Connection], None] | None = None) -> dict[str, Any]:
        """Crypto-shred the templates (if any) and, when ``forget`` (or nothing else is held), the person.

        Everything the erasure changes in the gallery file, with its audit entry, is one transaction.
        """
        facts: dict[str, Any] = {}
        had_face = self.store.subject_exists(pseudonym)

        def within(db: Connection, templates: int) -> None:
            if before is not None:
                before(db)
            ended = 0
            drop = forget
            if drop is None:
                drop = not self.ledger.live_purposes(pseudonym, op.now, db) and not self.credentials.active(
                    pseudonym, op.now, db)
            creds = 0
            if drop:
                for c in self.ledger.open_consents_of(pseudonym):
                    ended += self.ledger.end(db, c.id, "erased", op.actor.id, op.now)
                creds = int(db.execute("SELECT count(*) FROM credentials WHERE pseudonym = ?",
                                       (pseudonym,)).fetchone()[0])
                self.registry.forget_rows(db, pseudonym)
            facts.update(templates=templates, consents_ended=ended, credentials_revoked=creds, forgotten=drop)
            facts["seq"] = self.audit.append(db, op.actor, "subject.erase", "erased", at=op.now, purpose=op.purpose,
                                             subject=pseudonym, detail={"reason": reason, "templates": templates,
                                                                        "consents_ended": ended,
                                                                        "credentials_revoked": creds,
                                                                        "person_forgotten": drop})
            if op.action == "subject.erase":
                op.audited = True

        if had_face:
            try:
                self.gallery.delete_subject(pseudonym, within=within)
            except UnknownSubject:
                if not self.registry.known(pseudonym):
                    raise
                with self.store.transaction() as db:
                    within(db, 0)
        else:
            if not self.registry.known(pseudonym):
                raise UnknownSubject("no such subject")
            with self.store.transaction() as db:
                within(db, 0)
        shredded = self.registry.shred(pseudonym) if facts["forgotten"] else False
        return self.signer.sign({
            "type": receipts.ERASURE_RECEIPT,
            "deployment_id": self.settings.deployment_id,
            "subject": pseudonym,
            "reason": reason,
            "erased": {
                "templates": facts["templates"],
                "template_key": "destroyed" if had_face else "none",
                "index_entries_removed": facts["templates"],
                "consents_ended": facts["consents_ended"],
                "credentials_revoked": facts["credentials_revoked"],
                "person_key": "destroyed" if shredded else "kept",
            },
            "erased_at": iso(op.now),
            "erased_at_epoch": op.now,
            "audit_seq": facts["seq"],
        })

    def verify_receipt(self, doc: dict[str, Any], public_key: str | None = None) -> dict[str, Any]:
        receipts.verify(doc, public_key or self.signer.public_key)
        if doc.get("deployment_id") != self.settings.deployment_id and public_key is None:
            raise InvalidInput("this receipt names another deployment")
        return doc

    # -- retention ------------------------------------------------------------------------------
    def plan(self, horizon_days: float = 0.0, now: float | None = None) -> list[retention.Due]:
        return retention.plan(self.settings, self.registry, self.ledger, self.credentials,
                              self.clock() if now is None else now, horizon_days * DAY)

    def sweep(self, actor: Actor, *, dry_run: bool = False) -> SweepReport:
        """Erase whatever is due. Safe from cron: sweeps take turns (a lock file), each step re-checks in its
        own transaction, so a second run, concurrent or later, finds nothing left to do."""
        with self.operation(actor, "sweep") as op:
            report = SweepReport(dry_run, op.now)
            lock = os.open(self.settings.data_dir / SWEEP_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                for due in self.plan(now=op.now):
                    self._sweep_one(op, due, report)
            finally:
                os.close(lock)
            self.record(op, "dry-run" if dry_run else "ok", detail={
                "consents_ended": len(report.consents_ended), "faces_erased": len(report.faces_erased),
                "credentials_dropped": len(report.credentials_dropped),
                "people_forgotten": len(report.people_forgotten)})
            return report

    def _sweep_one(self, op: Operation, due: retention.Due, report: SweepReport) -> None:
        entry = {"subject": due.pseudonym, "purpose": due.purpose, "reason": due.reason, "due_at": iso(due.due_at)}
        if report.dry_run:
            target = {"consent": report.consents_ended, "face": report.faces_erased,
                      "credential": report.credentials_dropped}.get(due.kind)
            if target is not None:
                target.append(entry)
            else:
                report.people_forgotten.append(due.pseudonym)
            return
        if due.kind == "consent":
            assert due.ref is not None
            with self.store.transaction() as db:
                if self.ledger.end(db, due.ref, due.reason, op.actor.id, op.now):
                    self.audit.append(db, op.actor, "consent.end", due.reason, at=op.now, purpose=due.purpose,
                                      subject=due.pseudonym, detail={"consent": due.ref})
                    report.consents_ended.append(entry)
        elif due.kind == "credential":
            assert due.ref is not None
            with self.store.transaction() as db:
                if self.credentials.revoke(db, due.ref):
                    self.audit.append(db, op.actor, "credential.revoke", due.reason, at=op.now, purpose=due.purpose,
                                      subject=due.pseudonym, detail={"credential": due.ref})
                    report.credentials_dropped.append(entry)
        elif due.kind == "face":
            if self.ledger.live_purposes(due.pseudonym, op.now) or not self.store.subject_exists(due.pseudonym):
                return
            try:
                report.faces_erased.append(self._erase_face(op, due.pseudonym, f"retention:{due.reason}"))
            except UnknownSubject:
                return
        elif due.kind == "person":
            with self.store.transaction() as db:
                if (self.ledger.live_purposes(due.pseudonym, op.now, db) or self.credentials.active(
                        due.pseudonym, op.now, db) or self.store.subject_exists(due.pseudonym)):
                    return
                if not self.registry.forget_rows(db, due.pseudonym):
                    return
                self.audit.append(db, op.actor, "subject.forget", due.reason, at=op.now, subject=due.pseudonym)
            self.registry.shred(due.pseudonym)
            report.people_forgotten.append(due.pseudonym)
        self.audit.anchor()

    # -- credentials ----------------------------------------------------------------------------
    def issue_credential(self, actor: Actor, subject_id: str, purpose: str | None, kind: str,
                         expires_at: float | None = None) -> Issued:
        """A PIN or QR token for anyone, enrolled or not: the face is never the only way in."""
        with self.operation(actor, "credential.issue", purpose, needs_purpose=True) as op:
            assert op.purpose is not None
            op.subject = self.registry.ensure(subject_id, op.now)
            with self.store.transaction() as db:
                issued = self.credentials.issue(db, op.subject, op.purpose, kind, op.now, expires_at)
                self.append(db, op, "ok", detail={"credential": issued.credential_id, "kind": kind})
            self.audit.anchor()
            return issued

    def revoke_credential(self, actor: Actor, credential_id: str) -> None:
        with self.operation(actor, "credential.revoke") as op:
            info = self.credentials.get(credential_id)
            op.subject, op.purpose = info.pseudonym, info.purpose
            with self.store.transaction() as db:
                self.credentials.revoke(db, credential_id)
                self.append(db, op, "ok", detail={"credential": credential_id})
            self.audit.anchor()

    def check_credential(self, actor: Actor, purpose: str | None, *, token: str | None = None,
                         subject_id: str | None = None, pin: str | None = None) -> tuple[str, CredentialInfo]:
        """The same purpose check a face passes, with a credential; returns (subject id, credential)."""
        with self.operation(actor, "credential.check", purpose, needs_purpose=True) as op:
            assert op.purpose is not None
            pseudonym = self.registry.find(subject_id) if subject_id is not None else None
            if subject_id is not None and pseudonym is None:
                pseudonym = "s_unknown"  # same work and answer as a wrong PIN
            info = self.credentials.check(op.purpose, op.now, token=token, pseudonym=pseudonym, pin=pin)
            op.subject = info.pseudonym
            sid = self.registry.subject_id(info.pseudonym)
            if sid is None:
                raise CredentialError("credential not accepted")
            with self.store.transaction() as db:
                self._touch(db, info.pseudonym, op.purpose, op.now)
                self.append(db, op, "match", detail={"credential": info.id, "kind": info.kind})
            self.audit.anchor()
            return sid, info

    # -- audit ----------------------------------------------------------------------------------
    def verify_audit(self, actor: Actor) -> ChainReport:
        with self.operation(actor, "audit.verify") as op:
            report = self.audit.verify()
            self.record(op, "intact" if report.ok else "broken",
                        detail={"entries": report.entries, "first_bad": report.first_bad})
            return report

    def export_audit(self, actor: Actor, since: float | None = None) -> dict[str, Any]:
        """Entries since a time, with the chain status, signed so an auditor can check them offline."""
        with self.operation(actor, "audit.export") as op:
            chain = self.audit.verify()
            entries = self.audit.entries(since=since)
            seq, mac = self.audit.head()
            self.record(op, "ok", detail={"entries": len(entries)})
            return self.signer.sign({
                "type": receipts.AUDIT_EXPORT, "deployment_id": self.settings.deployment_id,
                "exported_at": iso(op.now), "since": iso(since) if since is not None else None,
                "chain": chain.to_dict(), "head": {"seq": seq, "mac": mac},
                "entries": [e.to_dict() for e in entries],
            })
