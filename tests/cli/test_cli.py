"""The command line: plain output for people, --json for scripts, one exit code per error class."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facekeeper.cli.main import app
from facekeeper.errors import ALL_ERRORS
from facekeeper.service import Service
from tests.conftest import DATA, london, ready
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "site"
    result = runner.invoke(app, ["--home", str(home), "init", "--key-dir", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    with Service.open(home) as svc:
        ready(svc)
    return home


def fk(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(home), *args])
    return result.exit_code, result.output


def fkj(home: Path, *args: str) -> tuple[int, dict]:
    code, output = fk(home, "--json", *args)
    return code, json.loads(output)


def test_exit_codes_are_distinct_per_error_class() -> None:
    codes = [cls.exit_code for cls in ALL_ERRORS if cls.__name__ != "FacekeeperError"]
    assert len(codes) == len(set(codes))
    assert 0 not in codes


def test_enroll_verify_identify_list_delete(home: Path) -> None:
    code, out = fk(home, "enroll", str(london("001")), str(london("001", "smiling")), "--subject", "001",
                   "--name", "Volunteer One")
    assert code == 0 and "2 template(s)" in out
    assert fk(home, "enroll", str(london("002")), "--subject", "002")[0] == 0

    code, r = fkj(home, "verify", str(london("001", "smiling")), "--subject", "001")
    assert code == 0 and r["match"] is True and r["against"] == "subject"
    code, r = fkj(home, "verify", str(london("002", "smiling")), str(london("001")))
    assert code == 0 and r["match"] is False

    code, r = fkj(home, "identify", str(london("002", "smiling")), "-k", "2")
    assert code == 0 and r["match"]["subject_id"] == "002" and len(r["candidates"]) == 2
    code, r = fkj(home, "identify", str(london("009")))
    assert code == 0 and r["unknown"] is True

    code, rows = fkj(home, "subjects", "list")
    assert [row["subject_id"] for row in rows] == ["001", "002"]
    code, shown = fkj(home, "subjects", "show", "001")
    assert shown["name"] == "Volunteer One" and shown["templates"] == 2

    code, out = fk(home, "subjects", "delete", "001")
    assert code == 0 and "Erased 001" in out
    code, out = fk(home, "subjects", "show", "001")
    assert code == 20 and "unknown-subject" in out


def test_errors_are_one_line_with_what_to_do(home: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not a jpeg")
    code, out = fk(home, "enroll", str(junk), "--subject", "x")
    assert code == 10 and out.count("\n") == 1 and "bad-image" in out and "Traceback" not in out
    code, out = fk(home, "enroll", str(DATA / "multi" / "obama_and_biden.jpg"), "--subject", "x")
    assert code == 13
    code, r = fkj(home, "verify", str(junk), str(london("001")))
    assert code == 10 and r["error"]["code"] == "bad-image"


def test_missing_deployment_says_to_run_init(tmp_path: Path) -> None:
    code, out = fk(tmp_path / "nothing-here", "subjects", "list")
    assert code == 3 and "facekeeper init" in out


def test_enroll_dir_enrolls_people_and_reports_skips(home: Path, tmp_path: Path) -> None:
    root = tmp_path / "people"
    for person in ("001", "002", "003"):
        shutil.copytree(london(person).parent, root / person)
    shutil.copy(DATA / "multi" / "obama_and_biden.jpg", root / "003" / "group.jpg")
    (root / "003" / "broken.jpg").write_bytes(london("003").read_bytes()[:3000])
    code, r = fkj(home, "enroll-dir", str(root))
    assert code == 0
    assert r["subjects"] == 3 and r["templates"] == 6
    assert {s["file"]: s["code"] for s in r["skipped"]} == {"003/broken.jpg": "bad-image",
                                                           "003/group.jpg": "multiple-faces"}


def test_detect_prints_boxes_and_landmarks(home: Path) -> None:
    code, out = fk(home, "--json", "detect", str(DATA / "multi" / "obama_and_biden.jpg"))
    faces = json.loads(out)["faces"]
    assert code == 0 and len(faces) >= 2
    assert len(faces[0]["landmarks"]) == 68 and set(faces[0]["box"]) == {"left", "top", "right", "bottom"}
    code, out = fk(home, "--json", "detect", "--landmarks", "5", str(london("001")))
    assert len(json.loads(out)["faces"][0]["landmarks"]) == 5
