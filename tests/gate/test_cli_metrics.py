"""``facekeeper gate run`` / ``gate status``, the door settings, and the gate's series in ``/v1/metrics``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facekeeper import config
from facekeeper.api.metrics import Metrics, gates_in
from facekeeper.config import DoorSettings
from facekeeper.errors import ConfigError
from facekeeper.gate.runner import GateMetrics
from facekeeper.service import Service
from tests.gate.conftest import DOOR
from tests.gate.videos import Walk, make_video

runner = CliRunner()


def test_gate_run_decides_and_gate_status_shows_the_counts(site: Service, tmp_path: Path) -> None:
    from facekeeper.cli.main import app

    video = make_video(tmp_path / "door.avi", [Walk("003", 0.0, 2.0, x0=20, x1=160)], seconds=2.5)
    home = str(site.settings.data_dir)
    result = runner.invoke(app, ["--home", home, "gate", "run", "--source", str(video), "--door", DOOR,
                                 "--purpose", "access-control"])
    assert result.exit_code == 0, result.output
    assert f"door {DOOR}: open (face), door answer logged" in result.output
    assert "003" not in result.output  # the console says what happened at the door, not who

    status = runner.invoke(app, ["--home", home, "--json", "gate", "status"])
    assert status.exit_code == 0, status.output
    (door,) = json.loads(status.stdout)
    assert (door["door"], door["frames"], door["decisions"]) == (DOOR, 25, {"open": 1})
    assert door["latency_count"] == 1 and door["decode_errors"] == 0
    entry = [e for e in site.privacy.audit.entries() if e.action == "gate.decide"][-1]
    assert (entry.actor, entry.role, entry.outcome) == (f"gate-{DOOR}", "device", "open")

    human = runner.invoke(app, ["--home", home, "gate", "status"])
    assert human.exit_code == 0 and DOOR in human.output and "open 1" in human.output


def test_gate_run_refuses_an_unknown_door_and_a_camera_outside_the_allowed_networks(site: Service) -> None:
    from facekeeper.cli.main import app

    home = str(site.settings.data_dir)
    unknown = runner.invoke(app, ["--home", home, "gate", "run", "--source", "rtsp://127.0.0.1/x", "--door", "side"])
    assert unknown.exit_code == ConfigError.exit_code and "[doors.side]" in unknown.output
    outside = runner.invoke(app, ["--home", home, "gate", "run", "--source", "rtsp://10.9.8.7/x", "--door", DOOR])
    assert outside.exit_code == ConfigError.exit_code and "allow_nets" in outside.output


def test_door_settings_round_trip_and_secrets_are_only_references(site: Service) -> None:
    s = site.settings
    s.gate.allow_nets = ["192.168.10.0/24"]
    s.doors["side"] = DoorSettings(output="webhook", url="https://192.168.10.5/grant", secret="env:SIDE_DOOR_KEY",
                                   anti_passback_seconds=30.0)
    s.save()
    loaded = config.load(s.data_dir)
    assert loaded.doors["side"] == s.doors["side"] and loaded.gate.allow_nets == ["192.168.10.0/24"]
    s.doors["side"].secret = "hunter2"
    with pytest.raises(ConfigError, match="reference"):
        config.validate(s)
    s.doors["side"] = DoorSettings(output="wiegand")
    with pytest.raises(ConfigError, match="output"):
        config.validate(s)


def test_metrics_show_each_gate_by_door_and_nothing_about_who_passed(tmp_path: Path) -> None:
    from facekeeper.gate.runner import status_path, write_status

    m = GateMetrics(DOOR, "rtsp://127.0.0.1/door", connected=True, frames=120, frames_per_second=15.5,
                    decode_errors=2, reconnects=1, tracks_started=3, tracks_without_match=1,
                    decisions={"open": 2, "unknown": 1}, door_answers={"accepted": 2})
    m.decided(None, "unknown", 0.3)
    write_status(status_path(tmp_path / "tenants" / "north", DOOR), m)
    text = Metrics(gates=gates_in(lambda tenant: tmp_path / "tenants" / tenant)).render("north")
    assert 'facekeeper_gate_frames_total{tenant="north",door="main"} 120' in text
    assert 'facekeeper_gate_frames_per_second{tenant="north",door="main"} 15.5' in text
    assert 'facekeeper_gate_decode_errors_total{tenant="north",door="main"} 2' in text
    assert 'facekeeper_gate_decisions_total{tenant="north",door="main",outcome="unknown"} 2' in text
    assert 'facekeeper_gate_decision_latency_seconds_count{tenant="north",door="main"} 1' in text
    assert 'facekeeper_gate_tracks_active{tenant="north",door="main"} 0' in text
    assert "door=" not in Metrics(gates=gates_in(lambda tenant: tmp_path / "tenants" / tenant)).render("south")
