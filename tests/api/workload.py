"""A full site workload through the SDK: consent, enroll, identify (photo and edge), verify, credentials,
erase, withdraw, sweep, audit. Used in-process by the tests and, as ``python -m tests.api.workload``, inside
an empty network namespace by the no-egress test.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from facekeeper.api.server import ServerProcess
from facekeeper.api.tenants import Layout
from facekeeper.client import Client, EdgeTerminal
from facekeeper.engine import Engine

LONDON = Path(__file__).resolve().parents[1] / "data" / "london"
PURPOSE = "access-control"


def photo(person: str, pose: str = "neutral") -> Path:
    return LONDON / person / f"{pose}.jpg"


def run(url: str, tokens: dict[str, str], engine: Engine | None = None) -> dict[str, Any]:
    """Drive one tenant through a day's work; returns what happened (asserted on by the caller)."""
    out: dict[str, Any] = {}
    with Client(url, tokens["operator"]) as op, Client(url, tokens["device"]) as gate, \
            Client(url, tokens["auditor"]) as auditor, Client(url, tokens["operator"], upload="json") as op_json:
        for person in ("w-001", "w-002", "w/003"):
            op.grant_consent(person, PURPOSE, "checkbox", "kiosk 1")
        out["enrolled"] = [op.enroll([photo("001")], "w-001", "Worker One", purpose=PURPOSE).templates_added,
                           op_json.enroll([photo("002")], "w-002", purpose=PURPOSE).templates_added,
                           op.enroll([photo("003")], "w/003", purpose=PURPOSE).templates_added]
        found = gate.identify(photo("001", "smiling"))
        out["identified"] = found.match.subject_id if found.match else None
        out["stranger"] = gate.identify(photo("009")).unknown
        out["verified"] = gate.verify(photo("003", "smiling"), subject_id="w/003").match
        terminal = EdgeTerminal(gate, engine=engine)
        edge = terminal.identify(photo("002", "smiling"))
        out["edge_identified"] = edge.match.subject_id if edge.match else None
        out["edge_verified"] = terminal.verify(photo("002", "smiling"), "w-002").match
        pin = op.issue_credential("w-001", PURPOSE, "pin")
        out["pin_accepted"] = gate.check_credential(subject_id="w-001", pin=pin.secret).accepted
        erased = op.erase("w-001")
        out["erased_templates"] = erased.templates_erased
        out["receipt_valid"] = auditor.verify_receipt(erased.receipt).valid
        out["withdrawn_erased"] = op.withdraw_consent("w/003", PURPOSE).templates_erased
        out["after_erase"] = gate.identify(photo("001", "smiling")).match is None
        out["subjects"] = sorted(s.subject_id for s in op.subjects())
        out["swept"] = op.sweep()["total"]
        out["audit_ok"] = auditor.verify_audit().ok
        out["audit_entries"] = len(auditor.export_audit()["entries"])
    return out


def main() -> None:
    """``python -m tests.api.workload ROOT KEY_ROOT TOKENS_JSON``: start ``facekeeper serve`` (worker
    processes, egress guard on) here, run the workload, print the outcome as JSON."""
    root, key_root, tokens = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    with ServerProcess(Layout(root, key_root), args=["--workers", "1"], log=root / "serve.log",
                       env={"FACEKEEPER_EGRESS_LOG": os.environ.get("FACEKEEPER_EGRESS_LOG", "")}) as server:
        result = run(server.url, tokens)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
