"""1:N search over protected template vectors kept in PostgreSQL, with a pgvector HNSW index.

The same surface as ``VectorIndex`` (``search``, ``size``, ``kind``), except that writes take the caller's
psycopg connection: the gallery adds and removes vectors inside the transaction that stores or erases the
sealed template, so the index can never hold a vector whose template is gone. Searches use a pool.

The table (created by the schema migration; the tests create it from ``DDL``) holds one row per template.
The vectors in it are the protected ones, rotated by the deployment's keyed transform, so useless to any
other deployment, but readable by the database: see docs/scaling.md for the disk-encryption advice.

Search paths, chosen per query:
- no filter: HNSW with ``hnsw.ef_search`` set for the transaction only (``SET LOCAL``), so a pool shared
  with other code never inherits it;
- a small allowed set: exact distances to just those rows, found by primary key; exact, and cheaper than
  the graph walk up to ``exact_allowed_max`` ids (measured, docs/scaling.md);
- an allowed set that is most of the gallery (``postfilter_min_share`` of its rows or more): the graph walk
  without a filter, asking for enough rows that ``k`` of them are allowed, kept or dropped here. The ids
  never travel: a million of them cost PostgreSQL ~0.4 s to plan and hash per query;
- a large allowed set between the two: HNSW with the ids as a filter and ``hnsw.iterative_scan =
  relaxed_order``, which keeps walking the graph until ``k`` allowed rows are found.
Graph walks with iterative scan return rows roughly ordered, so we sort them.

Vectors and id lists travel in PostgreSQL's binary formats, built with numpy: dumping a million ids as a
Python list took 0.75 s, as one numpy buffer a few milliseconds.
"""

from __future__ import annotations

import math
import struct
import time
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg_pool import ConnectionPool

DIM = 128
TABLE = "template_vectors"
HNSW_INDEX = "template_vectors_hnsw"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
# The smallest breadth that keeps recall@1 >= 0.99 at 1M with p99 < 20 ms, on face-like data: 200 gave
# recall@1 0.998 at 6.4 / 10.9 ms, 100 gave 0.995, 400 1.000 at 15 / 33 ms (docs/scaling.md)
EF_SEARCH = 200
# below this many allowed ids, exact distances by primary key beat the filtered graph walk (docs/scaling.md)
EXACT_ALLOWED_MAX = 5000
# from this share of the gallery up, filtering the graph walk's rows here beats sending the ids (docs/scaling.md)
POSTFILTER_MIN_SHARE = 0.05
# rows asked for, over what the share predicts: the allowed rows are not spread evenly over any neighbourhood
POSTFILTER_MARGIN = 2.0
ROWS_ESTIMATE_TTL_S = 60.0
# the iterative scan gives up after this many tuples (pgvector's default is 20000); a large allowed set
# that is a small fraction of the gallery needs more to find k of its members
MAX_SCAN_TUPLES = 100_000

DDL = f"""
CREATE TABLE {TABLE} (template_id bigint PRIMARY KEY, embedding vector({DIM}) NOT NULL);
CREATE INDEX {HNSW_INDEX} ON {TABLE} USING hnsw (embedding vector_l2_ops)
    WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION});
"""

INT8_ARRAY_OID = 1016
INT8_OID = 20
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
COPY_BATCH = 50_000  # rows per buffer: ~27 MB, bounded memory for any load size


class Int8Array:
    """Ids to send as one ``bigint[]`` parameter in binary."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=np.int64).ravel()


class _Int8ArrayDumper(Dumper):
    format = Format.BINARY
    oid = INT8_ARRAY_OID

    def dump(self, obj: Int8Array) -> bytes:
        ids = obj.ids
        if len(ids) == 0:
            return struct.pack(">iiI", 0, 0, INT8_OID)
        cells = np.empty(len(ids), dtype=[("len", ">i4"), ("value", ">i8")])
        cells["len"] = 8
        cells["value"] = ids
        return struct.pack(">iiIii", 1, 0, INT8_OID, len(ids), 1) + cells.tobytes()


def copy_rows(ids: np.ndarray, vectors: np.ndarray) -> bytes:
    """(id, vector) rows in COPY BINARY format, without the header and trailer."""
    n, dim = vectors.shape
    rows = np.empty(n, dtype=[("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("vec_len", ">i4"),
                              ("dim", ">i2"), ("unused", ">i2"), ("vec", ">f4", (dim,))])
    rows["fields"] = 2
    rows["id_len"] = 8
    rows["id"] = ids
    rows["vec_len"] = 4 + 4 * dim
    rows["dim"] = dim
    rows["unused"] = 0
    rows["vec"] = vectors
    return rows.tobytes()


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form; float32 values print exactly (repr of their float64 value)."""
    return "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).ravel().tolist())) + "]"


class PgVectorIndex:
    """Template ids (bigint) → protected vectors in PostgreSQL; k-nearest search with an optional id filter."""

    kind = "pgvector-hnsw"

    def __init__(self, pool: ConnectionPool | str, *, dim: int = DIM, ef_search: int = EF_SEARCH,
                 exact_allowed_max: int = EXACT_ALLOWED_MAX, postfilter_min_share: float = POSTFILTER_MIN_SHARE,
                 max_scan_tuples: int = MAX_SCAN_TUPLES) -> None:
        """``pool``: a psycopg pool, or a URL for a pool of our own (closed by ``close()``)."""
        self.dim = dim
        self.ef_search = ef_search
        self.exact_allowed_max = exact_allowed_max
        self.postfilter_min_share = postfilter_min_share
        self._rows_estimate: tuple[float, int] | None = None  # (when, rows)
        self.max_scan_tuples = max_scan_tuples
        self._own_pool = isinstance(pool, str)
        self.pool = ConnectionPool(pool, min_size=1, max_size=4, open=True) if isinstance(pool, str) else pool

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()

    def __enter__(self) -> PgVectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes (in the caller's transaction) ---------------------------------------------------------
    def add(self, conn: psycopg.Connection[Any], ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert vectors in the caller's transaction (COPY BINARY); an id already present is an error."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) == 0:
            return
        vecs = self._vectors(vectors, len(ids))
        with conn.cursor() as cur, cur.copy(
                f"COPY {TABLE} (template_id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(COPY_HEADER)
            for i in range(0, len(ids), COPY_BATCH):
                copy.write(copy_rows(ids[i:i + COPY_BATCH], vecs[i:i + COPY_BATCH]))
            copy.write(COPY_TRAILER)

    def remove(self, conn: psycopg.Connection[Any], ids: np.ndarray) -> int:
        """Delete vectors in the caller's transaction; how many there were."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) == 0:
            return 0
        with conn.cursor() as cur:
            cur.adapters.register_dumper(Int8Array, _Int8ArrayDumper)
            cur.execute(f"DELETE FROM {TABLE} WHERE template_id = ANY(%s)", (Int8Array(ids),))
            return cur.rowcount

    def bulk_load(self, ids: np.ndarray, vectors: np.ndarray, *, maintenance_work_mem: str = "2GB",
                  parallel_workers: int = 1) -> dict[str, float]:
        """Load many vectors: drop the HNSW index, COPY, build the index again; seconds for each step.

        Building the graph once over all rows is several times faster than inserting into it row by row
        (docs/scaling.md). The graph must fit in ``maintenance_work_mem`` or the build slows down sharply
        (1M vectors: ~0.8 GB); ``parallel_workers`` join the leader (one per spare core).
        """
        ids = np.asarray(ids, dtype=np.int64).ravel()
        vecs = self._vectors(vectors, len(ids))
        with self.pool.connection() as conn:
            conn.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")
            t0 = time.perf_counter()
            self.add(conn, ids, vecs)
            conn.commit()
            t1 = time.perf_counter()
            conn.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(maintenance_work_mem)))
            conn.execute(sql.SQL("SET LOCAL max_parallel_maintenance_workers = {}").format(
                sql.Literal(int(parallel_workers))))
            conn.execute(f"CREATE INDEX {HNSW_INDEX} ON {TABLE} USING hnsw (embedding vector_l2_ops)"
                         f" WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")
            conn.commit()
            t2 = time.perf_counter()
            conn.execute(f"ANALYZE {TABLE}")
        return {"copy_s": t1 - t0, "index_s": t2 - t1}

    # -- reads (from the pool) ------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Rows held (an exact count: a scan of the primary key, ~tens of ms at 1M)."""
        with self.pool.connection() as conn:
            row = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        return int(row[0]) if row else 0

    def search(self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The ``k`` nearest (id, euclidean distance), nearest first; ``allowed`` restricts the ids."""
        if k <= 0:
            return []
        q = vector_literal(self._vectors(vector, 1)[0])
        if allowed is None:
            # a plain walk returns at most ef_search rows: beyond that, keep walking (iterative scan)
            return self._query(f"SELECT template_id, embedding <-> %s::vector AS d FROM {TABLE}"
                               " ORDER BY d LIMIT %s", (q, k), iterative=k > self.ef_search)
        allowed = np.asarray(allowed, dtype=np.int64).ravel()
        if len(allowed) == 0:
            return []
        if len(allowed) <= self.exact_allowed_max:
            # OFFSET 0 fences the subquery, so the planner cannot answer the ORDER BY by walking the graph:
            # just these rows are fetched by primary key and scored (a MATERIALIZED CTE spilled to disk)
            return self._query(f"SELECT template_id, d FROM (SELECT template_id, embedding <-> %s::vector AS d"
                               f" FROM {TABLE} WHERE template_id = ANY(%s) OFFSET 0) s ORDER BY d LIMIT %s",
                               (q, Int8Array(allowed), k), iterative=False)
        rows = self._estimated_rows()
        if len(allowed) >= self.postfilter_min_share * rows:
            hits = self._post_filtered(q, k, allowed, rows)
            if hits is not None:
                return hits
        # "+ 0" hides the primary key from the planner, which would otherwise fetch and sort every allowed row
        return self._query(f"SELECT template_id, embedding <-> %s::vector AS d FROM {TABLE}"
                           " WHERE template_id + 0 = ANY(%s) ORDER BY d LIMIT %s", (q, Int8Array(allowed), k),
                           iterative=True)

    def _post_filtered(self, q: str, k: int, allowed: np.ndarray, rows: int) -> list[tuple[int, float]] | None:
        """The graph walk without a filter, keeping allowed rows; None when too few came within the scan limit."""
        if np.any(allowed[1:] < allowed[:-1]):
            allowed = np.sort(allowed)
        fetch = min(max(k, math.ceil(POSTFILTER_MARGIN * k * rows / len(allowed))), self.max_scan_tuples)
        while True:
            hits = self._query(f"SELECT template_id, embedding <-> %s::vector AS d FROM {TABLE} ORDER BY d LIMIT %s",
                               (q, fetch), iterative=True)
            found = np.fromiter((t for t, _ in hits), dtype=np.int64, count=len(hits))
            at = np.minimum(np.searchsorted(allowed, found), len(allowed) - 1)
            kept = [h for h, ok in zip(hits, allowed[at] == found, strict=True) if ok]
            # enough; or fewer rows than asked for within the scan limit: the walk reached every row it could
            if len(kept) >= k or len(hits) < fetch:
                return kept[:k]
            if fetch >= self.max_scan_tuples:
                return None
            fetch = min(fetch * 4, self.max_scan_tuples)

    def _estimated_rows(self) -> int:
        """The planner's row count (refreshed by ANALYZE and autovacuum), read at most once a minute."""
        now = time.monotonic()
        if self._rows_estimate is None or now - self._rows_estimate[0] > ROWS_ESTIMATE_TTL_S:
            with self.pool.connection() as conn:
                row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (TABLE,)).fetchone()
            rows = int(row[0]) if row else -1
            self._rows_estimate = (now, rows if rows >= 0 else self.size)  # -1: never analysed yet
        return max(self._rows_estimate[1], 1)

    def _query(self, query: str, params: tuple[Any, ...], *, iterative: bool) -> list[tuple[int, float]]:
        """Rows (id, distance) nearest first; ``iterative`` walks on past ef_search (in relaxed order, sorted here)."""
        settings = [sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(int(self.ef_search)))]
        if iterative:
            settings += [sql.SQL("SET LOCAL hnsw.iterative_scan = relaxed_order"),
                         sql.SQL("SET LOCAL hnsw.max_scan_tuples = {}").format(sql.Literal(int(self.max_scan_tuples))),
                         sql.SQL("SET LOCAL enable_seqscan = off")]  # the graph, not a scan of every row
        # one round trip (pipeline) for BEGIN, the settings and the query; the transaction ends the settings
        with self.pool.connection() as conn, conn.pipeline(), conn.transaction(), conn.cursor() as cur:
            cur.adapters.register_dumper(Int8Array, _Int8ArrayDumper)
            for setting in settings:
                cur.execute(setting)
            cur.execute(query, params)
            rows = cur.fetchall()
        hits = [(int(i), float(d)) for i, d in rows]
        return sorted(hits, key=lambda h: h[1]) if iterative else hits

    def _vectors(self, vectors: np.ndarray, n: int) -> np.ndarray:
        vecs = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(vecs) != n:
            raise ValueError(f"{n} ids but {len(vecs)} vectors")
        return vecs
