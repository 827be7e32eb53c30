"""The sharded 1:N index on a real two-node Ray cluster, built from a real PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from facekeeper.cluster.bench import add_vectors, copy_rows, remove_ids
from facekeeper.cluster.shards import CopyParser, ShardedIndex, ShardUnavailable
from tests.cluster.conftest import Gallery, probes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exact_shards(ray_cluster: Any, gallery: Gallery) -> Any:
    # a shard reserves no CPU by default, and SPREAD is then only a preference; asking for a whole 2-CPU
    # node each makes "one shard per node" something Ray must do, so the test checks placement, not luck
    index = ShardedIndex(gallery.url, 2, exact_below=100_000, num_cpus=2)
    index.wait_ready(timeout_s=120)
    yield index
    index.close()


def test_binary_copy_rows_parse_back_exactly_in_any_chunking() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 2**62, 300)
    vectors = rng.standard_normal((300, 128)).astype(np.float32)
    stream = copy_rows(ids, vectors)
    for chunk in (1, 7, 534, len(stream)):
        parser = CopyParser(128)
        for start in range(0, len(stream), chunk):
            parser.feed(stream[start:start + chunk])
        got_ids, got_vectors = parser.result()
        assert np.array_equal(got_ids, ids) and np.array_equal(got_vectors, vectors)
    with pytest.raises(ValueError):
        parser = CopyParser(64)
        parser.feed(stream)
        parser.result()


def test_shards_answer_exactly_like_numpy_and_spread_over_both_nodes(exact_shards: ShardedIndex,
                                                                    gallery: Gallery) -> None:
    info = exact_shards.shard_info()
    assert sorted(i["number"] for i in info) == [0, 1]
    assert sum(i["size"] for i in info) == len(gallery.ids) == exact_shards.size
    assert len({i["node_id"] for i in info}) == 2  # one shard per node
    queries, _ = probes(gallery, 100)
    for q in queries:
        found = exact_shards.search(q, 5)
        assert [i for i, _ in found] == gallery.exact(q, 5)
        assert [d for _, d in found] == sorted(d for _, d in found)
        assert found[0][1] == pytest.approx(float(np.linalg.norm(gallery.vectors[gallery.ids == found[0][0]][0] - q)),
                                            abs=1e-5)


def test_ivf_shards_find_the_right_identity(ray_cluster: Any, gallery: Gallery) -> None:
    index = ShardedIndex(gallery.url, 2, exact_below=500, nprobe=8)
    try:
        info = index.wait_ready(timeout_s=120)
        assert {i["kind"] for i in info} == {"ivf-flat"}
        queries, who = probes(gallery, 300, seed=9)
        label = dict(zip(gallery.ids.tolist(), gallery.labels.tolist(), strict=True))
        hits = sum(label[index.search(q, 1)[0][0]] == w for q, w in zip(queries, who, strict=True))
        assert hits / len(queries) >= 0.99
    finally:
        index.close()


def test_allowed_ids_restrict_the_answer_on_every_shard(exact_shards: ShardedIndex, gallery: Gallery) -> None:
    rng = np.random.default_rng(3)
    allowed = rng.choice(gallery.ids, 200, replace=False)
    queries, _ = probes(gallery, 30, seed=4)
    for q in queries:
        found = exact_shards.search(q, 5, allowed=allowed)
        assert [i for i, _ in found] == gallery.exact(q, 5, allowed)
    even_shard_only = allowed[allowed % 2 == 0]
    assert {i % 2 for i, _ in exact_shards.search(queries[0], 5, allowed=even_shard_only)} == {0}
    assert exact_shards.search(queries[0], 5, allowed=np.array([], dtype=np.int64)) == []


def test_adds_and_erasures_reach_the_shards_and_an_erased_id_never_comes_back(ray_cluster: Any,
                                                                              fresh_gallery: Gallery) -> None:
    g = fresh_gallery
    index = ShardedIndex(g.url, 2, exact_below=100_000)
    try:
        index.wait_ready(timeout_s=120)
        newcomer = np.full((1, 128), 0.0, dtype=np.float32)
        newcomer[0, 0] = 1.0
        new_id = 10_000_001
        seq = add_vectors(g.url, np.array([new_id]), newcomer)
        assert index.search(newcomer[0], 1, min_seq=seq)[0][0] == new_id  # read your own write
        victim = int(g.ids[42])
        seq = remove_ids(g.url, np.array([victim, new_id]))
        for _ in range(3):
            found = [i for i, _ in index.search(g.vectors[42], 10, min_seq=seq)]
            assert victim not in found and new_id not in found
        assert new_id not in [i for i, _ in index.search(newcomer[0], 10)]
        assert index.catch_up() == seq and index.size == len(g.ids) - 1
    finally:
        index.close()
    rebuilt = ShardedIndex(g.url, 2, exact_below=100_000)  # a shard that starts later reads the erasure too
    try:
        rebuilt.wait_ready(timeout_s=120)
        assert victim not in [i for i, _ in rebuilt.search(g.vectors[42], 10)]
    finally:
        rebuilt.close()


def test_a_killed_shard_rebuilds_itself_and_no_query_meanwhile_is_partial(ray_cluster: Any,
                                                                          fresh_gallery: Gallery) -> None:
    import ray

    g = fresh_gallery
    index = ShardedIndex(g.url, 2, exact_below=100_000, timeout_s=0.3)
    try:
        before = index.wait_ready(timeout_s=120)
        queries, _ = probes(g, 20, seed=11)
        ray.kill(index.actors[0], no_restart=False)
        erased = int(g.ids[10])
        seq = remove_ids(g.url, np.array([erased]))  # written while the shard is down
        refused = answered = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                info = index.shard_info()
            except ShardUnavailable:
                info = None
            for q in queries:
                try:
                    got = [i for i, _ in index.search(q, 5, min_seq=seq)]
                except ShardUnavailable:
                    refused += 1
                    continue
                answered += 1
                assert got == [i for i in g.exact(q, 6) if i != erased][:5]  # whole, and after the erasure
            if info is not None and info[0]["pid"] != before[0]["pid"]:
                break
        else:
            pytest.fail("the killed shard did not come back within 120 s")
        assert answered > 0
        index.timeout_s = 5.0
        for q in queries:  # recovered without anyone doing anything, erasure included
            assert [i for i, _ in index.search(q, 5, min_seq=seq)] == [i for i in g.exact(q, 6) if i != erased][:5]
    finally:
        index.close()


def test_a_shard_that_cannot_reach_its_database_fails_the_search_whole(ray_cluster: Any) -> None:
    index = ShardedIndex("postgresql://nobody:x@127.0.0.1:9/none", 2, timeout_s=10)
    try:
        with pytest.raises(ShardUnavailable) as caught:
            index.search(np.ones(128, dtype=np.float32), 5)
        assert caught.value.http_status == 503 and caught.value.code == "index-degraded"
        assert "x@" not in caught.value.message  # never the credentials
    finally:
        index.close()


def test_named_shards_are_shared_by_every_process_of_a_deployment(ray_cluster: Any, gallery: Gallery) -> None:
    first = ShardedIndex(gallery.url, 2, exact_below=100_000, name="site1-index")
    second = ShardedIndex(gallery.url, 2, exact_below=100_000, name="site1-index")
    try:
        a, b = first.wait_ready(timeout_s=120), second.wait_ready(timeout_s=120)
        assert [i["pid"] for i in a] == [i["pid"] for i in b]
        second.close()  # one replica leaving does not stop the shared shards
        assert first.size == len(gallery.ids)
    finally:
        first.close(terminate=True)
