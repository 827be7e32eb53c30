"""enroll-dir starts its workers while it checks consent, and still hands them only consented people's photos."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from facekeeper.engine import Engine, pipeline
from facekeeper.service import Service
from tests.conftest import FORM, london, ready
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")


@pytest.fixture
def site(tmp_path: Path, engine: Engine) -> Iterator[Service]:
    svc = Service.init(tmp_path / "data", tmp_path / "keys")
    svc.engine = engine
    ready(svc, ("001", "003"))
    yield svc
    svc.close()


def test_workers_start_before_consent_is_checked_and_get_only_consented_photos(
        site: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "folder"
    for person in ("001", "002", "003"):
        (root / person).mkdir(parents=True)
        shutil.copy(london(person), root / person / "a.jpg")
    events: list[str] = []
    handed: list[Path] = []
    pools: list[pipeline.WorkerPool] = []

    class Watched(pipeline.WorkerPool):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            events.append("workers")
            super().__init__(*args, **kwargs)
            pools.append(self)

    prepare, consented = pipeline.prepare, Service._consented_jobs

    def watched_prepare(engine: Engine, paths: Iterable[Path], **kwargs: Any) -> Iterator[pipeline.Prepared]:
        handed.extend(paths)
        events.append("photos")
        return prepare(engine, handed, **kwargs)

    def watched_consent(self: Service, *args: Any) -> Any:
        events.append("consent")
        return consented(self, *args)

    monkeypatch.setattr(pipeline, "WorkerPool", Watched)
    monkeypatch.setattr(pipeline, "prepare", watched_prepare)
    monkeypatch.setattr(Service, "_consented_jobs", watched_consent)
    summary = site.enroll_dir(root, workers=2)
    assert events == ["workers", "consent", "photos"]
    assert summary.enrolled == {"001": 1, "003": 1}
    assert [(item, code) for item, code, _ in summary.skipped] == [("002/", "consent-required")]
    assert [p.parent.name for p in handed] == ["001", "003"]
    assert pools[0]._pools == []  # closed when enroll-dir returned


def test_one_worker_starts_no_pool(site: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "folder" / "001").mkdir(parents=True)
    shutil.copy(london("001"), tmp_path / "folder" / "001" / "a.jpg")

    def refused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("one worker prepares in this process")

    monkeypatch.setattr(pipeline, "WorkerPool", refused)
    assert site.enroll_dir(tmp_path / "folder", workers=1).enrolled == {"001": 1}


def test_consents_recorded_for_a_folder_are_anchored_once_with_every_entry_kept(
        site: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "folder"
    people = ("004", "005", "006")
    for person in people:
        (root / person).mkdir(parents=True)
        shutil.copy(london(person), root / person / "a.jpg")
    audit = site.privacy.audit
    anchors: list[int] = []
    replace = os.replace

    def watched_replace(src: Any, dst: Any) -> None:
        if Path(dst) == audit.anchor_path:
            anchors.append(json.loads(Path(src).read_text())["seq"])
        replace(src, dst)

    consented = Service._consented_jobs
    during: list[int] = []

    def watched_consent(self: Service, *args: Any) -> Any:
        try:
            return consented(self, *args)
        finally:
            during.extend(anchors)

    monkeypatch.setattr(os, "replace", watched_replace)
    monkeypatch.setattr(Service, "_consented_jobs", watched_consent)
    summary = site.enroll_dir(root, workers=1, consent=FORM)
    assert summary.enrolled == {p: 1 for p in people}
    assert len(during) == 1  # one anchor for the three consents, not one each
    grants = [e for e in audit.entries() if e.action == "consent.grant"]
    assert len(grants) == len(people) + 2  # 001 and 003's, then one entry per person in the folder
    assert during[0] == max(e.seq for e in grants)  # the anchor vouches for the last consent
    assert audit.verify().ok
