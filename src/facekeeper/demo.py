"""The end-to-end demo behind ``make demo``: real photos of consenting volunteers, start to finish.

It creates a throwaway deployment, fills in the privacy notice, records consent per purpose, enrolls
people, verifies and identifies, shows a purpose-bound refusal, a withdrawal, a PIN instead of a face,
a retention sweep three (simulated) years later, an erasure with its signed receipt, the audit chain
check, and then scans the files on disk to show that no photo and no readable template was ever stored.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from facekeeper.api import demo as api_demo
from facekeeper.errors import ConsentRequired, LicenseError, LivenessRequired
from facekeeper.privacy import ConsentForm
from facekeeper.publisher.testing import install_demo_license
from facekeeper.service import Service

console = Console(soft_wrap=True)
PEOPLE = ("001", "002", "003", "004")
PAYMENT_ONLY = "004"
STRANGER = "009"


def say(text: str) -> None:
    console.print(f"\n[bold cyan]>[/bold cyan] {text}")


def photo(images: Path, person: str, pose: str = "neutral") -> Path:
    return images / "london" / person / f"{pose}.jpg"


def scan_for_leaks(svc: Service, images: Path, people: tuple[str, ...]) -> list[str]:
    """Look through every file of the deployment for photo bytes and for the templates in plain form."""
    files = [p for d in (svc.settings.data_dir, svc.settings.key_dir) for p in d.rglob("*") if p.is_file()]
    disk = b"".join(p.read_bytes() for p in files)
    problems = []
    disk_scan = svc.compliance_report()["disk_scan"]  # image signatures anywhere, plaintext float runs
    if not disk_scan["clean"]:
        problems.append(f"compliance scan: {disk_scan['images'] or ''} {disk_scan['plaintext_vectors'] or ''}")
    for person in people:
        raw = photo(images, person).read_bytes()
        if raw[1000:1064] in disk:
            problems.append(f"bytes of {person}'s photo found")
        (described,) = svc.engine.describe([photo(images, person)], enrollment=False, accurate=True)
        assert described.side
        vectors = [described.dlib, svc.gallery.protect(described.dlib, svc.engine.model_id)]
        for model_id, side in described.side.items():
            vectors += [side, svc.gallery.protect(side, model_id)]
        for vec in vectors:
            if np.asarray(vec, "<f4").tobytes()[:32] in disk:
                problems.append(f"a plaintext template of {person} found")
    console.print(f"  scanned {len(files)} file(s), {len(disk):,} bytes: "
                  + ("[green]nothing found[/green]" if not problems else f"[red]{problems}[/red]"))
    return problems


class DemoClock:
    """The service's clock, moved forward by the demo to show retention."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def run(images: Path, workdir: Path) -> int:
    if workdir.exists():
        shutil.rmtree(workdir)
    data_dir, key_dir = workdir / "data", workdir / "keys"
    say(f"Creating a deployment: data in {data_dir}, deployment key in {key_dir} (kept apart, mode 0600)")
    clock = DemoClock()
    svc = Service.init(data_dir, key_dir, clock=clock)
    try:
        say("Without a license only 'detect' works; installing an offline license (a demo vendor key stands"
            " in for the vendor's, so it is an evaluation license)")
        try:
            svc.verify(photo(images, PEOPLE[0]), photo(images, PEOPLE[0], "smiling"))
        except LicenseError as exc:
            console.print(f"  before: {exc.message}", markup=False)
        lic = install_demo_license(svc, workdir / "vendor")
        status = svc.license_status()
        console.print(f"  installed: {lic.licensee}, {', '.join(lic.features)}, up to {lic.subject_cap} subjects,"
                      f" deployment {lic.deployment_id[:8]}..., status {status.state}")

        say("Enrolling before the privacy notice is filled in is refused")
        try:
            svc.grant_consent("001", "access-control", ConsentForm("paper", "form 2027-001"))
        except Exception as exc:
            console.print(f"  refused: {getattr(exc, 'message', exc)}", markup=False)
        svc.set_notice(version="2027-01", controller="Demo Site Ltd, 1 Example Street", contact="dpo@demo.invalid",
                       retention="Until you withdraw; erased after 3 years without use; 3 years at most.",
                       rights="See, withdraw, erase; use a PIN instead of your face at no cost; complain to the"
                              " data protection authority.")
        console.print("  notice filled in (controller, contact, retention, rights, version)")

        say("Recording consent per purpose: 001-003 for the door (access-control); 004 only for payment")
        for person in PEOPLE:
            purpose = "payment" if person == PAYMENT_ONLY else "access-control"
            c = svc.grant_consent(person, purpose, ConsentForm("paper", f"signed form 2027-{person}"))
            console.print(f"  {person}: consent {c.id} for {c.purpose}, notice {c.notice_version}, collected by "
                          f"{c.collected_by}")

        say(f"Enrolling {len(PEOPLE)} volunteers from the London set, one photo each, for their purpose")
        for person in PEOPLE:
            purpose = "payment" if person == PAYMENT_ONLY else "access-control"
            r = svc.enroll([photo(images, person)], person, name=f"Volunteer {person}", purpose=purpose)
            q = r.quality[0]
            console.print(f"  {person}: stored 1 protected template as {r.pseudonym} (eye distance "
                          f"{q['eye_distance']:.0f} px, sharpness {q['sharpness']:.0f}); the photo was discarded")

        say("Verifying a genuine pair: volunteer 001 neutral vs smiling")
        d = svc.verify(photo(images, "001"), photo(images, "001", "smiling")).decision
        console.print(f"  {'MATCH' if d.match else 'NO MATCH'}: distance {d.distance:.3f}, threshold "
                      f"{d.threshold:.3f} at FMR {d.target_fmr:g}")
        say("Verifying an impostor pair: volunteer 001 vs volunteer 002")
        d = svc.verify(photo(images, "001"), photo(images, "002")).decision
        console.print(f"  {'MATCH' if d.match else 'NO MATCH'}: distance {d.distance:.3f}, threshold "
                      f"{d.threshold:.3f}")

        say("Identifying a new photo of volunteer 002 among everyone enrolled")
        r = svc.identify(photo(images, "002", "smiling"))
        console.print(f"  answer: {r.match.subject_id if r.match else 'unknown'} "
                      f"(distance {r.candidates[0].decision.distance:.3f})")
        say(f"Identifying a stranger (volunteer {STRANGER}, never enrolled)")
        r = svc.identify(photo(images, STRANGER))
        console.print(f"  answer: {r.match.subject_id if r.match else 'unknown'}: nearest is "
                      f"{r.candidates[0].decision.distance:.3f} away, over the threshold "
                      f"{r.candidates[0].decision.threshold:.3f} for FPIR {r.target_fpir:g}")

        say("Payment requires active liveness: a photo or a video of the customer must not pay")
        try:
            svc.verify(photo(images, PAYMENT_ONLY, "smiling"), subject_id=PAYMENT_ONLY, purpose="payment")
        except LivenessRequired as exc:
            console.print(f"  pay without a liveness session: refused ({exc.code}), photo never decoded")
        started = svc.liveness_start(PAYMENT_ONLY, purpose="payment")
        console.print(f"  the till opens session {started.session_id}: {' then '.join(started.challenge)}, each"
                      f" {started.step_seconds:g} s apart, within {started.expires_at - clock.now:.0f} s")
        printed = photo(images, PAYMENT_ONLY, "smiling").read_bytes()  # a printed photo held up to the camera
        result = svc.liveness_submit(started.session_id, started.nonce, [printed] * 45, [i / 15 for i in range(45)])
        console.print(f"  a still photo sent as 45 frames: {result.outcome} ({'; '.join(result.why)}), decided in"
                      f" {result.timings_ms['measure'] + result.timings_ms['decide']:.0f} ms")
        try:
            svc.verify(photo(images, PAYMENT_ONLY, "smiling"), subject_id=PAYMENT_ONLY, purpose="payment",
                       liveness_session=started.session_id)
        except LivenessRequired as exc:
            console.print(f"  pay with that session: refused ({exc.code}: {exc.message})", markup=False)
        svc.settings.purposes["payment"].liveness = "none"  # in memory only: this demo has no camera
        console.print("  (this throwaway site has no camera: the till's matching below runs with payment's liveness"
                      " switched off in memory, which no real site may do)")

        say(f"Purpose-bound: volunteer {PAYMENT_ONLY} consented to payment only, so the door never sees them")
        r = svc.identify(photo(images, PAYMENT_ONLY, "smiling"), purpose="access-control")
        console.print(f"  door (access-control): {r.match.subject_id if r.match else 'unknown'} among "
                      f"{r.searched_subjects} consented subject(s)")
        r = svc.identify(photo(images, PAYMENT_ONLY, "smiling"), purpose="payment")
        console.print(f"  till (payment): {r.match.subject_id if r.match else 'unknown'} among "
                      f"{r.searched_subjects} consented subject(s)")

        sides = " + ".join(svc.engine.settings.side_models)
        say(f"At the till, payment asks for {svc.settings.purposes['payment'].mode} mode (dlib + {sides} fused)"
            + (f"; {PAYMENT_ONLY} was enrolled for it, so both templates were stored" if svc.fusion is not None
               else ", which this bundle does not sign yet: the answers say what ran"))
        v = svc.verify(photo(images, PAYMENT_ONLY, "smiling"), subject_id=PAYMENT_ONLY, purpose="payment")
        d = v.decision
        console.print(f"  {PAYMENT_ONLY} pays: {'MATCH' if d.match else 'NO MATCH'} in {d.mode} mode, score "
                      f"{d.distance:.2f} vs threshold {d.threshold:.2f} at FMR {d.target_fmr:g}"
                      + (f" ({v.note})" if v.note else ""))
        r = svc.identify(photo(images, STRANGER, "smiling"), purpose="payment")
        console.print(f"  a stranger ({STRANGER}) at the till: {r.match.subject_id if r.match else 'unknown'} in"
                      f" {r.mode} mode at FPIR {r.target_fpir:g} (FMR {r.target_fmr:.2g} per comparison among"
                      f" {r.searched_subjects})" + (f" ({r.note})" if r.note else ""))
        try:
            svc.verify(photo(images, PAYMENT_ONLY, "smiling"), subject_id=PAYMENT_ONLY, purpose="access-control")
        except ConsentRequired as exc:
            console.print(f"  verify {PAYMENT_ONLY} at the door: refused ({exc.code}), photo never decoded")

        say("Volunteer 002 withdraws consent for access-control: it was the last purpose, so the face is erased")
        w = svc.withdraw_consent("002", "access-control")
        assert w.receipt is not None
        console.print(f"  {w.receipt['erased']['templates']} template(s) erased, key destroyed (audit "
                      f"#{w.receipt['audit_seq']})")
        r = svc.identify(photo(images, "002", "smiling"), purpose="access-control")
        console.print(f"  identifying 002 at the door now: {r.match.subject_id if r.match else 'unknown'}")

        say("Volunteer 005 refuses face recognition and gets a PIN: the same door check, no face involved")
        issued = svc.issue_credential("005", "access-control", "pin")
        sid, _credential = svc.check_credential("access-control", subject_id="005", pin=issued.secret)
        console.print(f"  PIN {issued.secret} (shown once, stored as a scrypt hash): door ACCEPTS {sid}")

        say("Listing subjects")
        for s in svc.subjects():
            console.print(f"  {s.subject_id}  {s.name}  {s.pseudonym}  templates={s.templates}")

        say("Erasing volunteer 003: destroying the subject's key makes every copy of its template unreadable")
        e = svc.delete("003")
        receipt_path = workdir / "erasure-receipt-003.json"
        receipt_path.write_text(json.dumps(e["receipt"], indent=2) + "\n")
        console.print(f"  erased {e['templates_erased']} template(s) of {e['pseudonym']}; signed receipt in "
                      f"{receipt_path} (audit #{e['receipt']['audit_seq']})")
        svc.verify_receipt(json.loads(receipt_path.read_text()))
        console.print(f"  receipt verified against the deployment's public key {svc.receipt_public_key[:16]}...")
        r = svc.identify(photo(images, "003", "smiling"))
        console.print(f"  identifying 003 now: {r.match.subject_id if r.match else 'unknown'}")

        say("Three years pass (simulated clock): consents given for three years expire, the sweep erases what is due")
        clock.now += 3 * 365.25 * 86400 + 86400
        plan = svc.sweep(dry_run=True)
        console.print(f"  dry run: {len(plan.consents_ended)} consent(s) and {len(plan.faces_erased)} face(s) due")
        sweep = svc.sweep()
        for c in sweep.consents_ended:
            console.print(f"  ended {c['purpose']} consent of {c['subject']}: {c['reason']}")
        for f in sweep.faces_erased:
            console.print(f"  erased face of {f['subject']} (receipt, audit #{f['audit_seq']})")
        console.print(f"  a second sweep finds {svc.sweep().total} thing(s) to do (safe to run from cron)")

        say("Checking the audit chain (HMAC-keyed, anchored in the key directory)")
        chain = svc.verify_audit()
        console.print(f"  {'intact' if chain.ok else 'BROKEN'}: {chain.entries} entries verified in "
                      f"{chain.seconds * 1000:.1f} ms")

        say("Scanning the deployment's files for photos or readable templates")
        problems = scan_for_leaks(svc, images, PEOPLE)
    finally:
        svc.close()
    say("Done. " + ("Nothing but protected templates is on disk." if not problems else "LEAK FOUND"))
    return 1 if problems else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=Path, default=Path("tests/data"), help="folder holding london/<id>/*.jpg")
    ap.add_argument("--workdir", type=Path, default=Path("demo-deployment"))
    args = ap.parse_args()
    # then the same site as an HTTP service: facekeeper serve on loopback, called with the SDK, stopped
    raise SystemExit(run(args.images, args.workdir) or api_demo.run(args.images, args.workdir / "service"))


if __name__ == "__main__":
    main()
