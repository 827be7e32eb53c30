"""Erasure you can prove: the key is gone, backups are noise, and a signed receipt says so."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from facekeeper.errors import ReceiptInvalid, UnknownSubject
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.gallery.protect import SealError, open_sealed
from facekeeper.privacy import receipts
from tests.privacy.conftest import ADMIN, Site, make_site, people


def test_erasure_destroys_key_rows_index_entries_and_the_person(site: Site) -> None:
    data = people(4)
    for sid, vecs in data.items():
        site.consent(sid)
        site.consent(sid, "payment")
        site.enroll(sid, vecs)
    site.privacy.issue_credential(ADMIN, "p0002", "access-control", "pin")
    pseudonym = site.gallery.resolve("p0002")
    receipt = site.privacy.erase(ADMIN, "p0002")
    assert receipt["subject"] == pseudonym
    assert receipt["erased"] == {"templates": 2, "template_key": "destroyed", "index_entries_removed": 2,
                                 "consents_ended": 2, "credentials_revoked": 1, "person_key": "destroyed"}
    assert site.gallery.keystore.get(pseudonym) is None and site.privacy.registry.keys.get(pseudonym) is None
    assert "p0002" not in site.search(data["p0002"][0], "access-control", k=4)
    with pytest.raises(UnknownSubject):
        site.privacy.erase(ADMIN, "p0002")
    entry = next(e for e in site.privacy.audit.entries() if e.seq == receipt["audit_seq"])
    assert (entry.action, entry.subject, entry.outcome) == ("subject.erase", pseudonym, "erased")
    # what remains is pseudonymous: consent dates, audit entries; the sealed evidence is gone
    assert all(c.sealed is None and c.end_reason == "erased" for c in site.privacy.ledger.of_subject(pseudonym))


def test_a_backup_taken_before_erasure_cannot_be_decrypted_afterwards(site: Site, tmp_path: Path) -> None:
    site.consent("p0000")
    pseudonym = site.enroll("p0000", people(1)["p0000"])
    # the backup: a copy of the file, or (PostgreSQL) the rows as a dump holds them
    if site.backend.url:
        rows = site.backend.raw(site.settings).execute(
            "SELECT id, model_id, sealed FROM templates WHERE pseudonym = ?", (pseudonym,)).fetchall()
    else:
        site.backend.flush(site.settings)
        backup = tmp_path / "backup-gallery.db"
        shutil.copy(site.settings.gallery_path, backup)
        rows = sqlite3.connect(backup).execute("SELECT id, model_id, sealed FROM templates WHERE pseudonym = ?",
                                               (pseudonym,)).fetchall()
    assert rows
    dek = site.gallery.keystore.get(pseudonym)
    assert dek is not None
    tid, model, blob = rows[0]
    aad = f"template|{tid}|{pseudonym}|{model}".encode()
    assert open_sealed(dek, blob, aad)  # before erasure the backup opens
    site.privacy.erase(ADMIN, "p0000")
    site.close()
    # after: every key the deployment still holds, and every key it can derive, fails on the backup
    reopened = site.reopen()
    try:
        candidates = [k for k in (reopened.gallery.keystore.get(p) for p in reopened.gallery.keystore.all_pseudonyms())
                      if k]
        candidates += [k for k in (reopened.privacy.registry.keys.get(p)
                                   for p in reopened.privacy.registry.keys.all_pseudonyms()) if k]
        candidates += [site.key.derive(label) for label in ("subject-key-wrap", "index-snapshot", "subject-lookup")]
        for key in candidates:
            with pytest.raises(SealError):
                open_sealed(key, blob, aad)
        assert reopened.gallery.keystore.get(pseudonym) is None
        for path in site.settings.key_dir.iterdir():
            assert dek not in path.read_bytes()
    finally:
        reopened.close()


def test_the_receipt_verifies_and_any_change_breaks_it(site: Site, tmp_path: Path) -> None:
    site.consent("p0000")
    site.enroll("p0000", people(1)["p0000"])
    receipt = site.privacy.erase(ADMIN, "p0000")
    assert site.privacy.verify_receipt(receipt) is receipt
    assert receipts.verify(receipt, site.privacy.signer.public_key)
    for field, value in (("subject", "s_0000"), ("erased_at", "2020-01-01T00:00:00Z"), ("audit_seq", 1)):
        with pytest.raises(ReceiptInvalid):
            site.privacy.verify_receipt({**receipt, field: value})
    other = make_site(tmp_path / "other")
    try:
        with pytest.raises(ReceiptInvalid):
            other.privacy.verify_receipt(receipt)
        forged = receipts.Signer(DeploymentKey.generate()).sign({k: v for k, v in receipt.items()})
        with pytest.raises(ReceiptInvalid):
            site.privacy.verify_receipt(forged)
    finally:
        other.close()


def test_the_receipt_key_is_derived_from_the_deployment_key(site: Site) -> None:
    assert receipts.Signer(site.key).public_key == site.privacy.signer.public_key
    assert receipts.Signer(DeploymentKey.generate()).public_key != site.privacy.signer.public_key


def test_a_person_with_consent_but_no_face_can_be_erased(site: Site) -> None:
    site.consent("p0000", "payment")
    receipt = site.privacy.erase(ADMIN, "p0000")
    assert receipt["erased"]["template_key"] == "none" and receipt["erased"]["person_key"] == "destroyed"
    assert site.privacy.registry.find("p0000") is None
