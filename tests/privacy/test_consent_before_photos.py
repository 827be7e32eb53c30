"""Consent comes before any photo is read: a person who has not consented is never decoded, not even to
find out that the photo is bad."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from facekeeper.engine import Engine, image, pipeline
from facekeeper.errors import ConsentRequired
from facekeeper.service import Service
from tests.conftest import london, ready
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")

# A PNG header that claims 100000 x 100000 pixels: read at all, it is refused as too large.
BOMB = bytes.fromhex("89504e470d0a1a0a0000000d49484452000186a0000186a00802000000") + b"\0" * 64


@pytest.fixture
def site(tmp_path: Path, engine: Engine) -> Iterator[Service]:
    svc = Service.init(tmp_path / "data", tmp_path / "keys")
    svc.engine = engine
    ready(svc, ("001",))
    yield svc
    svc.close()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every photo this process reads or decodes, by name."""
    seen: list[str] = []
    read_bytes, decode = image.read_bytes, image.decode

    def counted_read(path: str | Path, *args: Any, **kwargs: Any) -> bytes:
        seen.append(Path(path).name)
        return read_bytes(path, *args, **kwargs)

    def counted_decode(data: bytes, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(kwargs.get("name", "bytes")))
        return decode(data, *args, **kwargs)

    monkeypatch.setattr(image, "read_bytes", counted_read)
    monkeypatch.setattr(image, "decode", counted_decode)
    return seen


def test_enroll_without_consent_decodes_nothing(site: Service, reads: list[str]) -> None:
    """A bomb for someone without consent is refused for the consent, never opened as an image."""
    for photo in (BOMB, london("002")):
        with pytest.raises(ConsentRequired):
            site.enroll([photo], "002")
    assert reads == []
    site.enroll([london("001")], "001")
    assert reads  # the counter does see an enrollment that may happen


def test_enroll_dir_reads_no_photo_of_a_person_without_consent(site: Service, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               reads: list[str]) -> None:
    root = tmp_path / "folder"
    (root / "001").mkdir(parents=True)
    shutil.copy(london("001"), root / "001" / "a.jpg")
    (root / "002").mkdir()
    (root / "002" / "bomb.png").write_bytes(BOMB)
    # a photo that cannot be read at all: a worker process that tried would report it as a bad image
    (root / "002" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    handed: list[Path] = []
    prepare = pipeline.prepare

    def watched(engine: Engine, paths: Iterable[Path], **kwargs: Any) -> Iterator[pipeline.Prepared]:
        paths = list(paths)
        handed.extend(paths)
        return prepare(engine, paths, **kwargs)

    monkeypatch.setattr(pipeline, "prepare", watched)
    summary = site.enroll_dir(root, workers=1)
    assert summary.enrolled == {"001": 1}
    assert [(item, code) for item, code, _ in summary.skipped] == [("002/", "consent-required")]
    assert [p.parent.name for p in handed] == ["001"]
    assert set(reads) == {"a.jpg"}
