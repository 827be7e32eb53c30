"""Bulk preparation on the Ray cluster yields what the local pool yields, in the same order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facekeeper.cluster.pipeline import prepare
from facekeeper.engine import Engine, pipeline
from tests.conftest import DATA, LONDON

pytestmark = pytest.mark.slow


def test_cluster_preparation_matches_the_local_pool_photo_by_photo(ray_cluster: Any, engine: Engine,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    photos = [*sorted(LONDON.glob("00[1-6]/*.jpg")), DATA / "multi" / "obama_and_biden.jpg",
              tmp_path / "broken.jpg", tmp_path / "missing.jpg", DATA / "edge" / "32bit.png"]
    local = list(pipeline.prepare(engine, photos, workers=1))
    remote = list(prepare(engine, photos, workers=2, batch=3))
    assert [r.path for r in remote] == photos  # input order, whatever finished first
    for mine, theirs in zip(remote, local, strict=True):
        assert (mine.error and mine.error.code) == (theirs.error and theirs.error.code)
        if theirs.chip is None:
            assert mine.chip is None and mine.descriptor is None
            continue
        assert mine.chip is None  # embedded on the node: no face image crosses the cluster
        assert mine.quality == theirs.quality
        assert mine.descriptor is not None
        assert np.allclose(mine.descriptor, engine.embed([theirs.chip])[0], atol=1e-5)
    assert sum(r.error is None for r in remote) >= 12
    assert {r.error.code for r in remote if r.error} >= {"multiple-faces", "bad-image"}
