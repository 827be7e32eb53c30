"""The HTTP service part of ``make demo``: ``facekeeper serve`` on loopback, called with the SDK, stopped.

It creates a service root with one tenant (its own deployment and key), keys for an operator, a gate and
an auditor, starts the real server process (worker processes, egress guard on), and then: the operator
records consents and enrolls two volunteers; the gate identifies a photo; an edge terminal identifies
from a descriptor it made itself (no photo sent); a stranger is "unknown"; a person is erased with a
signed receipt; the auditor checks the receipt, the audit chain and the egress counter. Then it stops.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rich.console import Console

from facekeeper.api.keys import KeyStore
from facekeeper.api.server import ServerProcess
from facekeeper.api.tenants import Layout
from facekeeper.bundle.trust import ENV_EVALUATION_KEY
from facekeeper.client import Client, EdgeTerminal
from facekeeper.publisher.testing import install_demo_license

console = Console(soft_wrap=True)
TENANT = "demo-site"
PURPOSE = "access-control"
NOTICE = {"version": "demo-1", "controller": "Demo Site Ltd", "contact": "privacy@demo.invalid",
          "retention": "Until you withdraw, 3 years unused, or 3 years at most.",
          "rights": "Access, withdrawal, erasure, a PIN instead of your face, a complaint to the authority."}


def say(text: str) -> None:
    console.print(f"\n[bold magenta]>[/bold magenta] {text}")


def run(images: Path, workdir: Path) -> int:
    """Run the service demo in ``workdir`` (replaced); 0 when every step answered as expected."""
    if workdir.exists():
        shutil.rmtree(workdir)
    layout = Layout(workdir / "root", workdir / "keys")
    photo = {p: images / "london" / p / "neutral.jpg" for p in ("001", "002", "009")}
    smiling = {p: images / "london" / p / "smiling.jpg" for p in ("001", "002")}

    say(f"HTTP service: tenant {TENANT} as a deployment of its own under {layout.root}, its key in"
        f" {layout.key_root}")
    svc = layout.create(TENANT)
    try:
        lic = install_demo_license(svc, workdir / "vendor")
        svc.set_notice(**NOTICE)
    finally:
        svc.close()
    console.print(f"  license: {lic.licensee}, evaluation, {lic.subject_cap} subjects; privacy notice filled in")
    store = KeyStore(layout.api_keys_path)
    keys = {role: store.create(TENANT, role, PURPOSE if role == "device" else None, f"demo {role}").token
            for role in ("operator", "device", "auditor")}
    store.close()
    console.print("  API keys: operator, device (purpose access-control), auditor; shown once, stored as salted"
                  " HMAC verifiers (0600)")

    say("Starting 'facekeeper serve' on 127.0.0.1 (one worker process, egress guard on)")
    ok = True
    with ServerProcess(layout, args=["--workers", "1"], log=workdir / "serve.log") as server:
        console.print(f"  listening on {server.url}/v1 (OpenAPI at {server.url}/v1/openapi.json)")
        with Client(server.url, keys["operator"]) as op, Client(server.url, keys["device"]) as gate, \
                Client(server.url, keys["auditor"]) as auditor:
            say("Operator: consent, then enrollment, over HTTP (multipart upload)")
            for person in ("001", "002"):
                op.grant_consent(person, PURPOSE, "checkbox", "kiosk 1, demo")
                r = op.enroll([photo[person]], person, f"Volunteer {person}", purpose=PURPOSE)
                console.print(f"  {person}: {r.templates_added} protected template as {r.pseudonym}")

            say("Gate (device key, its purpose implied): identify a new photo of volunteer 001")
            found = gate.identify(smiling["001"])
            ok &= found.match is not None and found.match.subject_id == "001"
            console.print(f"  answer: {found.match.subject_id if found.match else 'unknown'}")

            say("Edge terminal: the descriptor is made on the terminal; only 128 numbers are sent")
            terminal = EdgeTerminal(gate)
            edge = terminal.identify(smiling["002"])
            ok &= edge.match is not None and edge.match.subject_id == "002"
            console.print(f"  answer: {edge.match.subject_id if edge.match else 'unknown'} (model"
                          f" {terminal.model_id}, no photo left the terminal)")
            stranger = gate.identify(photo["009"])
            ok &= stranger.unknown
            console.print(f"  a stranger: {'unknown' if stranger.unknown else 'MATCHED'}")

            say("Operator: erase volunteer 001; the auditor checks the signed receipt and the audit chain")
            erased = op.erase("001")
            valid = auditor.verify_receipt(erased.receipt).valid
            chain = auditor.verify_audit()
            ok &= valid and chain.ok and gate.identify(smiling["001"]).unknown
            console.print(f"  erased {erased.templates_erased} template(s); receipt valid: {valid}; audit chain"
                          f" {'intact' if chain.ok else 'BROKEN'} ({chain.entries} entries)")
            blocked = next(line for line in auditor.metrics().splitlines()
                           if line.startswith("facekeeper_egress_blocked_total"))
            console.print(f"  metrics: {blocked}")
            ok &= blocked.endswith(" 0")
    say("Service stopped. " + ("Every step answered as expected." if ok else "A STEP FAILED"))
    say("The web console on this deployment: one command serves it and prints its address and a one-time admin"
        " sign-in link")
    vendor_key = os.environ.get(ENV_EVALUATION_KEY, "")
    console.print(f"  {ENV_EVALUATION_KEY}={vendor_key} .venv/bin/facekeeper console open --tenant {TENANT}"
                  f" --root {layout.root} --key-root {layout.key_root}", markup=False)
    return 0 if ok else 1
