"""kill -9 in the middle of a bulk enrollment leaves whole subjects, readable and searchable."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facekeeper.service import Service
from tests.conftest import LONDON, NOTICE
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")


def subjects_in(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM subjects").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_kill_during_enroll_dir_leaves_a_consistent_gallery(tmp_path: Path) -> None:
    people = tmp_path / "people"
    for person in sorted(p for p in LONDON.iterdir() if p.is_dir()):
        shutil.copytree(person, people / person.name)
    home, keys = tmp_path / "data", tmp_path / "keys"
    with Service.init(home, keys) as svc:
        svc.set_notice(**NOTICE)
    child = subprocess.Popen(
        [sys.executable, "-m", "facekeeper.cli.main", "--home", str(home), "enroll-dir", str(people),
         "--workers", "2", "--consent", "paper:forms batch 1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while subjects_in(home / "gallery.db") < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGKILL)  # the parent and its worker processes, mid-run
    child.wait()

    with Service.open(home) as svc:
        enrolled = svc.subjects()
        assert 3 <= len(enrolled) < 21, "the run should have been cut short"
        for info in enrolled:
            assert info.templates == 2  # every person whole: neutral and smiling, or not at all
        assert svc.gallery.store.template_count() == 2 * len(enrolled)
        probe = enrolled[0].subject_id
        match = svc.identify(LONDON / probe / "smiling.jpg").match
        assert match is not None and match.subject_id == probe
