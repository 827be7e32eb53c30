"""Accurate-mode enrollment keeps a FaceNet template beside each dlib one: sealed, unindexed, erased with it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from facekeeper.errors import ModelMismatch
from facekeeper.fusion import FACENET_MODEL_ID
from facekeeper.gallery.gallery import Gallery
from facekeeper.gallery.protect import SealError, open_sealed
from tests.gallery.test_gallery import MODEL, make, people


def facenet_like(n: int, seed: int = 3) -> np.ndarray:
    v = np.random.default_rng(seed).normal(0, 1, (n, 512))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_side_templates_are_stored_sealed_under_their_own_transform_and_never_indexed(tmp_path: Path) -> None:
    _, _, g = make(tmp_path)
    vecs, side = people(1)["p0000"], facenet_like(2)
    p = g.enroll("p0000", vecs, MODEL, side={FACENET_MODEL_ID: side})
    g.search(vecs[0], MODEL, k=1)
    assert g.index_size == 2  # the two dlib templates only
    stored = g.templates(p, FACENET_MODEL_ID)
    assert stored.shape == (2, 512)
    assert np.allclose(stored, np.stack([g.protect(v, FACENET_MODEL_ID) for v in side]), atol=1e-5)
    assert not np.allclose(stored[0], side[0], atol=1e-3)  # rotated, not the raw embedding
    assert g.transform(FACENET_MODEL_ID, 512) is not g.transform(MODEL, 128)
    assert g.templates(p, MODEL).shape == (2, 128)
    assert g.subject(p).templates == 2  # one per photo


def test_rebuild_and_a_second_process_skip_side_rows(tmp_path: Path) -> None:
    settings, key, g = make(tmp_path)
    data = people(5)
    for i, (sid, vecs) in enumerate(data.items()):
        g.enroll(sid, vecs, MODEL, side={FACENET_MODEL_ID: facenet_like(2, seed=i)})
    assert g.rebuild_index() == 10
    other = Gallery.open(settings, key)
    top = other.search(data["p0003"][0], MODEL, k=1)
    assert other.identity(top[0].pseudonym)[0] == "p0003" and other.index_size == 10
    g.enroll("late", people(1, seed=7)["p0000"], MODEL, side={FACENET_MODEL_ID: facenet_like(2, seed=9)})
    other.refresh()  # replays the change log: the new dlib rows only
    assert other.index_size == 12
    other.close()
    g.close()


def test_a_subject_without_side_templates_has_none(tmp_path: Path) -> None:
    _, _, g = make(tmp_path)
    p = g.enroll("p0000", people(1)["p0000"], MODEL)
    assert g.templates(p, FACENET_MODEL_ID).shape == (0, 512)


def test_side_templates_of_the_wrong_size_or_model_are_refused(tmp_path: Path) -> None:
    _, _, g = make(tmp_path)
    with pytest.raises(ModelMismatch):
        g.enroll("p0000", people(1)["p0000"], MODEL, side={FACENET_MODEL_ID: facenet_like(2)[:, :128]})
    with pytest.raises(ModelMismatch):
        g.enroll("p0000", people(1)["p0000"], MODEL, side={"other-model-v1": facenet_like(2)})


def test_erasure_destroys_both_templates(tmp_path: Path) -> None:
    settings, _, g = make(tmp_path)
    p = g.enroll("p0000", people(1)["p0000"], MODEL, side={FACENET_MODEL_ID: facenet_like(2)})
    db = sqlite3.connect(settings.gallery_path)
    rows = db.execute("SELECT id, model_id, sealed FROM templates WHERE pseudonym = ?", (p,)).fetchall()
    assert sorted(r[1] for r in rows) == [MODEL] * 2 + [FACENET_MODEL_ID] * 2
    dek = g.keystore.get(p)
    assert dek is not None
    erasure = g.delete_subject(p)
    assert erasure.templates == 4
    assert db.execute("SELECT count(*) FROM templates WHERE pseudonym = ?", (p,)).fetchone()[0] == 0
    assert g.keystore.get(p) is None
    db.close()
    # a copy of the rows taken before (a backup) opens with no key but the destroyed one
    for tid, model_id, sealed in rows:
        assert open_sealed(dek, sealed, f"template|{tid}|{p}|{model_id}".encode())
        with pytest.raises(SealError):
            open_sealed(bytes(32), sealed, f"template|{tid}|{p}|{model_id}".encode())
