"""The privacy commands: consent, sweep, audit, subject export, credentials, compliance, receipts, notice.

Registered on the main app by ``cli/main.py``; uses its ``--home``/``--json``/``--actor`` state and error
handling (imported when a command runs, since ``main`` imports this module while it is being built).
Every command goes through ``Service``, so each is checked, done and audited exactly like the API.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from facekeeper.errors import AuditError, InvalidInput
from facekeeper.privacy import ConsentForm, Guardian, receipts
from facekeeper.privacy.consent import MAX_CONSENT_YEARS, check_expiry

consent_app = typer.Typer(help="Record, withdraw and list consents (one per subject and purpose).",
                          no_args_is_help=True)
audit_app = typer.Typer(help="Check and export the tamper-evident audit log.", no_args_is_help=True)
subject_app = typer.Typer(help="A person's rights: what is held about them.", no_args_is_help=True)
credential_app = typer.Typer(help="PIN or QR token: the non-face way through the same check.", no_args_is_help=True)
compliance_app = typer.Typer(help="The compliance report.", no_args_is_help=True)
receipt_app = typer.Typer(help="Check erasure receipts and signed exports.", no_args_is_help=True)
notice_app = typer.Typer(help="The privacy notice people read before consenting.", no_args_is_help=True)

PurposeOpt = Annotated[str | None, typer.Option("--purpose", help="Why [config: privacy.default_purpose].")]


def parse_time(text: str) -> float:
    """An ISO 8601 date or time (UTC when no zone is given) as epoch seconds."""
    try:
        dt = datetime.fromisoformat(text)
        when = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
        datetime.fromtimestamp(when, UTC)  # 9999-12-31T23:00-05:00 is in year 10000: no report could print it
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(f"{text!r} is not an ISO date or time, e.g. 2027-01-31 or 2027-01-31T08:00") from None
    return when


def parse_expiry(text: str) -> float:
    """An expiry (``parse_time``) after now and within ``MAX_CONSENT_YEARS``: a later one is a typo."""
    when = parse_time(text)
    try:
        check_expiry(when, time.time())
    except InvalidInput:
        raise InvalidInput(f"{text!r}: give a time after now and within {MAX_CONSENT_YEARS} years") from None
    return when


def consent_form(spec: str, minor: bool = False, guardian: Guardian | None = None,
                 expires: str | None = None) -> ConsentForm:
    """``METHOD:REFERENCE``, e.g. ``paper:form 2027-113`` or ``checkbox:kiosk-3 session 88``."""
    method, _, evidence = spec.partition(":")
    if not evidence:
        raise InvalidInput("give the consent as METHOD:REFERENCE, e.g. paper:form-113 (method: signature,"
                           " checkbox or paper)")
    return ConsentForm(method.strip(), evidence.strip(), parse_expiry(expires) if expires else None, minor,
                       guardian)


# -- consent ----------------------------------------------------------------------------------------
@consent_app.command("grant")
def consent_grant(
    subject: Annotated[str, typer.Argument(help="The operator's id for the person.")],
    purpose: PurposeOpt = None,
    how: Annotated[str, typer.Option("--how", help="METHOD:REFERENCE (signature, checkbox or paper).")] = "",
    expires: Annotated[str | None, typer.Option(help="ISO date [purpose's maximum retention].")] = None,
    collected_by: Annotated[str | None, typer.Option(help="Who collected it [--actor].")] = None,
    minor: Annotated[bool, typer.Option("--minor", help="The person is under the guardian age.")] = False,
    age: Annotated[int | None, typer.Option(help="The person's stated age: under [privacy] guardian_age needs"
                                                 " a guardian (not stored).")] = None,
    guardian_relationship: Annotated[str | None, typer.Option(help="For a minor: mother, legal guardian...")] = None,
    guardian_reference: Annotated[str | None, typer.Option(help="For a minor: the guardian's signed form.")] = None,
    allow_template_updates: Annotated[bool, typer.Option(
        "--allow-template-updates", help="The person allows a new model's template to be added from a later"
                                         " match (no new photo).")] = False,
) -> None:
    """Record a person's consent for one purpose, with the notice version they were shown."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        guardian = (Guardian(guardian_relationship or "", guardian_reference or "")
                    if guardian_relationship or guardian_reference else None)
        form = consent_form(how, minor, guardian, expires)
        form = ConsentForm(form.method, form.evidence, form.expires_at, minor, guardian, collected_by, age,
                           allow_template_updates)
        c = svc.grant_consent(subject, purpose, form)
        now = svc.clock()
    cli.emit(c.to_dict(now), lambda: cli.out.print(
        f"Consent {c.id} recorded: {subject} ({c.pseudonym}) for {c.purpose}, notice {c.notice_version},"
        f" until {cli.when(c.expires_at)}"))


@consent_app.command("withdraw")
def consent_withdraw(subject: Annotated[str, typer.Argument()], purpose: PurposeOpt = None,
                     receipt: Annotated[Path | None, typer.Option(help="Write the erasure receipt here.")] = None
                     ) -> None:
    """Withdraw one purpose, at once. Withdrawing the last one erases the person's templates."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        r = svc.withdraw_consent(subject, purpose)
        now = svc.clock()
        if r.receipt is not None and receipt is not None:
            receipt.write_text(json.dumps(r.receipt, indent=2) + "\n")

    def human() -> None:
        if r.consent is None:
            cli.out.print(f"{subject} had no live consent for that purpose; nothing to withdraw")
            return
        cli.out.print(f"Withdrawn: {subject} no longer matches for {r.consent.purpose}"
                      + (f"; still consented for {', '.join(r.remaining)}" if r.remaining else ""))
        if r.receipt is not None:
            cli.out.print(f"That was the last purpose: {r.receipt['erased']['templates']} template(s) erased, key"
                          f" destroyed (audit #{r.receipt['audit_seq']})" + (f"; receipt in {receipt}" if receipt
                                                                             else ""))

    cli.emit(r.to_dict(now), human)


@consent_app.command("list")
def consent_list(subject: Annotated[str, typer.Argument()]) -> None:
    """A person's consents, live and ended."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        rows = svc.consents(subject)
        now = svc.clock()

    def human() -> None:
        table = Table("consent", "purpose", "status", "granted", "expires", "method", "notice")
        for c in rows:
            table.add_row(c.id, c.purpose, c.status(now), cli.when(c.granted_at), cli.when(c.expires_at), c.method,
                          c.notice_version)
        cli.out.print(table)

    cli.emit([c.to_dict(now) for c in rows], human)


# -- sweep ------------------------------------------------------------------------------------------
def sweep(dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what is due.")] = False) -> None:
    """Erase what retention says is due. Safe from cron: idempotent, and concurrent runs take turns."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        r = svc.sweep(dry_run=dry_run)
    d = r.to_dict()

    def human() -> None:
        verb = "would end" if dry_run else "ended"
        cli.out.print(f"Sweep at {d['at']}: {verb} {len(r.consents_ended)} consent(s), "
                      f"{'would erase' if dry_run else 'erased'} {len(r.faces_erased)} face(s), dropped "
                      f"{len(r.credentials_dropped)} credential(s), forgot {len(r.people_forgotten)} person(s)")
        for c in r.consents_ended:
            cli.out.print(f"  consent {c['purpose']} of {c['subject']}: {c['reason']} (due {c['due_at']})")
        for e in r.faces_erased:
            cli.out.print(f"  face of {e['subject']}: {e.get('reason', '')}"
                          + (f", audit #{e['audit_seq']}" if "audit_seq" in e else ""))

    cli.emit(d, human)


# -- audit ------------------------------------------------------------------------------------------
@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the keyed chain; name the first broken entry. Exit code 43 when broken."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        r = svc.verify_audit()
    cli.emit(r.to_dict(), lambda: cli.out.print(
        f"audit chain intact: {r.entries} entries, head #{r.head_seq}, anchored at #{r.anchored_seq}"
        f" ({r.seconds:.3f} s)" if r.ok else f"[red]audit chain BROKEN at entry {r.first_bad}[/red]: {r.problem}"))
    if not r.ok:
        raise typer.Exit(AuditError.exit_code)


@audit_app.command("export")
def audit_export(
    since: Annotated[str | None, typer.Option(help="ISO date or time: entries from then on.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write [stdout].")] = None,
) -> None:
    """Entries for an auditor, signed (Ed25519) with the chain status; 'receipt verify' checks the file."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        doc = svc.export_audit(parse_time(since) if since else None)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if output is not None:
        output.write_text(text, encoding="utf-8")
        cli.emit({"output": str(output), "entries": len(doc["entries"]), "chain_ok": doc["chain"]["ok"]},
                 lambda: cli.out.print(f"{len(doc['entries'])} entries written to {output} (chain "
                                       f"{'intact' if doc['chain']['ok'] else 'BROKEN'}), signed"))
    else:
        sys.stdout.write(text)


# -- the person's rights ----------------------------------------------------------------------------
@subject_app.command("export")
def subject_export(subject: Annotated[str, typer.Argument()]) -> None:
    """Subject access request: everything held about the person as JSON, without the templates."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        doc = svc.export_subject(subject)
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


@credential_app.command("issue")
def credential_issue(
    subject: Annotated[str, typer.Argument()], purpose: PurposeOpt = None,
    kind: Annotated[str, typer.Option(help="pin (6 digits) or token (for a QR code).")] = "pin",
    expires: Annotated[str | None, typer.Option(help="ISO date [never].")] = None,
) -> None:
    """Give anyone, enrolled or not, a PIN or QR token for a purpose. The secret is shown once."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        issued = svc.issue_credential(subject, purpose, kind, expires_at=parse_expiry(expires) if expires else None)
    cli.emit({"credential_id": issued.credential_id, "kind": issued.kind, "purpose": issued.purpose,
              "secret": issued.secret},
             lambda: cli.out.print(f"Credential {issued.credential_id} ({issued.kind}, {issued.purpose}) for "
                                   f"{subject}: {issued.secret}\n(shown once; only a hash is kept)"))


@credential_app.command("check")
def credential_check(
    purpose: PurposeOpt = None,
    token: Annotated[str | None, typer.Option(help="The QR token.")] = None,
    subject: Annotated[str | None, typer.Option(help="With --pin: the person's id.")] = None,
    pin: Annotated[str | None, typer.Option(help="With --subject: the PIN.")] = None,
) -> None:
    """The same purpose check a face passes, with a PIN or token. Exit code 44 when refused."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        sid, info = svc.check_credential(purpose, token=token, subject_id=subject, pin=pin)
    cli.emit({"accepted": True, "subject_id": sid, "credential_id": info.id, "purpose": info.purpose},
             lambda: cli.out.print(f"ACCEPTED: {sid} for {info.purpose} ({info.kind} {info.id})"))


@credential_app.command("revoke")
def credential_revoke(credential_id: Annotated[str, typer.Argument()]) -> None:
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        svc.revoke_credential(credential_id)
    cli.emit({"revoked": credential_id}, lambda: cli.out.print(f"Revoked {credential_id}"))


# -- compliance, receipts, notice ---------------------------------------------------------------------
@compliance_app.command("report")
def compliance_report(json_out: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False) -> None:
    """Subjects and templates per purpose, expiring consents, the next sweep, the audit chain, a disk scan
    for photos and plaintext templates, and China's 2025 filing threshold."""
    from facekeeper.cli import main as cli

    cli.state.json = cli.state.json or json_out
    with cli.service() as svc:
        r = svc.compliance_report()

    def human() -> None:
        t = r["totals"]
        cli.out.print(f"Compliance report {r['generated_at']}: {t['people']} people known, {t['enrolled_people']}"
                      f" enrolled, {t['templates']} templates, {t['audit_entries']} audit entries")
        table = Table("purpose", "consented", "enrolled", "templates", "credentials", "notice")
        for name, p in r["purposes"].items():
            table.add_row(name, str(p["consented_people"]), str(p["enrolled_people"]), str(p["templates"]),
                          str(p["credentials"]), "complete" if not p["notice_missing"] else
                          "missing " + ", ".join(p["notice_missing"]))
        cli.out.print(table)
        cli.out.print(f"expiring within {r['expiring_within_days']} days: {len(r['expiring'])}; next sweep: "
                      f"{r['next_sweep']['counts'] or 'nothing due'}")
        chain = r["audit_chain"]
        cli.out.print("audit chain: " + ("intact" if chain["ok"] else f"BROKEN at {chain['first_bad']}"))
        disk = r["disk_scan"]
        cli.out.print(f"disk scan: {disk['files']} files, {disk['bytes']:,} bytes, {disk['template_rows']} template"
                      f" rows: " + ("no image, no plaintext template" if disk["clean"] else "[red]FOUND[/red] "
                                    f"{len(disk['images'])} image(s), {len(disk['plaintext_vectors'])} vector run(s),"
                                    f" {disk['template_rows_not_sealed']} unsealed row(s)"))
        cli.out.print(f"filing: {r['filing']['message']}")
        for w in r["warnings"]:
            cli.out.print(f"[yellow]warning[/yellow]: {w}")

    cli.emit(r, human)


@receipt_app.command("verify")
def receipt_verify(
    path: Annotated[Path, typer.Argument(help="An erasure receipt or a signed audit export (JSON).")],
    public_key: Annotated[str | None, typer.Option(help="The deployment's public key [this deployment's].")] = None,
) -> None:
    """Check a receipt's Ed25519 signature. Exit code 45 when it does not hold."""
    from facekeeper.cli import main as cli

    with cli.handled():
        try:
            doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read {path} as JSON ({exc})") from None
        if public_key is not None:
            receipts.verify(doc, public_key)
        else:
            with cli.service() as svc:
                svc.verify_receipt(doc)
    cli.emit({"valid": True, "type": doc.get("type"), "subject": doc.get("subject")},
             lambda: cli.out.print(f"valid {doc.get('type')} signed by {doc.get('public_key')}"
                                   + (f": {doc['subject']} erased at {doc['erased_at']}, audit #{doc['audit_seq']}"
                                      if "audit_seq" in doc else "")))


@receipt_app.command("public-key")
def receipt_public_key() -> None:
    """The key receipts are signed with (publish it: anyone can then check a receipt offline)."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        key = svc.receipt_public_key
    cli.emit({"public_key": key}, lambda: cli.out.print(key))


@notice_app.command("show")
def notice_show() -> None:
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        n = svc.settings.notice
        purposes = {k: v.description for k, v in svc.settings.purposes.items()}
    data = {**vars(n), "purposes": purposes}
    cli.emit(data, lambda: cli.out.print_json(json.dumps(data, ensure_ascii=False)))


@notice_app.command("set")
def notice_set(
    field: Annotated[str, typer.Argument(help="version, controller, contact, retention or rights.")],
    text: Annotated[str, typer.Argument()],
) -> None:
    """Fill in one field of the privacy notice; enrollment waits until all are filled."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        svc.set_notice(**{field: text})
    cli.emit({field: text}, lambda: cli.out.print(f"notice.{field} set"))
