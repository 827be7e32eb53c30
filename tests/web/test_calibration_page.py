"""The auditor's calibration page: the signed tables and their provenance, the site's adopted table, and the
DET curve of the last ``facekeeper eval --deployment``, all through one declared, audited operation."""

from __future__ import annotations

import json
import re
import shutil
from html import escape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from facekeeper.api.tenants import Layout
from facekeeper.matching import CalibrationTable
from facekeeper.provenance import LAST_EVAL
from facekeeper.service import Service
from tests.conftest import LONDON
from tests.web.conftest import sign_in
from tests.web.test_console import entries


def test_the_auditor_sees_the_signed_tables_and_their_provenance(client: TestClient, layout: Layout) -> None:
    sign_in(client, "audrey")
    before = len(entries(layout))
    r = client.get("/console/acme/system")
    assert r.status_code == 200
    with Service.open(layout.data_dir("acme")) as svc:
        bundle, table = svc.bundle, svc.table
    html = r.text
    assert f"Bundle <strong>{bundle.version}</strong>" in html and bundle.key_id in html
    assert escape(table.source) in html and f"{table.impostor_pairs:,}" in html
    for _, threshold in table.points:
        assert f"{threshold:.4f}" in html
    assert f"the table signed in bundle {bundle.version}" in html and "No evaluation is recorded" in html
    assert [(e.actor, e.action, e.outcome) for e in entries(layout)[before:]] == [
        ("console:audrey", "license.status", "ok"), ("console:audrey", "calibration.status", "ok")]


def test_an_operator_is_refused_the_calibration_page(client: TestClient, layout: Layout) -> None:
    sign_in(client, "olga")
    r = client.get("/console/acme/system")
    assert r.status_code == 403 and "Threshold" not in r.text
    assert [(e.action, e.outcome) for e in entries(layout) if e.actor == "console:olga"] == [
        ("license.status", "refused:forbidden")]


def _adopt(layout: Layout, source: str) -> None:
    """A site table as ``facekeeper calibrate adopt`` leaves it (the MAC'd file), without the 10+ people."""
    with Service.open(layout.data_dir("acme")) as svc:
        model = svc.engine.model_id
        site = CalibrationTable(model, source, 1200, 80, ((0.001, 0.4876), (0.01, 0.5432)))
        svc.calibration.tables.write({"proposed": {}, "adopted": {model: {
            "table": site.to_dict(), "adopted_at": 1_790_000_000.0, "measured_at": 1_790_000_000.0}}})
        assert svc.table == site  # what decides now


def test_an_adopted_site_table_is_shown_as_the_one_in_force(client: TestClient, layout: Layout) -> None:
    _adopt(layout, "site self-calibration 2026-09-21: 40 subjects")
    sign_in(client, "audrey")
    html = client.get("/console/acme/system").text
    in_force = re.search(r'<table id="in-force">.*?</table>', html, re.S).group(0)  # type: ignore[union-attr]
    assert "the site's own table</strong>, adopted 2026-09-21" in in_force
    assert "site self-calibration 2026-09-21: 40 subjects" in in_force
    assert "0.4876" in html and "0.5432" in html


def test_an_altered_site_file_is_reported_not_shown(client: TestClient, layout: Layout) -> None:
    _adopt(layout, "site self-calibration 2026-09-21: 40 subjects")
    path = layout.data_dir("acme") / "site-calibration.json"
    path.write_text(path.read_text().replace("0.5432", "0.9"))
    sign_in(client, "audrey")
    r = client.get("/console/acme/system")
    assert r.status_code == 200 and "calibration file is refused" in r.text and "was altered" in r.text
    assert "0.9" not in re.search(r'<table id="in-force">.*?</table>', r.text, re.S).group(0)  # type: ignore[union-attr]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "labelled"
    for person in ("001", "002", "003", "004"):
        shutil.copytree(LONDON / person, root / person)
    return root


def test_eval_with_deployment_keeps_aggregates_and_the_page_draws_its_det_curve(
        client: TestClient, layout: Layout, photos: Path, tmp_path: Path) -> None:
    from facekeeper.cli.main import app

    home = layout.data_dir("acme")
    args = ["--home", str(home), "--json", "eval", str(photos), "--out", str(tmp_path / "r.md"), "--no-plot",
            "--modes", "fast", "--name", "four volunteers"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert not (home / LAST_EVAL).exists()  # only when asked
    result = CliRunner().invoke(app, [*args, "--deployment"])
    assert result.exit_code == 0, result.output
    assert str(home / LAST_EVAL) in json.loads(result.output)["written"]
    assert (home / LAST_EVAL).stat().st_mode & 0o077 == 0
    text = (home / LAST_EVAL).read_text()
    doc = json.loads(text)
    assert str(photos) not in text and ".jpg" not in text  # numbers, not photos or paths
    assert doc["summary"]["genuine_pairs"] == 4 and doc["summary"]["impostor_pairs"] == 24
    assert list(doc["det"]) == ["fast"] and all(0 <= f <= 1 and 0 <= n <= 1 for f, n in doc["det"]["fast"])

    sign_in(client, "audrey")
    html = client.get("/console/acme/system").text
    assert f"recorded {doc['recorded_at']}" in html and "four volunteers (8 photos" in html
    det = re.search(r'<svg[^>]*aria-label="DET curve: four volunteers.*?</svg>', html, re.S)
    assert det and det.group(0).count("<polyline") == 1
    assert len(re.search(r'<polyline points="([^"]+)"', det.group(0)).group(1).split()) == len(  # type: ignore[union-attr]
        doc["det"]["fast"])


def test_eval_with_deployment_refuses_a_folder_that_is_no_deployment(photos: Path, tmp_path: Path) -> None:
    from facekeeper.cli.main import app

    result = CliRunner().invoke(app, ["--home", str(tmp_path / "nowhere"), "eval", str(photos), "--out",
                                      str(tmp_path / "r.md"), "--no-plot", "--modes", "fast", "--deployment"])
    assert result.exit_code != 0 and "no deployment at" in result.output
    assert not (tmp_path / "nowhere").exists()


def test_an_unreadable_last_eval_is_said_in_words(client: TestClient, layout: Layout) -> None:
    path = layout.data_dir("acme") / LAST_EVAL
    path.parent.mkdir()
    path.write_text("{not json")
    sign_in(client, "audrey")
    r = client.get("/console/acme/system")
    assert r.status_code == 200 and "is unreadable" in r.text and "run the eval again" in r.text


def test_the_det_chart_spaces_decades_evenly_and_draws_a_zero_rate_on_the_axis() -> None:
    from facekeeper.web.charts import det_curve

    svg = str(det_curve({"fast": [[0.0, 1.0], [1 / 60, 1 / 6], [0.5, 0.0]]}, 6, 60))
    x = {label: float(pos) for pos, label in re.findall(r'<text x="([\d.]+)" y="334"[^>]*class="tick">(1e-?\d)<', svg)}
    assert set(x) == {"1e-2", "1e-1", "1e0"}
    assert x["1e0"] - x["1e-1"] == pytest.approx(x["1e-1"] - x["1e-2"])
    points = [tuple(map(float, p.split(","))) for p in re.search(r'points="([^"]+)"', svg).group(1).split()]  # type: ignore[union-attr]
    assert points[0][0] == 56.0 and points[-1][1] == 320.0  # FMR 0 on the left edge, FNMR 0 on the bottom
