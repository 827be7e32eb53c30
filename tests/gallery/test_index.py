"""VectorIndex: lists refitted as a gallery grows, the same answers as exact search, snapshots round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facekeeper.gallery.index import POINTS_PER_LIST, VectorIndex

DIM = 16


def clustered(n: int, seed: int) -> np.ndarray:
    """Vectors in tight groups of 10, like templates of 10 photos per person."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 10, DIM)).astype(np.float32)
    return (np.repeat(centres, 10, axis=0) + 0.05 * rng.normal(size=(n, DIM))).astype(np.float32)


def test_grown_in_batches_ends_with_the_lists_of_a_one_call_build() -> None:
    vectors = clustered(20_000, 1)
    grown = VectorIndex(DIM, exact_below=1_000, nlist=256, nprobe=16)
    for start in range(0, len(vectors), 500):
        grown.add(np.arange(start, start + 500), vectors[start:start + 500])
    built = VectorIndex(DIM, exact_below=1_000, nlist=256, nprobe=16)
    built.add(np.arange(len(vectors)), vectors)
    assert grown.size == built.size == 20_000
    assert grown.kind == built.kind == "ivf-flat"
    assert built.nlist == 256  # 20000 // 39 = 512, capped at 256
    assert grown.nlist == 256  # refitted on the way up: 25 -> 51 -> 102 -> ... -> 256


def test_refit_waits_for_the_gallery_to_double() -> None:
    vectors = clustered(4_000, 2)
    index = VectorIndex(DIM, exact_below=1_000, nlist=4096, nprobe=8)
    index.add(np.arange(1_000), vectors[:1_000])
    first = index.nlist
    assert first == 1_000 // POINTS_PER_LIST
    index.add(np.arange(1_000, 1_900), vectors[1_000:1_900])
    assert index.nlist == first
    index.add(np.arange(1_900, 2_100), vectors[1_900:2_100])
    assert index.nlist == 2_100 // POINTS_PER_LIST


def test_ivf_answers_like_exact_search_after_refits_and_removals() -> None:
    vectors = clustered(6_000, 3)
    ivf = VectorIndex(DIM, exact_below=500, nlist=64, nprobe=64)
    exact = VectorIndex(DIM, exact_below=10**9, nlist=64, nprobe=64)
    for start in range(0, len(vectors), 250):
        ids = np.arange(start, start + 250)
        ivf.add(ids, vectors[start:start + 250])
        exact.add(ids, vectors[start:start + 250])
    gone = np.arange(0, 6_000, 7)
    assert ivf.remove(gone) == exact.remove(gone) == len(gone)
    queries = vectors[1::97]
    for q in queries:
        got = ivf.search(q, 5)
        want = exact.search(q, 5)
        assert [i for i, _ in got] == [i for i, _ in want]
        assert not set(i for i, _ in got) & set(gone.tolist())


def test_filtered_search_only_returns_allowed_ids() -> None:
    vectors = clustered(3_000, 5)
    index = VectorIndex(DIM, exact_below=1_000, nlist=64, nprobe=64)
    index.add(np.arange(3_000), vectors)
    allowed = np.arange(1, 3_000, 2)
    hits = index.search(vectors[10], 20, allowed=allowed)
    assert hits and all(i % 2 == 1 for i, _ in hits)
    assert index.search(vectors[10], 5, allowed=np.array([], dtype=np.int64)) == []


def test_snapshot_round_trip_keeps_the_refitted_lists(tmp_path: Path) -> None:
    vectors = clustered(5_000, 6)
    index = VectorIndex(DIM, exact_below=1_000, nlist=512, nprobe=32)
    for start in range(0, len(vectors), 1_000):
        index.add(np.arange(start, start + 1_000), vectors[start:start + 1_000])
    key = bytes(range(32))
    path = tmp_path / "index.snap"
    index.save(path, key, 42, b"ctx")
    loaded = VectorIndex.load(path, key, b"ctx", exact_below=1_000, nlist=512, nprobe=32, dim=DIM)
    assert loaded is not None
    again, seq = loaded
    assert seq == 42 and again.size == 5_000 and again.nlist == index.nlist == 4_000 // POINTS_PER_LIST
    assert again.trained_for == index.trained_for == 4_000
    assert again.search(vectors[123], 1)[0][0] == 123
    assert VectorIndex.load(path, bytes(32), b"ctx", exact_below=1_000, nlist=512, nprobe=32, dim=DIM) is None


def test_lists_are_retrained_as_the_gallery_grows_past_their_maximum_number() -> None:
    vectors = clustered(4_000, 7)
    index = VectorIndex(DIM, exact_below=500, nlist=16, nprobe=16)
    for start in range(0, len(vectors), 100):
        index.add(np.arange(start, start + 100), vectors[start:start + 100])
        assert index.nlist <= 16
    assert index.nlist == 16  # reached at 1000 templates
    assert index.trained_for == 4_000  # yet retrained at 2000 and 4000: centroids follow the data


def test_snapshot_is_sealed_in_chunks_that_cannot_be_cut_reordered_or_flipped(tmp_path: Path,
                                                                             monkeypatch) -> None:
    import facekeeper.gallery.index as index_module

    monkeypatch.setattr(index_module, "SNAPSHOT_CHUNK", 4096)  # many chunks from a small index
    vectors = clustered(600, 8)
    index = VectorIndex(DIM, exact_below=10_000, nlist=16, nprobe=16)
    index.add(np.arange(600), vectors)
    key, path = bytes(range(32)), tmp_path / "index.snap"
    index.save(path, key, 7, b"ctx")
    data = path.read_bytes()
    assert data.count(b"FKIX3") == 1 and len(data) > 600 * DIM * 4
    assert vectors[5].tobytes() not in data  # nothing in the clear

    def loads(blob: bytes) -> bool:
        path.write_bytes(blob)
        return VectorIndex.load(path, key, b"ctx", exact_below=10_000, nlist=16, nprobe=16, dim=DIM) is not None

    assert loads(data)
    head = len(b"FKIX3") + 24
    frame = 9 + 12 + 4096 + 16  # size+flag, nonce, one full chunk, tag
    assert not loads(data[:head + frame])  # cut after the first chunk
    assert not loads(data + b"x")  # trailing bytes
    swapped = data[:head] + data[head + frame:head + 2 * frame] + data[head:head + frame] + data[head + 2 * frame:]
    assert not loads(swapped)  # chunks reordered
    flipped = bytearray(data)
    flipped[head + 8] = 1  # first chunk claims to be the last
    assert not loads(bytes(flipped))
