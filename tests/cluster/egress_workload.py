"""A whole cluster session in one process, for the no-egress test: a development PostgreSQL, a local Ray
head started by ``runtime.connect``, two shards built from the database, searches, an erasure, a shard
killed and rebuilt. Prints one JSON line. Run as ``python -m tests.cluster.egress_workload STATE_DIR``."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from facekeeper.cluster import runtime
from facekeeper.cluster.bench import create_tables, load_vectors, remove_ids
from facekeeper.cluster.shards import ShardedIndex, ShardUnavailable
from facekeeper.db.server import temporary_server
from facekeeper.egress import EgressGuard


def main(state: Path) -> dict[str, object]:
    with temporary_server() as server:
        with EgressGuard(block=False) as guard:
            url = server.start()
            info = runtime.connect(None, state_dir=state, num_cpus=2)
            create_tables(url)
            rng = np.random.default_rng(0)
            vectors = rng.standard_normal((400, 128)).astype(np.float32)
            ids = np.arange(1, 401, dtype=np.int64)
            load_vectors(url, ids, vectors)
            index = ShardedIndex(url, 2, timeout_s=0.5)
            shards = index.wait_ready(timeout_s=120)
            first = index.search(vectors[7], 1)[0][0]
            seq = remove_ids(url, np.array([8]))
            after_erasure = [i for i, _ in index.search(vectors[7], 3, min_seq=seq)]
            os.kill(int(shards[0]["pid"]), signal.SIGKILL)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if index.shard_info()[0]["pid"] != shards[0]["pid"]:
                        break
                except ShardUnavailable:
                    time.sleep(0.1)
            recovered = index.search(vectors[7], 1)[0][0]
            index.close()
            runtime.disconnect()
        return {"started_here": info.started_here, "first": int(first), "erased_gone": 8 not in after_erasure,
                "recovered_without_erased": recovered == after_erasure[0] != 8,
                "guard": [str(a) for a in guard.attempts],
                "token_mode": oct((state / "auth_token").stat().st_mode & 0o777)}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))), flush=True)
