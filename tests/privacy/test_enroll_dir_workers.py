"""enroll-dir starts its workers while it checks consent, and still hands them only consented people's photos."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from facekeeper.engine import Engine, pipeline
from facekeeper.service import Service
from tests.conftest import london, ready
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
    assert pools[0]._pool is None  # closed when enroll-dir returned


def test_one_worker_starts_no_pool(site: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "folder" / "001").mkdir(parents=True)
    shutil.copy(london("001"), tmp_path / "folder" / "001" / "a.jpg")

    def refused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("one worker prepares in this process")

    monkeypatch.setattr(pipeline, "WorkerPool", refused)
    assert site.enroll_dir(tmp_path / "folder", workers=1).enrolled == {"001": 1}
