"""Measuring the Ray shard tier: build time, query latency, identity accuracy, recovery after a kill.

``bench_ray`` is called by ``bench/scale.py`` with the same synthetic templates as the other backends, so
the numbers compare within one run. It needs a running Ray (``runtime.connect``) and a PostgreSQL URL, or
starts a throwaway ``LocalPostgres`` itself. The loaders here are also what the tests use to fill a
database the way the gallery does (``template_vectors`` rows plus one ``add`` change each).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from facekeeper.cluster.shards import COPY_SIGNATURE, ShardedIndex, ShardUnavailable, _row_dtype

TABLES = """
CREATE TABLE IF NOT EXISTS template_vectors (template_id bigint PRIMARY KEY, embedding vector({dim}) NOT NULL);
CREATE TABLE IF NOT EXISTS changes (seq bigserial PRIMARY KEY, op text NOT NULL CHECK (op IN ('add', 'remove')),
                                    template_id bigint NOT NULL);
"""


def create_tables(url: str, dim: int = 128) -> None:
    """The two tables the shards read, as the PostgreSQL store defines them (without its foreign key)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        for statement in TABLES.format(dim=dim).split(";"):
            if statement.strip():
                conn.execute(statement)


def copy_rows(ids: np.ndarray, vectors: np.ndarray) -> bytes:
    """A whole binary COPY stream of (bigint, vector) rows: what ``COPY ... FROM STDIN (FORMAT BINARY)`` reads."""
    dim = vectors.shape[1]
    table = np.zeros(len(ids), dtype=_row_dtype(dim))
    table["fields"], table["id_len"], table["vec_len"], table["dim"] = 2, 8, 4 + 4 * dim, dim
    table["id"] = ids
    table["vec"] = vectors
    return COPY_SIGNATURE + bytes(8) + table.tobytes() + b"\xff\xff"


def load_vectors(url: str, ids: np.ndarray, vectors: np.ndarray, *, batch: int = 100_000) -> int:
    """Insert templates and their ``add`` changes, in batches of one transaction each; the last seq."""
    import psycopg

    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float32)
    with psycopg.connect(url) as conn:
        for start in range(0, len(ids), batch):
            part = slice(start, start + batch)
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy("COPY template_vectors (template_id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(copy_rows(ids[part], vectors[part]))
                with cur.copy("COPY changes (op, template_id) FROM STDIN") as copy:
                    copy.write("".join(f"add\t{int(i)}\n" for i in ids[part]))
        row = conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()
    return int(row[0]) if row else 0


def add_vectors(url: str, ids: np.ndarray, vectors: np.ndarray) -> int:
    """Enroll as the gallery does, in one transaction; the change-log position to read it back from."""
    return load_vectors(url, ids, vectors, batch=max(1, len(ids)))


def remove_ids(url: str, ids: np.ndarray) -> int:
    """Erase as the gallery does: rows deleted and ``remove`` logged in one transaction; the last seq."""
    import psycopg

    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("DELETE FROM template_vectors WHERE template_id = ANY(%s)", ([int(i) for i in ids],))
        row = None
        for i in ids:
            row = conn.execute("INSERT INTO changes (op, template_id) VALUES ('remove', %s) RETURNING seq",
                               (int(i),)).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A LocalPostgres in a temporary folder for one benchmark run; its URL."""
    from facekeeper.db.server import temporary_server

    with temporary_server("facekeeper-bench-pg-") as server:
        yield server.start()


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def bench_ray(n: int, vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, truth: np.ndarray, *,
              labels: np.ndarray | None = None, url: str | None = None, shards: int = 2, nprobe: int = 64,
              nlist: int = 4096, exact_below: int = 50_000, k: int = 1, kill: bool = True,
              timeout_s: float = 5.0, exact_top1: np.ndarray | None = None) -> dict[str, Any]:
    """Load ``n`` templates into PostgreSQL, build ``shards`` Ray shards from it, and measure them.

    ``truth[q]``: the identity of query ``q``; ``labels[i]``: the identity of ``ids[i]`` (without labels,
    ``truth`` holds the expected template ids); ``exact_top1[q]``, when given, the exact nearest template id,
    for a strict recall@1 (``r_at_1``). Returns load and build seconds, query p50/p99 in ms over
    all ``queries`` (one at a time, as the gate sends them), id@1, and, with ``kill``, the seconds from
    killing one shard actor to the first complete answer (queries meanwhile fail as ``ShardUnavailable``).
    """
    if url is None:
        with throwaway_postgres() as local:
            return bench_ray(n, vectors, ids, queries, truth, labels=labels, url=local, shards=shards,
                             nprobe=nprobe, nlist=nlist, exact_below=exact_below, k=k, kill=kill,
                             timeout_s=timeout_s, exact_top1=exact_top1)
    ids = np.asarray(ids[:n], dtype=np.int64)
    create_tables(url, vectors.shape[1])
    start = time.perf_counter()
    load_vectors(url, ids, vectors[:n])
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    index = ShardedIndex(url, shards, nprobe=nprobe, nlist=nlist, exact_below=exact_below, timeout_s=timeout_s)
    try:
        info = index.wait_ready(timeout_s=3600)
        build_s = time.perf_counter() - start
        label_of = None if labels is None else dict(zip(ids.tolist(), np.asarray(labels[:n]).tolist(), strict=True))
        for q in queries[:20]:  # warm-up: first calls set up Ray's connections to each actor
            index.search(q, k)
        latencies, hits, exact_hits = [], 0, 0
        for i, (q, expected) in enumerate(zip(queries, truth, strict=True)):
            t0 = time.perf_counter()
            found = index.search(q, k)
            latencies.append(time.perf_counter() - t0)
            if found:
                top = found[0][0]
                hits += int((label_of[top] if label_of is not None else top) == int(expected))
                exact_hits += int(exact_top1 is not None and top == int(exact_top1[i]))
        p50, p99 = _percentiles(latencies)
        result: dict[str, Any] = {
            "n": n, "shards": shards, "nprobe": nprobe, "kind": info[0]["kind"], "nlist": info[0]["nlist"],
            "load_s": load_s, "build_s": build_s, "shard_build_s": [i["build_seconds"] for i in info],
            "p50_ms": p50, "p99_ms": p99, "id_at_1": hits / len(queries), "queries": len(queries),
            "nodes": len({i["node_id"] for i in info}),
        }
        if exact_top1 is not None:
            result["r_at_1"] = exact_hits / len(queries)
        if kill:
            result.update(_recovery(index, queries[0]))
        return result
    finally:
        index.close()


def _recovery(index: ShardedIndex, query: np.ndarray) -> dict[str, Any]:
    """SIGKILL shard 0's process (as a crash would) and time until a search is complete again, answered by
    the restarted actor; count the searches refused meanwhile."""
    import os
    import signal

    expected = index.search(query, 5)
    victim = index.shard_info()[0]["pid"]
    saved, index.timeout_s = index.timeout_s, 0.5
    refused = 0
    try:
        start = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        while True:
            try:
                answer = index.search(query, 5)
            except ShardUnavailable:
                refused += 1
                continue
            if answer != expected:
                raise AssertionError("a search after the kill answered differently")
            try:
                if index.shard_info()[0]["pid"] != victim:
                    break
            except ShardUnavailable:
                continue
        return {"recovery_s": time.perf_counter() - start, "refused_during_recovery": refused}
    finally:
        index.timeout_s = saved
