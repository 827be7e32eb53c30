"""The admin's Gates & liveness page: each gate's status file and the day's liveness sessions by outcome,
through the declared ``devices_status`` operation (audited); counts only."""

from __future__ import annotations

import re
import time

from fastapi.testclient import TestClient

from facekeeper.api.tenants import Layout
from facekeeper.gate.runner import GateMetrics, status_path, write_status
from facekeeper.liveness.summary import outcomes
from facekeeper.privacy import Actor
from facekeeper.service import Service
from tests.web.conftest import sign_in
from tests.web.test_console import entries

ADMIN = Actor("test", "admin")
HOUR = 3600.0


def _sessions(svc: Service, rows: list[tuple[str, float, float]]) -> None:
    """Liveness sessions as the session table holds them: (state, started, deadline); one is started for real."""
    svc.liveness_start(purpose="payment", actor=ADMIN)
    with svc.gallery.store.transaction() as db:
        for i, (state, created, expires) in enumerate(rows):
            db.execute("INSERT INTO liveness_sessions (id, nonce_mac, purpose, subject, device, challenge,"
                       " created_at, expires_at, state, decided_at, reasons, sealed)"
                       " VALUES (?, 'x', 'payment', NULL, 'acme/till-1', '[]', ?, ?, ?, ?, '[]', NULL)",
                       (f"s{i}", created, expires, state, None if state == "open" else created + 5))


def test_liveness_outcomes_count_the_period_only_and_an_unanswered_past_deadline_as_never_answered(
        layout: Layout) -> None:
    now = time.time()
    with Service.open(layout.data_dir("acme")) as svc:
        _sessions(svc, [("consumed", now - HOUR, now - HOUR + 60), ("spoof", now - 2 * HOUR, now),
                        ("spoof", now - 2 * HOUR, now), ("open", now - HOUR, now - HOUR + 60),
                        ("live", now - 48 * HOUR, now - 48 * HOUR + 60)])
        counts = outcomes(svc.gallery.store.db, now - 24 * HOUR, now + 1)
    assert counts["by_outcome"] == {"live": 0, "consumed": 1, "spoof": 2, "uncertain": 0, "open": 1, "expired": 1}
    assert counts["total"] == 5  # the two-day-old session is outside the day


def test_the_admin_sees_each_gate_and_the_days_liveness_sessions(client: TestClient, layout: Layout) -> None:
    data, now = layout.data_dir("acme"), time.time()
    write_status(status_path(data, "main"), GateMetrics(
        "main", "rtsp://camera-1/stream", started_at=now - 600, updated_at=now, connected=True, frames=8880,
        frames_per_second=14.8, decode_errors=3, drops=2, reconnects=1, tracks_started=7, tracks_active=1,
        tracks_without_match=2, decisions={"opened": 5, "unknown": 2}, door_answers={"granted": 5},
        latency_sum=1.5, latency_count=5))
    write_status(status_path(data, "side"), GateMetrics("side", "rtsp://camera-2/stream", updated_at=now - HOUR))
    with Service.open(data) as svc:
        _sessions(svc, [("spoof", now - HOUR, now), ("consumed", now - HOUR, now)])
    sign_in(client, "ada")
    before = len(entries(layout))
    r = client.get("/console/acme/devices")
    assert r.status_code == 200
    html = r.text
    main, side = html.split("<h3>Door main</h3>")[1].split("<h3>Door side</h3>")
    assert "running</span> camera connected" in main and "14.8" in main and "8880 frames" in main
    assert "3 (2 frames dropped, 1 reconnections)" in main and "1 now, 7 in all, 2 without a match" in main
    assert "opened 5, unknown 2" in main and "granted 5" in main and "300 ms on average over 5" in main
    assert "not running" in side
    cells = dict(re.findall(r'id="liveness-(\w+)">(\d+)<', html))
    assert cells == {"live": "0", "consumed": "1", "spoof": "1", "uncertain": "0", "open": "1", "expired": "0"}
    assert [(e.actor, e.action, e.outcome) for e in entries(layout)[before:]] == [
        ("console:ada", "devices.status", "ok")]


def test_a_site_without_gates_or_sessions_says_so(client: TestClient) -> None:
    sign_in(client, "ada")
    assert "Gates &amp; liveness" in client.get("/console/acme").text  # in the admin's menu
    html = client.get("/console/acme/devices").text
    assert "No gate has run in this deployment" in html and "No liveness session was started" in html


def test_operators_and_auditors_do_not_get_the_page(client: TestClient) -> None:
    for name in ("olga", "audrey"):
        sign_in(client, name)
        assert "Gates &amp; liveness" not in client.get("/console/acme").text
        assert client.get("/console/acme/devices").status_code == 403
