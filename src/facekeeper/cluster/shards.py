"""1:N search over Ray actors, each holding one shard of the protected vectors in a faiss index.

PostgreSQL is the source of truth: shard ``i`` of ``n`` holds the templates with ``template_id % n == i``,
loads them from ``template_vectors`` with one binary COPY, and catches up by replaying ``changes`` from the
sequence number its copy reflects. Nothing a shard holds needs saving: when Ray restarts a dead actor (or
moves it off a dead node), the new one rebuilds itself the same way.

A search fans out to every shard and merges the top k. An answer from fewer than all shards could turn a
match into "unknown", or promote the second-best person to a match, so a shard that fails or misses the
deadline makes the whole search fail with ``ShardUnavailable`` (HTTP 503), never a partial answer.
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from facekeeper.errors import StoreUnavailable
from facekeeper.gallery.index import VectorIndex

log = logging.getLogger(__name__)

DIM = 128
DEFAULT_TIMEOUT_S = 5.0
# a query waiting behind a rebuild is refused at once past this many, instead of queueing without bound
MAX_PENDING_CALLS = 256
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
COPY_CHUNK = 32 * 1024 * 1024  # bytes parsed at a time while a shard loads


class ShardUnavailable(StoreUnavailable):
    """A shard of the cluster index did not answer in time (restarting, rebuilding, or its database is
    down). Nothing was decided: the caller reports the service as degraded and retries later."""

    code = "index-degraded"


def _row_dtype(dim: int) -> np.dtype:
    """One row of ``COPY (SELECT template_id, embedding) TO STDOUT (FORMAT BINARY)``: field count, then
    each field's length and bytes; pgvector sends a vector as dim, unused, then big-endian float32s."""
    return np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("vec_len", ">i4"),
                     ("dim", ">u2"), ("unused", ">u2"), ("vec", ">f4", (dim,))])


class CopyParser:
    """Turns a binary COPY stream of (bigint, vector) rows into id and float32 arrays, chunk by chunk."""

    def __init__(self, dim: int) -> None:
        self.dtype = _row_dtype(dim)
        self.dim = dim
        self._buf = bytearray()
        self._header_done = False
        self._ids: list[np.ndarray] = []
        self._vecs: list[np.ndarray] = []

    def feed(self, data: bytes | memoryview) -> None:
        self._buf += data
        if len(self._buf) >= COPY_CHUNK:
            self._parse()

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self._parse()
        if self._buf != b"\xff\xff":  # the trailer: a field count of -1
            raise ValueError(f"COPY stream ended with {len(self._buf)} unparsed bytes")
        if not self._ids:
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        return np.concatenate(self._ids), np.concatenate(self._vecs)

    def _parse(self) -> None:
        if not self._header_done:
            if len(self._buf) < 19:
                return
            if bytes(self._buf[:11]) != COPY_SIGNATURE:
                raise ValueError("not a binary COPY stream")
            extension = int.from_bytes(self._buf[15:19], "big")
            del self._buf[:19 + extension]
            self._header_done = True
        rows = len(self._buf) // self.dtype.itemsize
        if rows == 0:
            return
        if len(self._buf) == rows * self.dtype.itemsize and self._buf[-2:] == b"\xff\xff":
            rows -= 1  # cannot happen with whole rows, but never mistake the trailer for data
        size = rows * self.dtype.itemsize
        table = np.frombuffer(bytes(self._buf[:size]), dtype=self.dtype)
        del self._buf[:size]
        if not (np.all(table["fields"] == 2) and np.all(table["id_len"] == 8)
                and np.all(table["vec_len"] == 4 + 4 * self.dim) and np.all(table["dim"] == self.dim)):
            raise ValueError(f"template_vectors rows are not (bigint, vector({self.dim}))")
        self._ids.append(table["id"].astype(np.int64))
        self._vecs.append(table["vec"].astype(np.float32))


def _array(value: Any) -> np.ndarray:
    """A pgvector value as float32 (the adapter returns a ``Vector`` or a numpy array, by version)."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def _unreachable(number: int, exc: Exception) -> StoreUnavailable:
    """The database error a shard reports: its class only, never the URL (it holds the password)."""
    return StoreUnavailable(f"index shard {number} cannot read the database: {type(exc).__name__}")


class Shard:
    """One Ray actor: the templates with ``template_id % shards == number``, rebuilt from PostgreSQL.

    The constructor never raises (Ray does not restart an actor whose constructor failed): a shard that
    cannot reach the database yet answers every call with an error and tries again on the next one.
    """

    def __init__(self, source_url: str, shards: int, number: int, *, dim: int, exact_below: int, nlist: int,
                 nprobe: int) -> None:
        self._url = source_url
        self._shards = shards
        self._number = number
        self._params = {"exact_below": exact_below, "nlist": nlist, "nprobe": nprobe}
        self._dim = dim
        self._conn: Any = None
        self._index: VectorIndex | None = None
        self._seq = 0
        self._build_seconds = 0.0
        self._started = time.time()
        try:
            self._build()
        except Exception as exc:
            log.warning("shard %d/%d could not build yet: %s", number, shards, type(exc).__name__)

    # -- database -------------------------------------------------------------------------------
    def _connection(self) -> Any:
        import psycopg
        from pgvector.psycopg import register_vector

        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self._url, connect_timeout=5,
                                         application_name=f"facekeeper-shard-{self._number}")
            register_vector(self._conn)
        return self._conn

    def _snapshot(self) -> Any:
        """One REPEATABLE READ transaction: the change-log position and the rows it reflects agree."""
        import psycopg

        conn = self._connection()
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        return conn.transaction()

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _build(self) -> None:
        import psycopg
        from psycopg import sql

        start = time.perf_counter()
        try:
            with self._snapshot():
                cur = self._connection().cursor()
                seq = int(cur.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0])
                parser = CopyParser(self._dim)
                query = sql.SQL("COPY (SELECT template_id, embedding FROM template_vectors"
                                " WHERE template_id % {n} = {i}) TO STDOUT (FORMAT BINARY)").format(
                    n=sql.Literal(self._shards), i=sql.Literal(self._number))
                with cur.copy(query) as copy:
                    for data in copy:
                        parser.feed(data)
            ids, vectors = parser.result()
        except (OSError, psycopg.Error) as exc:
            self._drop_connection()
            raise _unreachable(self._number, exc) from None
        index = VectorIndex(self._dim, **self._params)
        index.add(ids, vectors)
        self._index, self._seq = index, seq
        self._build_seconds = time.perf_counter() - start

    def _ready(self) -> VectorIndex:
        if self._index is None:
            self._build()
        assert self._index is not None
        return self._index

    def _catch_up(self) -> None:
        """Apply the changes since ``_seq`` that concern this shard; the net effect per id wins."""
        import psycopg

        index = self._ready()
        try:
            with self._snapshot():
                cur = self._connection().cursor()
                top = int(cur.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0])
                if top <= self._seq:
                    return
                rows = cur.execute(
                    "SELECT op, template_id FROM changes WHERE seq > %s AND seq <= %s AND template_id %% %s = %s"
                    " ORDER BY seq", (self._seq, top, self._shards, self._number)).fetchall()
                last: dict[int, str] = {}
                for op, tid in rows:
                    last[int(tid)] = op
                added = [tid for tid, op in last.items() if op == "add"]
                found = cur.execute("SELECT template_id, embedding FROM template_vectors WHERE template_id = ANY(%s)",
                                    (added,)).fetchall() if added else []
        except (OSError, psycopg.Error) as exc:
            self._drop_connection()
            raise _unreachable(self._number, exc) from None
        # every database read is done: the index changes below cannot be left half-applied
        index.remove(np.fromiter(last, dtype=np.int64, count=len(last)))
        if found:
            index.add(np.array([int(r[0]) for r in found], dtype=np.int64),
                      np.stack([_array(r[1]) for r in found]))
        self._seq = top

    # -- calls from the driver ------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int, allowed: np.ndarray | None, min_seq: int) -> list[tuple[int, float]]:
        index = self._ready()
        if min_seq > self._seq:
            self._catch_up()
        return index.search(vector, k, allowed)

    def catch_up(self, min_seq: int) -> int:
        self._ready()
        if min_seq > self._seq or min_seq < 0:
            self._catch_up()
        return self._seq

    def info(self) -> dict[str, Any]:
        import ray

        index = self._ready()
        return {"number": self._number, "size": index.size, "seq": self._seq, "kind": index.kind,
                "nlist": index.nlist, "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "build_seconds": self._build_seconds, "started": self._started}


class ShardedIndex:
    """The cluster's 1:N index: ``search`` has ``VectorIndex.search``'s contract, plus ``min_seq``.

    ``name`` makes the shards named, detached actors that every service process of the deployment shares
    (the first creates them; ``close`` leaves them running). Without it the actors belong to this process
    and die with it. ``timeout_s`` bounds a search, rebuilding shards included.

    A shard is idle between queries, so by default it reserves no CPU (``num_cpus``), or N shards could
    not be placed on fewer than N cores; ``memory`` (bytes, ~600 per template with IVF-Flat) reserves RAM
    so Ray never puts more shards on a node than it can hold.
    """

    kind = "ray-shards"

    def __init__(self, source_url: str, shards: int, *, nprobe: int = 64, exact_below: int = 50_000,
                 nlist: int = 4096, dim: int = DIM, timeout_s: float = DEFAULT_TIMEOUT_S, name: str | None = None,
                 num_cpus: float = 0.0, memory: int | None = None) -> None:
        import ray

        if shards < 1:
            raise ValueError("shards must be at least 1")
        self.shards = shards
        self.dim = dim
        self.timeout_s = timeout_s
        self.name = name
        self._args = (source_url, shards)
        self._params = {"dim": dim, "exact_below": exact_below, "nlist": nlist, "nprobe": nprobe}
        self._options: dict[str, Any] = {
            "max_restarts": -1,  # a dead shard comes back, and rebuilds itself from PostgreSQL
            "max_task_retries": -1,  # every call is a read or an idempotent catch-up: retry across restarts
            "max_pending_calls": MAX_PENDING_CALLS,
            "scheduling_strategy": "SPREAD",
            "num_cpus": num_cpus,
        }
        if memory:
            self._options["memory"] = memory
        self._remote = ray.remote(Shard)
        self._actors = [self._actor(i) for i in range(shards)]

    def _actor(self, number: int) -> Any:
        options = dict(self._options)
        if self.name:
            options.update(name=f"{self.name}-{number}-of-{self.shards}", lifetime="detached", get_if_exists=True)
        return self._remote.options(**options).remote(*self._args, number, **self._params)

    # -- queries --------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None,
               min_seq: int = 0) -> list[tuple[int, float]]:
        """The ``k`` nearest (template id, euclidean distance), nearest first, from every shard.

        ``allowed`` restricts the ids (each shard gets only its own); ``min_seq`` is the change-log
        position the answer must reflect at least (the caller's last write), so an erased template is
        never found again. Raises ``ShardUnavailable`` rather than answer from fewer than all shards.
        """
        if k <= 0:
            return []
        q = np.ascontiguousarray(vector, dtype=np.float32).ravel()
        ids = None if allowed is None else np.asarray(allowed, dtype=np.int64)
        calls = []
        for number, actor in enumerate(self._actors):
            mine = None if ids is None else ids[ids % self.shards == number]
            if mine is not None and len(mine) == 0:
                continue  # nothing this shard holds may be returned: its answer is known to be empty
            calls.append(actor.search.remote(q, k, mine, min_seq))
        answers = self._gather(calls, "search")
        return heapq.nsmallest(k, (hit for answer in answers for hit in answer), key=lambda hit: hit[1])

    def _gather(self, calls: Sequence[Any], what: str) -> list[Any]:
        import ray
        from ray.exceptions import RayError, RayTaskError

        if not calls:
            return []
        try:
            ready, pending = ray.wait(list(calls), num_returns=len(calls), timeout=self.timeout_s)
        except RayError as exc:
            raise ShardUnavailable(f"the cluster index cannot {what} now: {type(exc).__name__}") from exc
        if pending:
            for ref in pending:
                ray.cancel(ref)
            raise ShardUnavailable(f"{len(pending)} of {self.shards} index shards did not answer within"
                                   f" {self.timeout_s:g} s (restarting or rebuilding): retry later",
                                   shards=self.shards, missing=len(pending))
        try:
            return ray.get(ready)
        except RayTaskError as exc:
            if isinstance(exc.cause, StoreUnavailable):
                raise ShardUnavailable(f"{exc.cause.message}; retry later", shards=self.shards) from None
            raise exc.cause from exc  # a bug, not an outage: say so instead of answering 503 for ever
        except RayError as exc:
            raise ShardUnavailable(f"an index shard failed to {what}: {type(exc).__name__}; retry later",
                                   shards=self.shards) from exc

    def catch_up(self, min_seq: int = -1) -> int:
        """Bring every shard to ``min_seq`` at least (-1: to the latest change); the lowest position held."""
        return min(self._gather([a.catch_up.remote(min_seq) for a in self._actors], "catch up"))

    def shard_info(self) -> list[dict[str, Any]]:
        """Per shard: size, change-log position, index kind, the Ray node holding it, its build time."""
        return self._gather([a.info.remote() for a in self._actors], "report")

    def wait_ready(self, timeout_s: float = 600.0) -> list[dict[str, Any]]:
        """Block until every shard has built (or ``timeout_s`` passed: ``ShardUnavailable``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                saved, self.timeout_s = self.timeout_s, max(0.1, min(5.0, deadline - time.monotonic()))
                try:
                    return self.shard_info()
                finally:
                    self.timeout_s = saved
            except ShardUnavailable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    @property
    def size(self) -> int:
        return sum(int(info["size"]) for info in self.shard_info())

    @property
    def actors(self) -> list[Any]:
        """The shard actors' handles, in shard order (for operations and tests)."""
        return list(self._actors)

    def close(self, *, terminate: bool | None = None) -> None:
        """Drop this process's handles; shared (named) shards keep running unless ``terminate``."""
        import ray

        if terminate if terminate is not None else not self.name:
            for actor in self._actors:
                ray.kill(actor, no_restart=True)
        self._actors = []
