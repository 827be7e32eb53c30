"""The gallery stores only ciphertext, searches correctly, and erases for real."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from facekeeper import config
from facekeeper.config import Settings
from facekeeper.errors import DeploymentKeyError, GalleryError, ModelMismatch, UnknownSubject
from facekeeper.gallery.gallery import Gallery
from facekeeper.gallery.keys import DeploymentKey, load_key, write_key_file
from facekeeper.gallery.protect import SealError, open_sealed

MODEL = "dlib-resnet-v1"


def make(tmp_path: Path, **index: int) -> tuple[Settings, DeploymentKey, Gallery]:
    settings = Settings(data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    for name, value in index.items():
        setattr(settings.index, name, value)
    settings.data_dir.mkdir(parents=True)
    key = DeploymentKey.generate()
    write_key_file(settings.key_path, key)
    settings.save()
    return settings, key, Gallery.create(settings, key)


def people(n: int, per: int = 2, seed: int = 1) -> dict[str, np.ndarray]:
    """Synthetic descriptors shaped like dlib's: identities ~0.9 apart, samples ~0.35 from each other."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 0.08, (n, 128))
    return {f"p{i:04d}": (centres[i] + rng.normal(0, 0.018, (per, 128))).astype(np.float32) for i in range(n)}


def test_identify_finds_the_right_subject_by_best_template(tmp_path: Path) -> None:
    _, _, g = make(tmp_path)
    data = people(50)
    for sid, vecs in data.items():
        g.enroll(sid, vecs, MODEL)
    probe = data["p0007"][0] + np.random.default_rng(9).normal(0, 0.01, 128).astype(np.float32)
    top = g.search(probe, MODEL, k=3)
    assert g.identity(top[0].pseudonym)[0] == "p0007"
    assert top[0].distance < top[1].distance
    assert len({c.pseudonym for c in top}) == 3


def test_exact_and_ivf_search_agree(tmp_path: Path) -> None:
    _, _, g = make(tmp_path, exact_below=400, nprobe=64)
    data = people(300, per=2)
    for sid, vecs in data.items():
        g.enroll(sid, vecs, MODEL)
    assert g.search(data["p0000"][0], MODEL, 1)
    assert g._index is not None and g._index.kind == "ivf-flat"
    hits = sum(g.identity(g.search(v[1], MODEL, 1)[0].pseudonym)[0] == sid for sid, v in data.items())
    assert hits == len(data)


def test_delete_destroys_the_key_and_the_search_entry(tmp_path: Path) -> None:
    settings, key, g = make(tmp_path)
    data = people(5)
    for sid, vecs in data.items():
        g.enroll(sid, vecs, MODEL)
    pseudonym = g.resolve("p0002")
    blobs = [r.sealed for r in g.store.templates_of(pseudonym)]
    g.delete_subject(pseudonym)
    assert g.keystore.get(pseudonym) is None
    with pytest.raises(UnknownSubject):
        g.resolve("p0002")
    assert all(g.identity(c.pseudonym)[0] != "p0002" for c in g.search(data["p0002"][0], MODEL, 5))
    g.close()
    # the keystore file no longer holds any wrapped key for the subject
    with sqlite3.connect(settings.keystore_path) as db:
        assert db.execute("SELECT count(*) FROM subject_keys WHERE pseudonym=?", (pseudonym,)).fetchone()[0] == 0
    # and the ciphertext, wherever it was copied, opens with no key the deployment has
    ks = Gallery.open(settings, key).keystore
    for other in ks.all_pseudonyms():
        dek = ks.get(other)
        assert dek is not None
        for blob in blobs:
            with pytest.raises(SealError):
                open_sealed(dek, blob, b"")


def test_gallery_file_holds_no_image_bytes_and_no_plaintext_template(tmp_path: Path) -> None:
    settings, _, g = make(tmp_path)
    data = people(10)
    protected = []
    for sid, vecs in data.items():
        g.enroll(sid, vecs, MODEL, name=f"Name of {sid}")
        protected.extend(g.protect(v, MODEL) for v in vecs)
    g.search(data["p0001"][0], MODEL, 1)
    g.close()
    blob = b"".join(p.read_bytes() for p in [*settings.data_dir.iterdir(), *settings.key_dir.iterdir()])
    for raw in [*(v for vecs in data.values() for v in vecs), *protected]:
        as_bytes = np.asarray(raw, "<f4").tobytes()
        assert as_bytes[:32] not in blob and as_bytes[-32:] not in blob
    assert b"Name of" not in blob and b"p0001" not in blob
    for magic in (b"\xff\xd8\xff", b"\x89PNG", b"RIFF"):
        assert magic not in blob


def test_reopen_loads_snapshot_and_replays_other_processes_changes(tmp_path: Path) -> None:
    settings, key, g = make(tmp_path)
    data = people(20)
    for sid in list(data)[:10]:
        g.enroll(sid, data[sid], MODEL)
    g.search(data["p0000"][0], MODEL, 1)
    g.close()
    writer = Gallery.open(settings, key)
    reader = Gallery.open(settings, key)
    assert reader.index_size == 0 and reader.search(data["p0000"][0], MODEL, 1)  # loads lazily
    for sid in list(data)[10:]:
        writer.enroll(sid, data[sid], MODEL)
    writer.delete_subject(writer.resolve("p0003"))
    hits = reader.search(data["p0015"][0], MODEL, 1)
    assert reader.identity(hits[0].pseudonym)[0] == "p0015"
    assert reader.index_size == 19 * 2
    writer.close()
    reader.close()


def test_stale_or_foreign_snapshot_is_rebuilt(tmp_path: Path) -> None:
    settings, key, g = make(tmp_path)
    data = people(8)
    for sid, vecs in data.items():
        g.enroll(sid, vecs, MODEL)
    g.search(data["p0000"][0], MODEL, 1)
    g.close()
    settings.index_path.write_bytes(b"FKIX3" + os.urandom(200))
    g = Gallery.open(settings, key)
    assert g.identity(g.search(data["p0004"][0], MODEL, 1)[0].pseudonym)[0] == "p0004"
    assert g.index_size == 16
    g.close()


def test_another_deployment_key_is_refused(tmp_path: Path) -> None:
    settings, _, g = make(tmp_path)
    g.close()
    with pytest.raises(DeploymentKeyError, match="does not open this gallery"):
        Gallery.open(settings, DeploymentKey.generate())


def test_corrupted_gallery_file_is_refused(tmp_path: Path) -> None:
    settings, key, g = make(tmp_path)
    for sid, vecs in people(3).items():
        g.enroll(sid, vecs, MODEL)
    g.close()
    raw = bytearray(settings.gallery_path.read_bytes())
    raw[0:16] = b"garbage garbage!"
    settings.gallery_path.write_bytes(bytes(raw))
    with pytest.raises(GalleryError, match="restore it from a backup"):
        Gallery.open(settings, key)


def test_altered_template_ciphertext_is_detected(tmp_path: Path) -> None:
    _, _, g = make(tmp_path)
    for sid, vecs in people(3).items():
        g.enroll(sid, vecs, MODEL)
    for tid, sealed in g.store.db.execute("SELECT id, sealed FROM templates").fetchall():
        flipped = bytearray(sealed)
        flipped[20] ^= 0x01
        g.store.db.execute("UPDATE templates SET sealed = ? WHERE id = ?", (bytes(flipped), tid))
    with pytest.raises(GalleryError, match="integrity"):
        g.templates(g.resolve("p0001"), MODEL)


def test_templates_of_another_model_are_refused(tmp_path: Path) -> None:
    _, _, g = make(tmp_path)
    vecs = people(1)["p0000"]
    g.enroll("a", vecs, MODEL)
    with pytest.raises(ModelMismatch, match=r"re-?enroll|enroll everyone again"):
        g.search(vecs[0], "another-model-v2", 1)
    with pytest.raises(ModelMismatch):
        g.enroll("b", vecs, "another-model-v2")


def test_key_file_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.ENV_KEY, raising=False)
    path = tmp_path / "k" / "deployment.key"
    write_key_file(path, DeploymentKey.generate())
    assert (path.stat().st_mode & 0o777) == 0o600
    path.chmod(0o644)
    with pytest.raises(DeploymentKeyError, match="chmod 600"):
        load_key(path)


def test_key_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = DeploymentKey.generate()
    monkeypatch.setenv(config.ENV_KEY, key.encode())
    assert load_key(tmp_path / "absent.key").check_value("x") == key.check_value("x")


def test_kill_during_bulk_enrollment_leaves_a_consistent_gallery(tmp_path: Path) -> None:
    settings, key, g = make(tmp_path)
    g.close()
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from facekeeper import config
        from facekeeper.gallery.gallery import Gallery
        from facekeeper.gallery.keys import load_key
        s = config.load(__import__('pathlib').Path({str(settings.data_dir)!r}))
        g = Gallery.open(s, load_key(s.key_path))
        for i in range(100000):
            vecs = np.random.default_rng(i).normal(0, 0.08, (3, 128)).astype(np.float32)
            g.enroll(f"bulk{{i}}", vecs, {MODEL!r})
            if i == 5:
                print("started", flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "started"
    time.sleep(0.5)
    child.kill()
    child.wait()
    g = Gallery.open(settings, key)
    n_subjects = g.store.subject_count()
    assert n_subjects > 5
    assert g.store.template_count() == 3 * n_subjects  # whole subjects only
    for info in g.subjects():
        assert info.templates == 3
        assert g.templates(info.pseudonym, MODEL).shape == (3, 128)
    probe = np.random.default_rng(3).normal(0, 0.08, (3, 128)).astype(np.float32)[0]
    assert g.identity(g.search(probe, MODEL, 1)[0].pseudonym)[0] == "bulk3"
    assert g.index_size == 3 * n_subjects
    g.close()
