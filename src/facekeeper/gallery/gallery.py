"""The gallery: subjects and their protected templates, searchable, erasable for real.

It sees descriptors, never images. A descriptor is rotated by the deployment's secret transform, sealed
under the subject's data key, stored, and indexed. Every process replays the store's change log before
it searches, so several CLI and service processes can share one gallery.

One model is the gallery's primary model (``meta model_id``): only its templates are indexed. A subject
enrolled for an accurate-mode purpose also keeps a FaceNet template per photo (a *side* model,
``fusion.SIDE_MODELS``), rotated by its own keyed transform and sealed under the same subject key, so
erasure destroys both; side templates are read per candidate when re-ranking, never searched. A side
template can also be added later, from a probe the primary model matched (``add_side_template``: moving a
site to a new model without photos), sealed the same way.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np

from facekeeper.config import Settings
from facekeeper.db.database import Connection
from facekeeper.errors import DeploymentKeyError, GalleryError, InvalidInput, ModelMismatch, UnknownSubject
from facekeeper.fusion import SIDE_MODELS
from facekeeper.gallery.index import VectorIndex
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.gallery.keystore import ORPHAN_AGE_SECONDS, KeyStore
from facekeeper.gallery.pgvector_index import vector_literal
from facekeeper.gallery.protect import (
    OrthogonalTransform,
    SealError,
    open_sealed,
    seal,
    vector_from_bytes,
    vector_to_bytes,
)
from facekeeper.gallery.store import Store, TemplateRow

MAX_SUBJECT_ID = 200


@dataclass(frozen=True)
class SubjectInfo:
    pseudonym: str
    subject_id: str
    name: str | None
    templates: int
    created_at: float
    template_dates: tuple[float, ...]


@dataclass(frozen=True)
class Candidate:
    """A subject found by 1:N search, scored by its best template."""

    pseudonym: str
    distance: float


@dataclass(frozen=True)
class Erasure:
    pseudonym: str
    templates: int
    erased_at: float


class Gallery:
    def __init__(self, settings: Settings, key: DeploymentKey, store: Store, keystore: KeyStore) -> None:
        self.settings = settings
        self._key = key
        self.store = store
        self.keystore = keystore
        self._lookup_key = key.derive("subject-lookup")
        self._index_key = key.derive("index-snapshot")
        self._context = settings.deployment_id.encode()
        self._transforms: dict[tuple[str, int], OrthogonalTransform] = {}
        self._index: VectorIndex | None = None
        self._external: Any = None  # the pgvector or Ray index (index.backend), which PostgreSQL feeds
        self._seq = 0
        self._saved_seq = 0
        self._lock = threading.RLock()

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def create(cls, settings: Settings, key: DeploymentKey) -> Gallery:
        location = settings.gallery_location
        if isinstance(location, Path) and location.exists():
            raise GalleryError(f"a gallery already exists at {location}")
        store = Store(location, create=True, pool_size=settings.gallery.pool_size)
        if store.get_meta("deployment_id") is not None:
            store.close()
            raise GalleryError("this database already holds a gallery: use another database, or open that"
                               " deployment")
        with store.transaction():
            store.set_meta("deployment_id", settings.deployment_id)
            store.set_meta("key_check", key.check_value(settings.deployment_id))
        return cls(settings, key, store, KeyStore(settings.keystore_location("keystore.db"), key))

    @classmethod
    def open(cls, settings: Settings, key: DeploymentKey) -> Gallery:
        store = Store(settings.gallery_location, pool_size=settings.gallery.pool_size)
        if store.get_meta("deployment_id") != settings.deployment_id:
            store.close()
            raise GalleryError("this gallery file belongs to another deployment: check --home")
        if store.get_meta("key_check") != key.check_value(settings.deployment_id):
            store.close()
            raise DeploymentKeyError(
                "the deployment key does not open this gallery: use the key created with it"
            )
        gallery = cls(settings, key, store, KeyStore(settings.keystore_location("keystore.db"), key))
        gallery._reconcile_keys()
        return gallery

    def close(self) -> None:
        with self._lock:
            if self._index is not None and self._seq != self._saved_seq:
                self.save_index()
            if self._external is not None:
                self._external.close()
                self._external = None
            self.store.close()
            self.keystore.close()

    def _reconcile_keys(self) -> None:
        """Finish what a crash interrupted: shred keys left without a subject, drop subjects left without a key."""
        in_gallery = {p for p, _ in self.store.subjects()}
        stale = [p for p in self.keystore.all_pseudonyms(older_than=time.time() - ORPHAN_AGE_SECONDS)
                 if p not in in_gallery]
        if stale:
            self.keystore.destroy(stale)
        keyed = set(self.keystore.all_pseudonyms())
        for pseudonym in in_gallery - keyed:
            self._delete_rows(pseudonym)

    # -- protection -----------------------------------------------------------------------------
    def transform(self, model_id: str, dim: int) -> OrthogonalTransform:
        with self._lock:
            t = self._transforms.get((model_id, dim))
            if t is None:
                t = self._transforms[(model_id, dim)] = OrthogonalTransform(self._key, dim, model_id)
            return t

    def protect(self, descriptor: np.ndarray, model_id: str) -> np.ndarray:
        """The protected form of a descriptor: what is stored, indexed and compared."""
        d = np.asarray(descriptor, dtype=np.float32).ravel()
        return self.transform(model_id, d.size).apply(d)

    def _lookup(self, subject_id: str) -> str:
        return hmac.new(self._lookup_key, normal_subject_id(subject_id).encode(), sha256).hexdigest()

    # -- subjects -------------------------------------------------------------------------------
    def resolve(self, subject_id: str) -> str:
        """The pseudonym of an operator-given subject id; ``UnknownSubject`` if there is none."""
        pseudonym = self.store.pseudonym_for(self._lookup(subject_id))
        if pseudonym is None:
            raise UnknownSubject(f"no subject '{subject_id}' in this gallery: 'facekeeper subjects list' shows them")
        return pseudonym

    def find(self, subject_id: str) -> str | None:
        return self.store.pseudonym_for(self._lookup(subject_id))

    def enroll(
        self,
        subject_id: str,
        descriptors: Iterable[np.ndarray],
        model_id: str,
        name: str | None = None,
        *,
        pseudonym: str | None = None,
        within: Callable[[Connection, str, int], None] | None = None,
        side: Mapping[str, Sequence[np.ndarray] | np.ndarray] | None = None,
    ) -> str:
        """Store templates for a subject (created on first enrollment); returns the pseudonym.

        ``side`` holds templates of side models (model id -> one descriptor per photo), stored beside the
        primary ones in the same transaction and never indexed.

        ``pseudonym`` names a new subject (the privacy registry allocates one before enrollment, so a
        person keeps one pseudonym); ``within(db, pseudonym, templates)`` runs inside the same transaction,
        so a policy re-check or an audit entry commits or rolls back with the templates.
        """
        subject_id = normal_subject_id(subject_id)
        vectors = [np.asarray(d, dtype=np.float32).ravel() for d in descriptors]
        if not vectors:
            raise InvalidInput("nothing to enroll")
        self.check_model(model_id)
        extra = [(m, np.asarray(d, dtype=np.float32).ravel()) for m, ds in (side or {}).items() for d in ds]
        for side_model, vec in extra:
            if SIDE_MODELS.get(side_model) != vec.size:
                raise ModelMismatch(f"{side_model} templates of size {vec.size} cannot be kept beside"
                                    f" {model_id}: only {', '.join(sorted(SIDE_MODELS))} can",
                                    engine_model=side_model)
        lookup = self._lookup(subject_id)
        with self._lock:
            created: str | None = None
            try:
                with self.store.transaction() as db:
                    # Whether the subject is new is decided inside the write transaction (writers are
                    # serialised), so two processes enrolling one new person cannot both create it.
                    row = db.execute("SELECT pseudonym FROM subjects WHERE lookup = ?", (lookup,)).fetchone()
                    existing = None if row is None else str(row[0])
                    if existing is not None and pseudonym is not None and existing != pseudonym:
                        raise GalleryError("this subject is already enrolled under another pseudonym")
                    new = existing is None
                    if new:
                        pseudonym = pseudonym or "s_" + secrets.token_hex(10)
                        dek = self.keystore.create(pseudonym)
                        created = pseudonym
                    else:
                        pseudonym = existing
                        assert pseudonym is not None
                        dek = self._dek(pseudonym)
                    try:
                        self._store_rows(db, pseudonym, dek, new, subject_id, name, model_id, vectors, extra,
                                         within)
                    except BaseException:
                        if created is not None:  # before the lock is released: the next writer may create it
                            self.keystore.destroy([created])
                            created = None
                        raise
                created = None
            except BaseException:
                if created is not None:  # the commit failed: the key would otherwise outlive it for an hour
                    self.keystore.destroy([created])
                raise
            self.refresh()
            return pseudonym

    def _store_rows(self, db: Connection, pseudonym: str, dek: bytes, new: bool, subject_id: str,
                    name: str | None, model_id: str, vectors: list[np.ndarray],
                    extra: list[tuple[str, np.ndarray]], within: Callable[[Connection, str, int], None] | None) -> None:
        """``enroll``'s rows, inside its transaction: the subject and identity (when new), the templates."""
        now = time.time()
        if new:
            db.execute("INSERT INTO subjects VALUES (?, ?, ?)", (pseudonym, self._lookup(subject_id), now))
            identity = json.dumps({"subject_id": subject_id, "name": name}).encode()
            db.execute("INSERT INTO identities VALUES (?, ?)",
                       (pseudonym, seal(dek, identity, b"identity|" + pseudonym.encode())))
        elif name is not None:
            identity = json.dumps({"subject_id": subject_id, "name": name}).encode()
            db.execute("UPDATE identities SET sealed = ? WHERE pseudonym = ?",
                       (seal(dek, identity, b"identity|" + pseudonym.encode()), pseudonym))
        for row_model, vec in [(model_id, v) for v in vectors] + extra:
            self._insert_template(db, pseudonym, dek, row_model, vec, now)
        if not self.store.get_meta("model_id"):
            self.store.set_meta("model_id", model_id)
        if within is not None:
            within(db, pseudonym, len(vectors))

    def _insert_template(self, db: Connection, pseudonym: str, dek: bytes, model_id: str, vec: np.ndarray,
                         now: float) -> None:
        """One template row: protected, sealed under the subject key bound to its row, indexed unless a side
        model's."""
        protected = self.protect(vec, model_id)
        tid = int(db.execute(
            "INSERT INTO templates (pseudonym, model_id, created_at, sealed) VALUES (?, ?, ?, ?)"
            " RETURNING id", (pseudonym, model_id, now, b"")).fetchone()[0])
        blob = seal(dek, vector_to_bytes(protected), self._template_aad(tid, pseudonym, model_id))
        db.execute("UPDATE templates SET sealed = ? WHERE id = ?", (blob, tid))
        if model_id not in SIDE_MODELS:  # side templates are never indexed
            db.execute("INSERT INTO changes (op, template_id) VALUES ('add', ?)", (tid,))
            if self.vectors_in_database:
                db.execute("INSERT INTO template_vectors VALUES (?, CAST(? AS vector))",
                           (tid, vector_literal(protected)))

    def add_side_template(self, pseudonym: str, model_id: str, descriptor: np.ndarray,
                          within: Callable[[Connection], None] | None = None) -> bool:
        """Add one side-model template to a subject that holds none of ``model_id``; False if it already does.

        The check and the insert share one write transaction (writers are serialised), so two matches at once
        add one template, not two; ``within(db)`` (a consent re-check, the audit entry) commits or rolls back
        with it. Sealed under the subject's key like enrollment's side templates, so erasure shreds it too.
        """
        vec = np.asarray(descriptor, dtype=np.float32).ravel()
        if SIDE_MODELS.get(model_id) != vec.size:
            raise ModelMismatch(f"{model_id} templates of size {vec.size} cannot be kept beside the primary model:"
                                f" only {', '.join(sorted(SIDE_MODELS))} can", engine_model=model_id)
        with self._lock, self.store.transaction() as db:
            if db.execute("SELECT 1 FROM subjects WHERE pseudonym = ?", (pseudonym,)).fetchone() is None:
                raise UnknownSubject("no such subject in this gallery")
            if db.execute("SELECT 1 FROM templates WHERE pseudonym = ? AND model_id = ? LIMIT 1",
                          (pseudonym, model_id)).fetchone() is not None:
                return False
            self._insert_template(db, pseudonym, self._dek(pseudonym), model_id, vec, time.time())
            if within is not None:
                within(db)
        return True

    def models_of(self, pseudonym: str) -> set[str]:
        """The models a subject holds templates of (nothing is decrypted)."""
        return {str(r[0]) for r in self.store.db.execute(
            "SELECT DISTINCT model_id FROM templates WHERE pseudonym = ?", (pseudonym,))}

    def models_held(self) -> dict[str, set[str]]:
        """Each subject's template models (pseudonym -> model ids): what the coverage report counts."""
        held: dict[str, set[str]] = {p: set() for p, _ in self.store.subjects()}
        for pseudonym, model_id in self.store.db.execute("SELECT DISTINCT pseudonym, model_id FROM templates"):
            held.setdefault(str(pseudonym), set()).add(str(model_id))
        return held

    def delete_subject(self, pseudonym: str, *, persist: bool = True,
                       within: Callable[[Connection, int], None] | None = None) -> Erasure:
        """Crypto-shred a subject: destroy its data key, then its rows, then its index entries.

        ``within(db, templates)`` runs in the transaction that removes the rows, and only if this call
        removed them (a concurrent eraser that got there first makes this one ``UnknownSubject``).
        """
        with self._lock:
            if not self.store.subject_exists(pseudonym):
                raise UnknownSubject("no such subject in this gallery")
            self.keystore.destroy([pseudonym])
            count = self._delete_rows(pseudonym, within)
            self.refresh()
            if persist:
                self.save_index()
            return Erasure(pseudonym, count, time.time())

    def _delete_rows(self, pseudonym: str,
                     within: Callable[[Connection, int], None] | None = None) -> int:
        with self.store.transaction() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM templates WHERE pseudonym = ?", (pseudonym,))]
            db.executemany("INSERT INTO changes (op, template_id) VALUES ('remove', ?)", [(i,) for i in ids])
            db.execute("DELETE FROM templates WHERE pseudonym = ?", (pseudonym,))
            db.execute("DELETE FROM identities WHERE pseudonym = ?", (pseudonym,))
            gone = db.execute("DELETE FROM subjects WHERE pseudonym = ?", (pseudonym,)).rowcount
            if within is not None:
                if not gone:
                    raise UnknownSubject("no such subject in this gallery")
                within(db, len(ids))
        self.store.db.reclaim()
        return len(ids)

    def identity(self, pseudonym: str) -> tuple[str, str | None]:
        """The operator's subject id and display name, unsealed with the subject key."""
        blob = self.store.identity(pseudonym)
        dek = self.keystore.get(pseudonym)
        if blob is None or dek is None:
            raise UnknownSubject("no such subject in this gallery")
        data = json.loads(open_sealed(dek, blob, b"identity|" + pseudonym.encode()))
        return data["subject_id"], data["name"]

    def subject(self, pseudonym: str) -> SubjectInfo:
        subject_id, name = self.identity(pseudonym)
        rows = [r for r in self.store.templates_of(pseudonym) if r.model_id not in SIDE_MODELS]  # one per photo
        created = next((c for p, c in self.store.subjects() if p == pseudonym), 0.0)
        return SubjectInfo(pseudonym, subject_id, name, len(rows), created, tuple(r.created_at for r in rows))

    def subjects(self) -> list[SubjectInfo]:
        return [self.subject(p) for p, _ in self.store.subjects()]

    def templates(self, pseudonym: str, model_id: str) -> np.ndarray:
        """A subject's protected vectors of ``model_id``, decrypted in memory only.

        For a side model a subject may have none (enrolled for fast purposes only): an empty (0, dim) array.
        """
        rows = self.store.templates_of(pseudonym)
        if not rows:
            raise UnknownSubject("no such subject in this gallery")
        dek = self._dek(pseudonym)
        primary = model_id if model_id not in SIDE_MODELS else self.store.get_meta("model_id")
        foreign = {r.model_id for r in rows} - {primary} - set(SIDE_MODELS)
        if foreign:
            raise ModelMismatch(
                f"the subject's templates were made by model {sorted(foreign)[0]}, this engine uses {model_id}:"
                " re-enroll the subject with the current model", gallery_model=sorted(foreign)[0])
        mine = [self._open_template(dek, r) for r in rows if r.model_id == model_id]
        if not mine:
            return np.zeros((0, SIDE_MODELS.get(model_id, 0)), np.float32)
        return np.stack(mine)

    # -- matching -------------------------------------------------------------------------------
    def check_model(self, model_id: str) -> None:
        """``model_id`` must be the gallery's primary model (side models are accepted beside it at enrollment)."""
        held = self.store.get_meta("model_id")
        if held and held != model_id:
            raise ModelMismatch(
                f"this gallery holds templates of model {held} and the engine uses {model_id}: they cannot be"
                " compared. Switch the engine back, or enroll everyone again into a new deployment",
                gallery_model=held, engine_model=model_id)

    def search(self, descriptor: np.ndarray, model_id: str, k: int,
               allowed: Iterable[str] | None = None) -> list[Candidate]:
        """The ``k`` nearest subjects (best template each), optionally only among ``allowed`` pseudonyms."""
        self.check_model(model_id)
        protected = self.protect(descriptor, model_id)
        with self._lock:
            self.refresh()
            index = self._searcher(protected.size)
            allowed_ids = None
            if allowed is not None:
                allowed_ids = self._template_ids_of(list(allowed))
            fetch = max(k * 4, k + 8)
            while True:
                hits = (index.search(protected, fetch, allowed_ids, min_seq=self._seq) if self._index_backend == "ray"
                        else index.search(protected, fetch, allowed_ids))
                owners = self.store.pseudonyms_of_templates([i for i, _ in hits])
                best: dict[str, float] = {}
                for tid, dist in hits:
                    owner = owners.get(tid)
                    if owner is not None and dist < best.get(owner, float("inf")):
                        best[owner] = dist
                if len(best) >= k or len(hits) < fetch or fetch >= index.size:
                    break
                fetch *= 4
        ranked = sorted(best.items(), key=lambda kv: kv[1])[:k]
        return [Candidate(p, d) for p, d in ranked]

    def _template_ids_of(self, pseudonyms: list[str]) -> np.ndarray:
        ids: list[int] = []
        for i in range(0, len(pseudonyms), 500):
            chunk = pseudonyms[i : i + 500]
            marks = ",".join("?" * len(chunk))
            ids.extend(r[0] for r in self.store.db.execute(
                f"SELECT id, model_id FROM templates WHERE pseudonym IN ({marks})", chunk) if r[1] not in SIDE_MODELS)
        return np.asarray(ids, dtype=np.int64)

    # -- index sync -----------------------------------------------------------------------------
    @property
    def _index_backend(self) -> str:
        return self.settings.index.backend if self.store.dialect == "postgres" else "faiss"

    @property
    def vectors_in_database(self) -> bool:
        """Whether protected vectors are kept, unsealed, in ``template_vectors`` for pgvector or the shards."""
        return self._index_backend in ("pgvector", "ray")

    def _searcher(self, dim: int) -> Any:
        """The index a search asks: the in-process faiss index, or the pgvector / Ray one."""
        if not self.vectors_in_database:
            return self._ensure_index(dim)
        if self._external is None:
            s = self.settings.index
            if self._index_backend == "pgvector":
                from facekeeper.gallery.pgvector_index import PgVectorIndex

                self._external = PgVectorIndex(self.store.db.pool, dim=dim,  # type: ignore[attr-defined]
                                               ef_search=s.ef_search)
            else:
                from facekeeper.cluster.runtime import connect
                from facekeeper.cluster.shards import ShardedIndex

                connect(s.ray_address or None, state_dir=self.settings.key_dir / "ray")
                self._external = ShardedIndex(self.settings.database_url, s.shards, nprobe=s.nprobe,
                                              exact_below=s.exact_below, nlist=s.nlist, dim=dim,
                                              name=f"fk-{self.settings.deployment_id[:12]}")
            if self._vector_rows() != self._indexed_count():
                self.rebuild_index(dim)
        return self._external

    def _vector_rows(self) -> int:
        return int(self.store.db.execute("SELECT count(*) FROM template_vectors").fetchone()[0])

    def _ensure_index(self, dim: int) -> VectorIndex:
        if self._index is None:
            self._load_or_rebuild(dim)
        assert self._index is not None
        return self._index

    def _new_index(self, dim: int) -> VectorIndex:
        s = self.settings.index
        return VectorIndex(dim, exact_below=s.exact_below, nlist=s.nlist, nprobe=s.nprobe)

    def _load_or_rebuild(self, dim: int) -> None:
        s = self.settings.index
        loaded = VectorIndex.load(self.settings.index_path, self._index_key, self._context,
                                  exact_below=s.exact_below, nlist=s.nlist, nprobe=s.nprobe, dim=dim)
        if loaded is not None:
            self._index, self._seq = loaded
            self._saved_seq = self._seq
            self.refresh()
            if self._index.size == self._indexed_count():
                return
        self.rebuild_index(dim)

    def rebuild_index(self, dim: int | None = None) -> int:
        """Rebuild the index from the store (decrypting every template) and persist it."""
        with self._lock:
            dim = dim or (self._index.dim if self._index else 128)
            index = self._new_index(dim)
            seq = self.store.last_change()
            # gathered first and added in one call, so the lists are fitted once, to the full size
            ids: list[int] = []
            vecs: list[np.ndarray] = []
            for rows in self.store.iter_templates():
                keys = self.keystore.get_many(sorted({r.pseudonym for r in rows}))
                for r in rows:
                    dek = keys.get(r.pseudonym)
                    if dek is not None and r.model_id not in SIDE_MODELS:
                        ids.append(r.id)
                        vecs.append(self._open_template(dek, r))
            if self.vectors_in_database:
                return self._refill_vectors(ids, vecs)
            if ids:
                index.add(np.asarray(ids, np.int64), np.stack(vecs))
            self._index, self._seq = index, seq
            self.refresh()
            self.save_index()
            return index.size

    def _refill_vectors(self, ids: list[int], vecs: list[np.ndarray]) -> int:
        """Write every protected vector to ``template_vectors`` again (a backend switch, a moved site).

        In one transaction with the write lock, so no enrollment interleaves; Ray shards notice through
        the change log position and rebuild from the table.
        """
        from facekeeper.gallery.pgvector_index import COPY_HEADER, COPY_TRAILER, copy_rows

        with self.store.transaction() as db:
            raw = db.raw  # type: ignore[attr-defined]
            raw.execute("DELETE FROM template_vectors")
            if ids:
                with raw.cursor() as cur, cur.copy("COPY template_vectors (template_id, embedding) FROM STDIN"
                                                   " (FORMAT BINARY)") as copy:
                    copy.write(COPY_HEADER)
                    copy.write(copy_rows(np.asarray(ids, np.int64), np.stack(vecs).astype(np.float32)))
                    copy.write(COPY_TRAILER)
            # every shard must reload: a 'remove' then 'add' of each id is what the change log can say
            db.executemany("INSERT INTO changes (op, template_id) VALUES ('remove', ?)", [(i,) for i in ids])
            db.executemany("INSERT INTO changes (op, template_id) VALUES ('add', ?)", [(i,) for i in ids])
        self._seq = self.store.last_change()
        return len(ids)

    def refresh(self) -> None:
        """Apply the store's change log (ours and other processes') to the in-memory index."""
        with self._lock:
            if self.vectors_in_database:  # pgvector reads the table itself; Ray shards catch up to _seq
                if self._index_backend == "ray":
                    self._seq = self.store.last_change()
                return
            if self._index is None:
                self._seq = self.store.last_change()
                return
            changes = self.store.changes_since(self._seq)
            if not changes:
                return
            pending_add: list[int] = []
            for _seq, op, tid in changes:
                if op == "add":
                    pending_add.append(tid)
                else:
                    if tid in pending_add:
                        pending_add.remove(tid)
                    self._index.remove(np.asarray([tid], np.int64))
            rows = [r for r in self.store.templates_by_id(pending_add) if r.model_id not in SIDE_MODELS]
            keys = self.keystore.get_many(sorted({r.pseudonym for r in rows}))
            rows = [r for r in rows if r.pseudonym in keys]
            if rows:
                self._index.remove(np.asarray([r.id for r in rows], np.int64))  # replay is idempotent
                self._index.add(np.asarray([r.id for r in rows], np.int64),
                                np.stack([self._open_template(keys[r.pseudonym], r) for r in rows]))
            self._seq = changes[-1][0]
            if self._seq - self._saved_seq >= self.settings.index.snapshot_every:
                self.save_index()

    def save_index(self) -> None:
        with self._lock:
            if self._index is None or self.vectors_in_database:
                return
            self._index.save(self.settings.index_path, self._index_key, self._seq, self._context)
            self._saved_seq = self._seq

    @property
    def index_size(self) -> int:
        with self._lock:
            if self.vectors_in_database:
                return self._vector_rows()
            return self._index.size if self._index else 0

    # -- internals ------------------------------------------------------------------------------
    def _indexed_count(self) -> int:
        held = self.store.get_meta("model_id")
        return self.store.template_count(held) if held else 0

    def _dek(self, pseudonym: str) -> bytes:
        dek = self.keystore.get(pseudonym)
        if dek is None:
            raise UnknownSubject("no such subject in this gallery")
        return dek

    @staticmethod
    def _template_aad(template_id: int, pseudonym: str, model_id: str) -> bytes:
        return f"template|{template_id}|{pseudonym}|{model_id}".encode()

    def _open_template(self, dek: bytes, row: TemplateRow) -> np.ndarray:
        try:
            return vector_from_bytes(open_sealed(dek, row.sealed, self._template_aad(row.id, row.pseudonym,
                                                                                     row.model_id)))
        except SealError:
            raise GalleryError("a template failed its integrity check: the gallery file was altered") from None


def normal_subject_id(subject_id: str) -> str:
    """The one form of an operator's subject id: NFKC-normalised and trimmed, so "001" typed in
    full-width digits, "001 " and "001" are one person. Every id is looked up and stored in this form; one that is empty
    after trimming, holds a control character or is over ``MAX_SUBJECT_ID`` characters is refused."""
    normal = unicodedata.normalize("NFKC", subject_id).strip() if isinstance(subject_id, str) else ""
    if not normal or len(normal) > MAX_SUBJECT_ID or not normal.isprintable():
        raise InvalidInput(f"a subject id must be 1-{MAX_SUBJECT_ID} printable characters, not only spaces")
    return normal
