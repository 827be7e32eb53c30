"""The HTTP service under load and under a crash: concurrent clients mixing enroll / identify / erase.

Two runs against ``facekeeper serve`` on loopback (worker processes, egress guard on), each in a fresh
service root with one tenant:

1. steady: ``--clients`` clients for ``--duration`` seconds;
2. crash: the same, with the server and its workers killed by SIGKILL at ``--kill-at`` of the run and
   started again at once; clients keep going (their requests fail while it is down).

Each client owns its own subjects (so the final state of each is known), grants a consent before an
enrollment, erases some, and identifies with the gate's key. Afterwards the checks: every enrollment the
service acknowledged is there (with at least the acknowledged templates), every acknowledged erasure is
gone, and the tenant's audit chain verifies. A request that failed without an answer leaves its subject
"unknown" until the client's next acknowledged operation on it, and is not checked.

Prints one Markdown section (stdout); ``--append docs/benchmarks.md`` also adds it to that file under its
own heading. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from facekeeper.api.keys import KeyStore
from facekeeper.api.server import ServerProcess
from facekeeper.api.tenants import Layout
from facekeeper.client import Client
from facekeeper.errors import FacekeeperError
from facekeeper.publisher.testing import EvaluationVendor, install_test_license

ROOT = Path(__file__).resolve().parents[1]
LONDON = ROOT / "tests" / "data" / "london"
TENANT = "bench"
PURPOSE = "access-control"
HEADING = "## HTTP service: load and kill -9 (bench/service.py)"
NOTICE = {"version": "bench-1", "controller": "Bench Site Ltd", "contact": "privacy@bench.invalid",
          "retention": "Until withdrawal, 3 years unused, 3 years at most.",
          "rights": "Access, withdrawal, erasure, a PIN instead of a face."}
MIX = (("identify", 0.5), ("enroll", 0.35), ("erase", 0.15))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Subject:
    last: str = "none"  # the last acknowledged operation: "enroll" or "erase"; "unknown" after a lost request
    templates: int = 0  # acknowledged since the last erasure
    consented: bool = False

    @property
    def present(self) -> bool:
        return self.last == "enroll"


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    problems: Counter[str] = field(default_factory=Counter)  # answered with a problem: nothing was done
    lost: Counter[str] = field(default_factory=Counter)  # no answer (the kill): it may or may not have happened
    subjects: dict[str, Subject] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, op: str, seconds: float) -> None:
        with self.lock:
            self.latencies.setdefault(op, []).append(seconds)

    def problem(self, code: str) -> None:
        with self.lock:
            self.problems[code] += 1

    def lost_request(self, kind: str) -> None:
        with self.lock:
            self.lost[kind] += 1


@dataclass
class Site:
    layout: Layout
    tokens: dict[str, str]
    env: dict[str, str]


def make_site(base: Path, vendor: EvaluationVendor) -> Site:
    """A root with one tenant: notice filled in, evaluation license, an operator, a gate and an auditor key."""
    layout = Layout(base / "root", base / "keys")
    vendor.trust()
    svc = layout.create(TENANT)
    install_test_license(svc, vendor=vendor)
    svc.set_notice(**NOTICE)
    svc.close()
    store = KeyStore(layout.api_keys_path)
    tokens = {role: store.create(TENANT, role, PURPOSE if role == "device" else None, "bench").token
              for role in ("operator", "device", "auditor")}
    store.close()
    return Site(layout, tokens, dict(vendor.env))


def photos() -> list[bytes]:
    return [p.read_bytes() for p in sorted(LONDON.glob("*/*.jpg"))]


def client_loop(index: int, clients: int, url: str, site: Site, tally: Tally, stop: float,
                images: list[bytes], pool: int) -> None:
    """One client: its own subjects (``c<index>-<n>``), a random mix of operations until ``stop``."""
    rng = random.Random(index)
    owned = [f"c{index:02d}-{n:03d}" for n in range(pool)]
    with tally.lock:
        for sid in owned:
            tally.subjects[sid] = Subject()
    op_client = Client(url, site.tokens["operator"], timeout=120)
    gate = Client(url, site.tokens["device"], timeout=120)
    try:
        while time.monotonic() < stop:
            kind = rng.choices([m for m, _ in MIX], [w for _, w in MIX])[0]
            present = [s for s in owned if tally.subjects[s].present]
            if kind == "erase" and not present:
                kind = "enroll"
            sid = rng.choice(present) if kind == "erase" else rng.choice(owned)
            state = tally.subjects[sid]
            try:
                image = rng.choice(images)
                if kind == "identify":
                    timed(tally, "identify", gate.identify, image)
                elif kind == "enroll":
                    if not state.consented:
                        timed(tally, "consent", op_client.grant_consent, sid, PURPOSE, "checkbox", "bench")
                        state.consented = True
                    r = timed(tally, "enroll", op_client.enroll, [image], sid, purpose=PURPOSE)
                    state.templates = (state.templates if state.last == "enroll" else 0) + r.templates_added
                    state.last = "enroll"
                else:
                    timed(tally, "erase", op_client.erase, sid)
                    state.last, state.templates, state.consented = "erase", 0, False
            except FacekeeperError as exc:
                tally.problem(exc.code)  # an answer: the service says nothing was done
            except httpx.ConnectError:
                tally.lost_request("refused")  # the server was down: nothing was sent
                time.sleep(0.2)
            except (httpx.HTTPError, OSError):
                tally.lost_request("cut")  # sent, then the connection died: it may or may not have happened
                if kind != "identify":
                    state.last, state.templates, state.consented = "unknown", 0, False
    finally:
        op_client.close()
        gate.close()


def timed(tally: Tally, op: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    t0 = time.perf_counter()
    result = call(*args, **kwargs)
    tally.ok(op, time.perf_counter() - t0)
    return result


@dataclass
class Outcome:
    name: str
    seconds: float
    tally: Tally
    present_ok: int = 0
    present_missing: list[str] = field(default_factory=list)
    erased_ok: int = 0
    erased_found: list[str] = field(default_factory=list)
    unknown: int = 0
    audit_ok: bool = False
    audit_entries: int = 0
    kill_at: float | None = None
    restart_seconds: float | None = None

    @property
    def passed(self) -> bool:
        return not self.present_missing and not self.erased_found and self.audit_ok


def check(url: str, site: Site, outcome: Outcome) -> None:
    """Every acknowledged enrollment present, every acknowledged erasure gone, the audit chain intact."""
    with Client(url, site.tokens["operator"], timeout=120) as op, Client(url, site.tokens["auditor"]) as auditor:
        held = {s.subject_id: s.templates for s in op.subjects()}
        chain = auditor.verify_audit()
    for sid, state in outcome.tally.subjects.items():
        if state.last == "unknown":
            outcome.unknown += 1
        elif state.last == "enroll":
            if held.get(sid, 0) >= state.templates:
                outcome.present_ok += 1
            else:
                outcome.present_missing.append(sid)
        elif state.last == "erase":
            if sid in held:
                outcome.erased_found.append(sid)
            else:
                outcome.erased_ok += 1
    outcome.audit_ok, outcome.audit_entries = chain.ok, chain.entries


def run(name: str, base: Path, vendor: EvaluationVendor, *, clients: int, duration: float, workers: int,
        kill_at: float | None = None, pool: int = 8) -> Outcome:
    site = make_site(base, vendor)
    server = ServerProcess(site.layout, args=["--workers", str(workers), "--rate", "1000", "--burst", "1000"],
                           env=site.env, log=base / "serve.log")
    server.start()
    images = photos()
    tally = Tally()
    outcome = Outcome(name, duration, tally)
    log(f"{name}: {clients} clients for {duration:.0f} s against {server.url} ({workers} workers)")
    started = time.monotonic()
    stop = started + duration
    threads = [threading.Thread(target=client_loop, args=(i, clients, server.url, site, tally, stop, images, pool))
               for i in range(clients)]
    for t in threads:
        t.start()
    if kill_at is not None:
        time.sleep(max(0.0, started + duration * kill_at - time.monotonic()))
        outcome.kill_at = time.monotonic() - started
        log(f"{name}: kill -9 at {outcome.kill_at:.1f} s")
        server.kill()
        t0 = time.monotonic()
        server.start()
        outcome.restart_seconds = time.monotonic() - t0
        log(f"{name}: restarted in {outcome.restart_seconds:.1f} s")
    for t in threads:
        t.join()
    outcome.seconds = time.monotonic() - started
    check(server.url, site, outcome)
    server.stop()
    log(f"{name}: {'PASS' if outcome.passed else 'FAIL'} ({outcome.present_ok} present, {outcome.erased_ok} erased,"
        f" {outcome.unknown} unknown, missing {outcome.present_missing}, found {outcome.erased_found})")
    return outcome


def pct(samples: list[float], q: float) -> str:
    return f"{np.percentile(samples, q) * 1000:.0f}" if samples else "-"


def markdown(outcomes: list[Outcome], clients: int, workers: int) -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    lines = [HEADING, "",
             f"{time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}."
             f" `facekeeper serve --workers {workers}` on 127.0.0.1 (egress guard on), {clients} client threads"
             " in another process on the same machine, each with its own subjects; mix: "
             + ", ".join(f"{int(w * 100)}% {m}" for m, w in MIX)
             + " (an enrollment after an erasure records a new consent first). Photos: the London set, 600x600"
             " JPEG, sent as multipart. Latencies are client-side, in ms.", "",
             "| run | seconds | answered | throughput | identify p50 / p99 | enroll p50 / p99 | erase p50 / p99 |"
             " no answer | acked enrolls present | acked erasures gone | audit chain |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        lat = o.tally.latencies
        answered = sum(len(v) for v in lat.values())
        lost = f"{o.tally.lost['cut']} cut, {o.tally.lost['refused']} refused"
        run_name = o.name + (f" (kill -9 at {o.kill_at:.0f} s, back in {o.restart_seconds:.1f} s)"
                             if o.kill_at is not None and o.restart_seconds is not None else "")
        lines.append(
            f"| {run_name} | {o.seconds:.0f} | {answered} | {answered / o.seconds:.1f} req/s"
            f" | {pct(lat.get('identify', []), 50)} / {pct(lat.get('identify', []), 99)}"
            f" | {pct(lat.get('enroll', []), 50)} / {pct(lat.get('enroll', []), 99)}"
            f" | {pct(lat.get('erase', []), 50)} / {pct(lat.get('erase', []), 99)}"
            f" | {lost} | {o.present_ok} of {o.present_ok + len(o.present_missing)}"
            f" | {o.erased_ok} of {o.erased_ok + len(o.erased_found)}"
            f" | {'intact' if o.audit_ok else 'BROKEN'} ({o.audit_entries} entries) |")
    problems = sum((o.tally.problems for o in outcomes), Counter())
    lines += ["", "Answered counts every operation that got an answer (consents included). No answer: 'cut' requests"
              " were sent when the kill came (they may or may not have happened, so their subjects are left out of"
              " the checks: " + ", ".join(f"{o.unknown} in {o.name}" for o in outcomes) + "); 'refused' ones found"
              " the server down and were retried. Problems answered: "
              + (", ".join(f"{k} {n}" for k, n in sorted(problems.items())) or "none") + ".",
              "", "Photo calls (identify, enroll) are bound by CPU: about a quarter of a second of HOG detection,"
              " landmarks and embedding per 600x600 photo, so the workers serve a few photos a second per core and"
              f" {clients} clients queue behind each other (Little's law: latency = clients / throughput). Erasure,"
              " consents and edge descriptors run in the API process and do not queue behind photos. Load"
              f" average when the run ended: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (a shared"
              " machine)."]
    return "\n".join(lines) + "\n"


def append(path: Path, section: str) -> None:
    """Add (or replace) this script's section, leaving the rest of the file as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if HEADING in text:
        head, _, rest = text.partition(HEADING)
        nxt = rest.find("\n## ")
        text = head + section + (rest[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    path.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--kill-at", type=float, default=0.5, help="fraction of the crash run at which to kill -9")
    ap.add_argument("--append", type=Path, help="also write the section into this Markdown file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fk-bench-service-") as tmp:
        base = Path(tmp)
        vendor = EvaluationVendor(base / "vendor")
        outcomes = [run("steady", base / "steady", vendor, clients=args.clients, duration=args.duration,
                        workers=args.workers),
                    run("crash", base / "crash", vendor, clients=args.clients, duration=args.duration,
                        workers=args.workers, kill_at=args.kill_at)]
    section = markdown(outcomes, args.clients, args.workers)
    sys.stdout.write(section)
    if args.append:
        append(args.append, section)
    raise SystemExit(0 if all(o.passed for o in outcomes) else 1)


if __name__ == "__main__":
    main()
