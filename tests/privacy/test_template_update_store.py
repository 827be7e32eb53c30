"""A side template added after enrollment (moving to a new model without photos), on each backend: one per
model, audited in its transaction, refused without the consent's permission, shredded with the subject."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facekeeper.config import Settings
from facekeeper.db import migrate
from facekeeper.errors import ConsentRequired, GalleryError
from facekeeper.fusion import FACENET_MODEL_ID
from facekeeper.gallery.gallery import Gallery
from facekeeper.gallery.keys import DeploymentKey, write_key_file
from facekeeper.privacy import Privacy
from tests.privacy.conftest import ADMIN, Clock, Site, fill_notice, people


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(0, 1, 512)
    return (v / np.linalg.norm(v)).astype(np.float32)


def add(site: Site, pseudonym: str, seed: int = 1) -> bool:
    with site.privacy.operation(ADMIN, "verify", "access-control", operation="verify") as op:
        hook = site.privacy.template_update_hook(op, pseudonym, FACENET_MODEL_ID, "fmr~1e-6", "verify")
        return site.gallery.add_side_template(pseudonym, FACENET_MODEL_ID, unit(seed), within=hook)


def test_one_template_per_model_audited_and_erased_with_the_subject(site: Site) -> None:
    site.consent("p0000", template_updates=True)
    pseudonym = site.enroll("p0000", people(1)["p0000"])
    assert add(site, pseudonym) and not add(site, pseudonym, seed=2)
    assert site.gallery.templates(pseudonym, FACENET_MODEL_ID).shape == (1, 512)
    entries = [e for e in site.privacy.audit.entries() if e.action == "template.add"]
    assert [(e.subject, e.purpose, e.bucket, e.detail["model"]) for e in entries] == [
        (pseudonym, "access-control", "fmr~1e-6", FACENET_MODEL_ID)]
    receipt = site.privacy.erase(ADMIN, "p0000")
    assert receipt["erased"]["templates"] == 3  # two dlib, the added one
    assert site.gallery.keystore.get(pseudonym) is None


def test_without_the_consents_permission_nothing_is_stored(site: Site) -> None:
    site.consent("p0000")
    pseudonym = site.enroll("p0000", people(1)["p0000"])
    with pytest.raises(ConsentRequired):
        add(site, pseudonym)
    assert site.gallery.templates(pseudonym, FACENET_MODEL_ID).shape == (0, 512)
    assert [e for e in site.privacy.audit.entries() if e.action == "template.add"] == []


def test_a_postgres_database_before_migration_0002_is_told_to_migrate_then_records_the_field(tmp_path: Path,
                                                                                             pg_url: str) -> None:
    migrate.upgrade(pg_url, "0001")
    settings = Settings(data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    settings.data_dir.mkdir()
    settings.gallery.backend, settings.gallery.url = "postgres", pg_url
    fill_notice(settings)
    key = DeploymentKey.generate()
    write_key_file(settings.key_path, key)
    settings.save()
    gallery = Gallery.create(settings, key)
    try:
        with pytest.raises(GalleryError, match="facekeeper db migrate"):
            Privacy(settings, key, gallery, Clock())
        migrate.upgrade(pg_url)
        privacy = Privacy(settings, key, gallery, Clock())
        consent = privacy.grant(ADMIN, "p0000", "access-control", method="paper", evidence="form 1",
                                template_updates=True)
        assert privacy.ledger.get(consent.id).template_updates
        privacy.close()
    finally:
        gallery.close()
