"""The 1:N vector index over protected (rotated) templates, with an encrypted snapshot on disk.

Exact search (faiss flat) below ``exact_below`` templates, where it is both faster and perfect; above,
faiss IVF-Flat, which we measured keeping identity recall at 1M where HNSW's falls (../shared/MEASURED.md).
Rebuilding 1M vectors costs minutes, so the index is persisted, sealed with a key derived from the
deployment key, and tagged with the change-log position it reflects; start-up loads it and replays the
changes since.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
from pathlib import Path

import faiss
import numpy as np

from facekeeper.gallery.protect import SealError, open_sealed, seal

MAGIC = b"FKIX3"  # v2 added the size the lists were trained for; v3 seals in chunks
SNAPSHOT_CHUNK = 256 * 1024 * 1024
# faiss warns below ~39 training points per list; fewer lists than that is wasted search
POINTS_PER_LIST = 39
# k-means gains nothing from more than ~64 points per list; training on all of 1M took 82 s, a sample 20 s
TRAIN_POINTS_PER_LIST = 64
# Lists are retrained when the gallery has grown to this many times the size they were trained for, so a
# gallery grown one enrollment at a time ends with lists like a one-call build's: their number fitted to the
# size, their centroids to the data (trained at 200k and grown to 1M: p99 5.1 ms; retrained: ~1 ms).
REFIT_GROWTH = 2

# One query is a few hundred microseconds of work: an OpenMP team of two costs more than it saves and makes
# the tail depend on whatever else runs (service p99 at 10k: 6.8 ms with 2 threads, 2.3 ms with 1).
# Training is the only bulk work, and it asks for all cores itself.
faiss.omp_set_num_threads(1)


class VectorIndex:
    """Template ids (int64) → protected vectors; k-nearest search with an optional id filter."""

    def __init__(self, dim: int, *, exact_below: int, nlist: int, nprobe: int) -> None:
        self.dim = dim
        self.exact_below = exact_below
        self.max_nlist = nlist
        self.nprobe = nprobe
        self._index: faiss.Index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))
        self._trained_for = 0  # templates held when the IVF lists were last trained

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        return "ivf-flat" if isinstance(self._index, faiss.IndexIVFFlat) else "exact"

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vecs = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        self._index.add_with_ids(vecs, np.asarray(ids, dtype=np.int64))
        if self._refit_due():
            self._to_ivf()

    @property
    def nlist(self) -> int:
        """Inverted lists in use (0 for exact search)."""
        return int(faiss.downcast_index(self._index).nlist) if self.kind == "ivf-flat" else 0

    @property
    def trained_for(self) -> int:
        """How many templates the index held when its lists were last trained (0 for exact search)."""
        return self._trained_for if self.kind == "ivf-flat" else 0

    def _refit_due(self) -> bool:
        """Exact search has grown past its limit, or the lists were trained on a gallery half this size."""
        if self.kind == "exact":
            return self.size >= self.exact_below
        return self.size >= REFIT_GROWTH * max(self._trained_for, 1)

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        return int(self._index.remove_ids(np.asarray(ids, dtype=np.int64)))

    def search(self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The ``k`` nearest (id, euclidean distance), nearest first; ``allowed`` restricts the ids."""
        if self.size == 0 or k <= 0:
            return []
        q = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        k = min(k, self.size)
        params = None
        if allowed is not None:
            if len(allowed) == 0:
                return []
            sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            params = (faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe) if self.kind == "ivf-flat"
                      else faiss.SearchParameters(sel=sel))
        elif self.kind == "ivf-flat":
            params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        dist, ids = self._index.search(q, k, params=params)
        return [(int(i), math.sqrt(max(float(d), 0.0))) for d, i in zip(dist[0], ids[0], strict=True) if i >= 0]

    def _to_ivf(self) -> None:
        """Re-index everything into IVF-Flat, with the number of lists fitted to the current size."""
        ids, vectors = self._contents()
        n = len(ids)
        nlist = max(1, min(self.max_nlist, n // POINTS_PER_LIST))
        sample = vectors
        if n > TRAIN_POINTS_PER_LIST * nlist:
            pick = np.random.default_rng(n).choice(n, TRAIN_POINTS_PER_LIST * nlist, replace=False)
            sample = vectors[np.sort(pick)]
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(self.dim), self.dim, nlist)
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        try:
            ivf.train(sample)
            ivf.add_with_ids(vectors, ids)
        finally:
            faiss.omp_set_num_threads(1)
        ivf.nprobe = self.nprobe
        self._index = ivf
        self._trained_for = n

    def _contents(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector) held, whichever kind of index holds them."""
        if self.kind == "exact":
            inner = faiss.downcast_index(self._index.index)
            vectors = inner.reconstruct_n(0, self.size)
            return faiss.vector_to_array(self._index.id_map).astype(np.int64), vectors
        ivf = faiss.downcast_index(self._index)
        lists = ivf.invlists
        all_ids, all_vecs = [], []
        for list_no in range(ivf.nlist):
            size = lists.list_size(list_no)
            if size == 0:
                continue
            all_ids.append(faiss.rev_swig_ptr(lists.get_ids(list_no), size).copy())
            codes = faiss.rev_swig_ptr(lists.get_codes(list_no), size * lists.code_size).copy()
            all_vecs.append(codes.view(np.float32).reshape(size, self.dim))
        return np.concatenate(all_ids).astype(np.int64), np.concatenate(all_vecs)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: Path, key: bytes, seq: int, context: bytes) -> None:
        """Seal and atomically replace the snapshot; ``seq`` is the change-log position it reflects.

        Sealed in chunks: one AES-GCM message is capped at 2 GiB (~4M templates), and streaming chunks
        avoids holding a second copy of a large index. Each chunk's AAD binds the header, its number and
        whether it is the last, so chunks cannot be reordered, dropped or cut off.
        """
        raw = faiss.serialize_index(self._index)  # numpy uint8 array, not copied again below
        header = MAGIC + struct.pack("<QQQ", seq, self.size, self._trained_for)
        view = memoryview(raw)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(header)
            starts = range(0, max(len(view), 1), SNAPSHOT_CHUNK)
            for number, start in enumerate(starts):
                last = number == len(starts) - 1
                blob = seal(key, bytes(view[start:start + SNAPSHOT_CHUNK]), _chunk_aad(context, header, number, last))
                fh.write(struct.pack("<Q?", len(blob), last) + blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, key: bytes, context: bytes, *, exact_below: int, nlist: int,
             nprobe: int, dim: int) -> tuple[VectorIndex, int] | None:
        """The snapshot and its change-log position, or None when it is absent, foreign or damaged."""
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            return None
        with fh:
            total = os.fstat(fh.fileno()).st_size
            header = fh.read(len(MAGIC) + 24)
            if len(header) < len(MAGIC) + 24 or not header.startswith(MAGIC):
                return None  # foreign, or an older format: the caller rebuilds from the store
            seq, count, trained_for = struct.unpack_from("<QQQ", header, len(MAGIC))
            parts: list[bytes] = []
            try:
                for number in itertools.count():
                    frame = fh.read(9)
                    if len(frame) < 9:
                        return None  # cut off before the chunk marked last
                    size, last = struct.unpack("<Q?", frame)
                    if size > total - fh.tell():
                        return None  # a length the file cannot hold: damaged
                    blob = fh.read(size)
                    if len(blob) < size:
                        return None
                    # the flag is authenticated: flipping it makes the chunk fail to open
                    parts.append(open_sealed(key, blob, _chunk_aad(context, header, number, last)))
                    if last:
                        break
                if fh.read(1):
                    return None  # bytes after the last chunk
                joined = parts[0] if len(parts) == 1 else b"".join(parts)
                del parts
                index = faiss.deserialize_index(np.frombuffer(joined, dtype=np.uint8))
            except (SealError, RuntimeError):
                return None
        if index.ntotal != count or index.d != dim:
            return None
        out = cls(dim, exact_below=exact_below, nlist=nlist, nprobe=nprobe)
        out._index = index
        out._trained_for = int(trained_for)
        if isinstance(index, faiss.IndexIVFFlat):
            index.nprobe = nprobe
        return out, int(seq)


def _chunk_aad(context: bytes, header: bytes, number: int, last: bool) -> bytes:
    return context + header + struct.pack("<Q?", number, last)
