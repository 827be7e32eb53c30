"""The whole service on the cluster tier: PostgreSQL as the store, Ray shards as the index, Ray workers
preparing ``enroll-dir``; the same answers, consent checks and audit entries as on one machine."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facekeeper.engine import Engine
from facekeeper.privacy import ConsentForm
from facekeeper.service import Service
from tests.conftest import LONDON, london, ready
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("licensed")
FOLDER = ("001", "002", "003", "004")


def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for person in FOLDER:
        shutil.copytree(LONDON / person, root / person)
    (root / "004" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def test_enroll_dir_on_the_cluster_stores_what_the_local_pool_stores(
        tmp_path: Path, pg_url: str, engine: Engine, ray_cluster: Any) -> None:
    root = folder(tmp_path)
    results = {}
    for where, url in (("local", None), ("cluster", pg_url)):
        svc = Service.init(tmp_path / where / "data", tmp_path / where / "keys", database_url=url,
                           index_backend="ray" if url else None)
        svc.engine = engine
        ready(svc, ())
        summary = svc.enroll_dir(root, consent=ConsentForm("paper", "forms 2027"), workers=2,
                                 cluster="local" if url else None)
        rows = {s.subject_id: svc.gallery.templates(s.pseudonym, engine.model_id) for s in svc.gallery.subjects()}
        actions = [e.action for e in svc.privacy.audit.entries()]
        results[where] = (summary.to_dict(), rows, actions, svc)
    local, cluster = results["local"], results["cluster"]
    assert cluster[0] == local[0]  # same people enrolled, same photos skipped for the same reasons
    assert [s["file"] for s in cluster[0]["skipped"]] == ["004/broken.jpg"]
    for person in FOLDER:  # protected vectors differ by deployment key; their distances do not
        a, b = local[1][person], cluster[1][person]
        assert a.shape == b.shape
        assert np.allclose(np.linalg.norm(a - a[:1], axis=1), np.linalg.norm(b - b[:1], axis=1), atol=1e-4)
    assert cluster[2].count("enroll") == local[2].count("enroll") == len(FOLDER)
    svc = cluster[3]
    try:  # 1:N through the Ray shards, and an erased subject never comes back from any shard
        assert svc.identify(london("002", "smiling")).match.subject_id == "002"  # type: ignore[union-attr]
        svc.delete("002")
        assert svc.identify(london("002", "smiling")).match is None
        assert svc.privacy.audit.verify().ok
    finally:
        svc.gallery._external.close(terminate=True)  # the deployment's named shards outlive a process
        for _, _, _, s in results.values():
            s.close()
