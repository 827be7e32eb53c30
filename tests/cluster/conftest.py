"""One real Ray cluster for the cluster tests: two nodes on 127.0.0.1, started once for this package.

Both nodes run in this machine (``ray.cluster_utils.Cluster``), each with its own raylet and object store,
so "spread over nodes" and "a node's actors die with it" are real. They are started inside
``runtime.ray_environment``, as ``facekeeper`` starts a head, and the test process joins them with
``runtime.connect`` like a service process would: token auth on, nothing resolved past loopback.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from facekeeper.cluster import runtime
from facekeeper.cluster.bench import create_tables, load_vectors
from facekeeper.db.server import LocalPostgres

DIM = 128


@pytest.fixture(scope="package")  # stopped once tests/cluster is done: ~1 GB and two raylets
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    state = tmp_path_factory.mktemp("ray-state")
    token = runtime.ensure_token(state / "auth_token")
    node = {"num_cpus": 2, "node_ip_address": "127.0.0.1", "object_store_memory": 100 * 1024 * 1024}
    with runtime.ray_environment(token, loopback_only=True):
        cluster = Cluster(initialize_head=True, head_node_args={
            **node, "include_dashboard": False,
            "object_spilling_directory": str(runtime.private_dir(state / "spill")),
            "_system_config": {"automatic_object_spilling_enabled": False}})
        cluster.add_node(**node)
    try:
        info = runtime.connect(cluster.address, state_dir=state, node_ip="127.0.0.1")
        assert info.nodes == 2
        yield cluster
    finally:
        runtime.disconnect()
        cluster.shutdown()


def clustered(identities: int, per_identity: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in tight clusters, like faces: (vectors, identity of each)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((identities, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(identities), per_identity)
    vectors = centres[labels] + rng.standard_normal((len(labels), DIM)).astype(np.float32) * 0.03
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), labels


class Gallery:
    """A database holding ``template_vectors`` and ``changes`` as the PostgreSQL store does, pre-filled."""

    def __init__(self, url: str, vectors: np.ndarray, labels: np.ndarray) -> None:
        self.url = url
        self.ids = np.arange(1, len(vectors) + 1, dtype=np.int64) * 7  # not 0..n-1: ids are not positions
        self.vectors = vectors
        self.labels = labels
        create_tables(url)
        self.seq = load_vectors(url, self.ids, vectors, batch=1000)

    def exact(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[int]:
        ids, vectors = self.ids, self.vectors
        if allowed is not None:
            keep = np.isin(ids, allowed)
            ids, vectors = ids[keep], vectors[keep]
        order = np.argsort(np.linalg.norm(vectors - query, axis=1), kind="stable")[:k]
        return [int(i) for i in ids[order]]


@pytest.fixture(scope="module")
def gallery(pg_server: LocalPostgres) -> Iterator[Gallery]:
    """3,000 templates of 300 people, shared by the read-only tests of a module."""
    if not pg_server.running:
        pg_server.start()
    name = f"cluster_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    vectors, labels = clustered(300, 10)
    yield Gallery(url, vectors, labels)
    if not pg_server.running:
        pg_server.start()
    pg_server.drop_database(name)


@pytest.fixture
def fresh_gallery(pg_url: str) -> Gallery:
    """1,000 templates of 100 people in a database of this test's own (for tests that write)."""
    vectors, labels = clustered(100, 10, seed=1)
    return Gallery(pg_url, vectors, labels)


def probes(gallery: Gallery, n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """New photos of enrolled people: queries and their identities."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(gallery.vectors), n)
    q = gallery.vectors[pick] + rng.standard_normal((n, DIM)).astype(np.float32) * 0.03
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32), gallery.labels[pick]
