"""Two writer processes on one PostgreSQL while Ray shards serve searches: the shards follow every
enrollment and erasure through the change log, and an erased subject never comes back from any shard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from facekeeper.db.server import LocalPostgres
from tests.db.test_postgres_store import WRITER
from tests.privacy.conftest import Backend, make_site, people

pytestmark = pytest.mark.slow


def test_shards_follow_two_concurrent_writers_and_erased_subjects_stay_gone(
        tmp_path: Path, pg_url: str, pg_server: LocalPostgres, ray_cluster: Any) -> None:
    site = make_site(tmp_path, backend=Backend(pg_url, pg_server))
    site.settings.index.backend = "ray"
    site.settings.save()
    site.close()
    site = site.reopen()
    try:
        first = people(3, seed=99)
        for sid, vecs in first.items():
            site.consent(sid)
            site.enroll(sid, vecs)
        assert site.search(first["p0001"][1], "access-control", k=1) == ["p0001"]  # shards built, in use

        n = 12
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(site.settings.data_dir), me, str(n)],
                                  env=env, stderr=subprocess.PIPE, text=True) for me in ("1", "2")]
        for p in procs:
            assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""

        site.gallery.refresh()  # this process's position in the change log: every shard catches up to it
        for me in ("1", "2"):
            for i, (sid, vecs) in enumerate(people(n, seed=int(me)).items()):
                found = site.search(vecs[0], "access-control", k=1)
                if i % 3 == 2:  # erased by its writer
                    assert f"{me}-{sid}" not in found
                else:
                    assert found == [f"{me}-{sid}"]
        shards = site.gallery._external.shard_info()
        kept = 3 + 2 * (n - n // 3)
        assert sum(s["size"] for s in shards) == 2 * kept  # two templates per subject, none of the erased
        assert site.privacy.audit.verify().ok
    finally:
        if site.gallery._external is not None:
            site.gallery._external.close(terminate=True)
        site.close()
