"""Which faiss codec a shard should hold: IVF-Flat against IVF-SQ8 and IVF-PQ, at one size, in one run.

Memory per template decides how many templates a node holds (docs/scaling.md, "10M on paper"); recall and
the error of the returned distance decide whether a codec can answer a gate, whose decision compares that
distance with a calibrated threshold. Same synthetic protected templates and probes as bench/scale.py.

Usage: ``.venv/bin/python bench/codecs.py [--size 1M] [--queries 1000]``; prints one Markdown table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import faiss
import numpy as np

from common import Latency, Table, log, machine, synthetic_faces, today, version

DIM = 128
NLIST = 4096
NPROBE = 64
TRAIN_PER_LIST = 64  # as gallery.index trains


def codecs() -> list[tuple[str, Callable[[faiss.Index], faiss.Index]]]:
    return [
        ("IVF-Flat (shipped)", lambda q: faiss.IndexIVFFlat(q, DIM, NLIST)),
        ("IVF-SQ8", lambda q: faiss.IndexIVFScalarQuantizer(q, DIM, NLIST, faiss.ScalarQuantizer.QT_8bit)),
        ("IVF-PQ 32x8", lambda q: faiss.IndexIVFPQ(q, DIM, NLIST, 32, 8)),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--size", default="1M", help="templates, e.g. 100k or 1M")
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args(argv)
    n = int(float(args.size.lower().rstrip("km")) * {"k": 1_000, "m": 1_000_000}.get(args.size[-1:].lower(), 1))
    data = synthetic_faces(n // 10, 10, seed=n)
    probes, who = data.probes(args.queries, np.random.default_rng(n + 1))
    log(f"{n:,} templates: exact answers")
    exact = faiss.IndexFlatL2(DIM)
    exact.add(data.vectors)
    _, true_i = exact.search(probes, 1)
    del exact
    rng = np.random.default_rng(0)
    sample = data.vectors[np.sort(rng.choice(n, min(n, TRAIN_PER_LIST * NLIST), replace=False))]
    table = Table(["index (nlist 4096, nprobe 64)", "bytes / template (code + id)", "build", "query p50 / p99",
                   "r@1", "id@1", "top-1 distance error: median / max"])
    for name, make in codecs():
        log(f"{name}: train and add")
        faiss.omp_set_num_threads(2)
        index = make(faiss.IndexFlatL2(DIM))
        t0 = time.perf_counter()
        index.train(sample)
        index.add(data.vectors)
        build = time.perf_counter() - t0
        faiss.omp_set_num_threads(1)  # searches run on one thread, as gallery.index sets
        index.nprobe = NPROBE
        lat = np.empty(len(probes))
        top = np.empty(len(probes), np.int64)
        dist = np.empty(len(probes))
        for i, p in enumerate(probes):
            t0 = time.perf_counter()
            d, ids = index.search(p[None], 10)
            lat[i] = time.perf_counter() - t0
            top[i], dist[i] = ids[0, 0], d[0, 0]
        exact_d = np.linalg.norm(data.vectors[top] - probes, axis=1)  # the true distance of what was returned
        err = np.abs(np.sqrt(np.maximum(dist, 0)) - exact_d)
        table.add(name, f"{index.code_size + 8} B", f"{build:.0f} s", Latency(lat).ms(),
                  f"{np.mean(top == true_i[:, 0]):.3f}", f"{np.mean(data.labels[top] == who):.3f}",
                  f"{np.median(err):.4f} / {err.max():.4f}")
        del index
    print(f"# faiss codecs for a shard, {n:,} templates\n")
    print(f"- machine: {machine()}\n- date: {today()}\n- faiss-cpu {version('faiss-cpu')}, {args.queries} probes,"
          f" one at a time, k = 10; r@1 = top-1 is the exact top-1, id@1 = top-1 is the probe's identity\n")
    print(table.markdown())


if __name__ == "__main__":
    main()
