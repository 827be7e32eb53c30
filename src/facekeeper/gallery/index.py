"""The 1:N vector index over protected (rotated) templates, with an encrypted snapshot on disk.

Exact search (faiss flat) below ``exact_below`` templates, where it is both faster and perfect; above,
faiss IVF-Flat, which we measured keeping identity recall at 1M where HNSW's falls (../shared/MEASURED.md).
Rebuilding 1M vectors costs minutes, so the index is persisted, sealed with a key derived from the
deployment key, and tagged with the change-log position it reflects; start-up loads it and replays the
changes since.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import faiss
import numpy as np

from facekeeper.gallery.protect import SealError, open_sealed, seal

MAGIC = b"FKIX1"
# faiss warns below ~39 training points per list; fewer lists than that is wasted search
POINTS_PER_LIST = 39


class VectorIndex:
    """Template ids (int64) → protected vectors; k-nearest search with an optional id filter."""

    def __init__(self, dim: int, *, exact_below: int, nlist: int, nprobe: int) -> None:
        self.dim = dim
        self.exact_below = exact_below
        self.max_nlist = nlist
        self.nprobe = nprobe
        self._index: faiss.Index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))

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
        if self.kind == "exact" and self.size >= self.exact_below:
            self._to_ivf()

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
        inner = faiss.downcast_index(self._index.index)
        n = self.size
        vectors = inner.reconstruct_n(0, n)
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        nlist = max(1, min(self.max_nlist, n // POINTS_PER_LIST))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(self.dim), self.dim, nlist)
        ivf.train(vectors)
        ivf.add_with_ids(vectors, ids)
        ivf.nprobe = self.nprobe
        self._index = ivf

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: Path, key: bytes, seq: int, context: bytes) -> None:
        """Seal and atomically replace the snapshot; ``seq`` is the change-log position it reflects."""
        raw = faiss.serialize_index(self._index).tobytes()
        header = MAGIC + struct.pack("<QQ", seq, self.size)
        blob = seal(key, raw, context + header)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(header + blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, key: bytes, context: bytes, *, exact_below: int, nlist: int,
             nprobe: int, dim: int) -> tuple[VectorIndex, int] | None:
        """The snapshot and its change-log position, or None when it is absent, foreign or damaged."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        head = len(MAGIC) + 16
        if len(data) < head or not data.startswith(MAGIC):
            return None
        seq, count = struct.unpack_from("<QQ", data, len(MAGIC))
        try:
            raw = open_sealed(key, data[head:], context + data[:head])
            index = faiss.deserialize_index(np.frombuffer(raw, dtype=np.uint8))
        except (SealError, RuntimeError):
            return None
        if index.ntotal != count or index.d != dim:
            return None
        out = cls(dim, exact_below=exact_below, nlist=nlist, nprobe=nprobe)
        out._index = index
        if isinstance(index, faiss.IndexIVFFlat):
            index.nprobe = nprobe
        return out, int(seq)
