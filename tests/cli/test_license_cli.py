"""``facekeeper license``: the customer sees its deployment id, installs the vendor's file, sees the terms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facekeeper.cli.main import app
from facekeeper.publisher.testing import EvaluationVendor
from tests.conftest import london
from tests.publisher_fixtures import evaluation_vendor_fixture  # noqa: F401

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "site"
    assert runner.invoke(app, ["--home", str(home), "init", "--key-dir", str(tmp_path / "keys")]).exit_code == 0
    return home


def fk(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(home), *args])
    return result.exit_code, result.output


def test_show_without_a_license_gives_the_deployment_id(home: Path) -> None:
    code, out = fk(home, "--json", "license", "show")
    data = json.loads(out)
    assert code == 0 and data["state"] == "missing" and len(data["deployment_id"]) == 32
    code, out = fk(home, "verify", str(london("001")), str(london("001", "smiling")))
    assert code == 34 and "license-error" in out and "license install" in out
    code, out = fk(home, "--json", "detect", str(london("001")))
    assert code == 0 and len(json.loads(out)["faces"]) == 1


def test_install_then_show_then_use(home: Path, tmp_path: Path, evaluation_vendor: EvaluationVendor) -> None:
    deployment_id = json.loads(fk(home, "--json", "license", "show")[1])["deployment_id"]
    path = tmp_path / "license.json"
    path.write_bytes(evaluation_vendor.issue(deployment_id, features=["verify"], max_subjects=5))
    code, out = fk(home, "license", "install", str(path))
    assert code == 0 and "Installed license" in out and "evaluation" in out
    code, out = fk(home, "--json", "license", "show")
    data = json.loads(out)
    assert data["state"] == "valid" and data["license"]["features"] == ["verify"]
    code, out = fk(home, "license", "show")
    assert "subjects: 0 of 5" in out and deployment_id in out
    code, out = fk(home, "--json", "verify", str(london("001")), str(london("001", "smiling")))
    assert code == 0 and json.loads(out)["match"] is True
    code, out = fk(home, "identify", str(london("001", "smiling")))
    assert code == 34 and "does not include 'identify'" in out


def test_an_edited_or_foreign_license_is_not_installed(home: Path, tmp_path: Path,
                                                       evaluation_vendor: EvaluationVendor) -> None:
    deployment_id = json.loads(fk(home, "--json", "license", "show")[1])["deployment_id"]
    doc = json.loads(evaluation_vendor.issue(deployment_id, max_subjects=5))
    doc["license"]["max_subjects"] = 5000
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    code, out = fk(home, "license", "install", str(edited))
    assert code == 34 and "edited" in out
    other = tmp_path / "other.json"
    other.write_bytes(evaluation_vendor.issue("0" * 32))
    code, out = fk(home, "license", "install", str(other))
    assert code == 34 and "cannot move between deployments" in out
    assert json.loads(fk(home, "--json", "license", "show")[1])["state"] == "missing"
