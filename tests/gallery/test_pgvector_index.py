"""PgVectorIndex against a real PostgreSQL + pgvector: the same answers as exact search in numpy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import psycopg
import pytest
from psycopg_pool import ConnectionPool

from facekeeper.gallery.pgvector_index import DDL, PgVectorIndex

DIM = 128
IDENTITIES = 300
PER_IDENTITY = 10


def clustered(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids (not 0-based, not dense: like template ids), vectors clustered like faces, and fresh probes."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((IDENTITIES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = np.repeat(centres, PER_IDENTITY, axis=0) + rng.standard_normal(
        (IDENTITIES * PER_IDENTITY, DIM)).astype(np.float32) * 0.03
    probes = centres[rng.integers(0, IDENTITIES, 100)] + rng.standard_normal((100, DIM)).astype(np.float32) * 0.03
    ids = np.arange(len(vectors), dtype=np.int64) * 3 + 1000
    return ids, vectors.astype(np.float32), probes.astype(np.float32)


def exact(ids: np.ndarray, vectors: np.ndarray, probe: np.ndarray, k: int,
          allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
    if allowed is not None:
        keep = np.isin(ids, allowed)
        ids, vectors = ids[keep], vectors[keep]
    d = np.linalg.norm(vectors - probe, axis=1)
    order = np.argsort(d, kind="stable")[:k]
    return [(int(ids[i]), float(d[i])) for i in order]


@pytest.fixture
def index(pg_url: str) -> Iterator[PgVectorIndex]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(DDL)
    with PgVectorIndex(pg_url) as idx:
        yield idx


class Filled(NamedTuple):
    index: PgVectorIndex
    ids: np.ndarray
    vectors: np.ndarray
    probes: np.ndarray


@pytest.fixture
def filled(index: PgVectorIndex, pg_url: str) -> Filled:
    ids, vectors, probes = clustered()
    with psycopg.connect(pg_url) as conn:
        index.add(conn, ids, vectors)
    return Filled(index, ids, vectors, probes)


def test_top1_and_distances_equal_exact_search_in_numpy(filled: Filled) -> None:
    index, ids, vectors, probes = filled
    assert index.size == len(ids)
    assert index.kind == "pgvector-hnsw"
    for probe in probes:
        got = index.search(probe, 10)
        want = exact(ids, vectors, probe, 10)
        assert got[0][0] == want[0][0]
        dists = [d for _, d in got]
        assert dists == sorted(dists)  # nearest first
        for tid, d in got:  # euclidean, not squared
            assert d == pytest.approx(float(np.linalg.norm(vectors[ids == tid][0] - probe)), rel=1e-5)


def test_more_neighbours_than_ef_search_still_come_back_in_order(filled: Filled) -> None:
    index, ids, vectors, probes = filled
    index.ef_search = 20
    got = index.search(probes[0], 60)
    assert len(got) == 60
    assert [d for _, d in got] == sorted(d for _, d in got)
    assert got[0][0] == exact(ids, vectors, probes[0], 1)[0][0]


def test_a_small_allowed_set_is_searched_exactly(filled: Filled) -> None:
    index, ids, vectors, probes = filled
    allowed = np.random.default_rng(1).choice(ids, 40, replace=False)
    for probe in probes[:30]:
        got = index.search(probe, 5, allowed)
        want = exact(ids, vectors, probe, 5, allowed)
        assert [t for t, _ in got] == [t for t, _ in want]
        assert [d for _, d in got] == pytest.approx([d for _, d in want], rel=1e-5)


@pytest.mark.parametrize("share", [0.07, 0.7])
@pytest.mark.parametrize("postfilter_min_share", [0.0, 2.0], ids=["rows-filtered-here", "ids-sent-as-filter"])
def test_a_large_allowed_set_walks_the_graph_and_finds_k_allowed_rows(filled: Filled, share: float,
                                                                      postfilter_min_share: float) -> None:
    index, ids, vectors, probes = filled
    index.exact_allowed_max = 10  # force a graph path at this small size
    index.postfilter_min_share = postfilter_min_share
    allowed = np.random.default_rng(2).choice(ids, int(len(ids) * share), replace=False)
    for probe in probes[:30]:
        got = index.search(probe, 10, allowed)
        want = exact(ids, vectors, probe, 10, allowed)
        assert len(got) == 10
        assert set(t for t, _ in got) <= set(allowed.tolist())
        assert got[0][0] == want[0][0]
        assert [d for _, d in got] == sorted(d for _, d in got)  # relaxed order re-sorted


def test_a_scan_limit_too_small_for_filtering_here_falls_back_to_sending_the_ids(
        filled: Filled, monkeypatch: pytest.MonkeyPatch) -> None:
    index, ids, vectors, probes = filled
    index.exact_allowed_max = 10
    index.max_scan_tuples = 40  # the walk stops before 10 of a 7% share are found among its rows
    sent: list[str] = []
    query = index._query
    monkeypatch.setattr(index, "_query", lambda q, params, **kw: sent.append(q) or query(q, params, **kw))
    allowed = np.random.default_rng(4).choice(ids, int(len(ids) * 0.07), replace=False)
    for probe in probes[:10]:
        got = index.search(probe, 10, allowed)
        assert got
        assert set(t for t, _ in got) <= set(allowed.tolist())
        assert got[0][0] == exact(ids, vectors, probe, 1, allowed)[0][0]
    assert any("ANY" in q for q in sent) and any("ANY" not in q for q in sent)


def test_an_empty_allowed_set_finds_nothing(filled: Filled) -> None:
    index, _, _, probes = filled
    assert index.search(probes[0], 5, np.array([], dtype=np.int64)) == []
    assert index.search(probes[0], 0) == []


def test_removed_vectors_never_come_back(filled: Filled, pg_url: str) -> None:
    index, ids, _, probes = filled
    top = index.search(probes[0], 3)
    gone = np.array([t for t, _ in top], dtype=np.int64)
    with psycopg.connect(pg_url) as conn:
        assert index.remove(conn, gone) == 3
        assert index.remove(conn, gone) == 0
    assert index.size == len(ids) - 3
    after = index.search(probes[0], 20)
    assert not set(gone.tolist()) & {t for t, _ in after}
    assert index.search(probes[0], 5, gone) == []


def test_writes_belong_to_the_callers_transaction(index: PgVectorIndex, pg_url: str) -> None:
    ids, vectors, _ = clustered()
    with psycopg.connect(pg_url) as conn:
        index.add(conn, ids[:10], vectors[:10])
        conn.rollback()
        assert index.size == 0
        index.add(conn, ids[:10], vectors[:10])
        conn.commit()
    assert index.size == 10
    with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        index.add(conn, ids[:1], vectors[:1])


def test_bulk_load_rebuilds_the_hnsw_index_and_search_agrees(index: PgVectorIndex, pg_url: str) -> None:
    ids, vectors, probes = clustered(seed=3)
    timings = index.bulk_load(ids, vectors)
    assert set(timings) == {"copy_s", "index_s"}
    with psycopg.connect(pg_url) as conn:
        indexes = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'template_vectors'").fetchall()
    assert any("USING hnsw" in d and "m='16'" in d for (d,) in indexes)
    hits = [index.search(p, 1)[0][0] == exact(ids, vectors, p, 1)[0][0] for p in probes]
    assert all(hits)


def test_a_shared_pool_is_left_open(index: PgVectorIndex, pg_url: str) -> None:
    with ConnectionPool(pg_url, min_size=1, max_size=1) as pool:
        with PgVectorIndex(pool, ef_search=123) as shared:
            assert shared.size == 0
            assert shared.search(np.ones(DIM, np.float32), 3) == []
        assert not pool.closed
        with pool.connection() as conn:  # the same connection: SET LOCAL left nothing behind on it
            assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("40",)


def test_a_vector_count_that_does_not_match_the_ids_is_refused(index: PgVectorIndex, pg_url: str) -> None:
    ids, vectors, _ = clustered()
    with psycopg.connect(pg_url) as conn, pytest.raises(ValueError, match="ids"):
        index.add(conn, ids[:3], vectors[:2])
