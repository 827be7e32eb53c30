"""Erasure you can prove: the key is gone, backups are noise, and a signed receipt says so."""

from __future__ import annotations

import copy
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from facekeeper.errors import ReceiptInvalid, StoreUnavailable, UnknownSubject
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.gallery.keystore import KeyStore
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


def test_changing_any_field_of_the_nested_erased_block_breaks_the_receipt(site: Site) -> None:
    site.consent("p0000")
    site.enroll("p0000", people(1)["p0000"])
    receipt = site.privacy.erase(ADMIN, "p0000")
    changes = {"templates": 0, "template_key": "kept", "index_entries_removed": 0, "consents_ended": 0,
               "credentials_revoked": 3, "person_key": "kept"}
    assert set(receipt["erased"]) == set(changes)
    for name, value in changes.items():
        assert receipt["erased"][name] != value
        forged = copy.deepcopy(receipt)
        forged["erased"][name] = value
        with pytest.raises(ReceiptInvalid):
            site.privacy.verify_receipt(forged)
        with pytest.raises(ReceiptInvalid):
            receipts.verify(forged, site.privacy.signer.public_key)
    dropped = copy.deepcopy(receipt)
    del dropped["erased"]["person_key"]
    with pytest.raises(ReceiptInvalid):
        receipts.verify(dropped, site.privacy.signer.public_key)
    assert site.privacy.verify_receipt(receipt) is receipt


def test_the_receipt_key_is_derived_from_the_deployment_key(site: Site) -> None:
    assert receipts.Signer(site.key).public_key == site.privacy.signer.public_key
    assert receipts.Signer(DeploymentKey.generate()).public_key != site.privacy.signer.public_key


def test_a_person_with_consent_but_no_face_can_be_erased(site: Site) -> None:
    site.consent("p0000", "payment")
    receipt = site.privacy.erase(ADMIN, "p0000")
    assert receipt["erased"]["template_key"] == "none" and receipt["erased"]["person_key"] == "destroyed"
    assert site.privacy.registry.find("p0000") is None



def _wrapped_keys(site: Site, pseudonym: str) -> dict[str, bytes]:
    """What a thief with the deployment key would look for: the subject's wrapped keys, and its data keys."""
    found: dict[str, bytes] = {}
    for name in ("keystore.db", "privacy-keys.db"):
        raw = sqlite3.connect(site.settings.key_dir / name)
        (found[name],) = raw.execute("SELECT wrapped FROM subject_keys WHERE pseudonym = ?", (pseudonym,)).fetchone()
        raw.close()
    dek, pkey = site.gallery.keystore.get(pseudonym), site.privacy.registry.keys.get(pseudonym)
    assert dek is not None and pkey is not None
    return {**found, "data key": dek, "privacy key": pkey}


def _leaks(site: Site, secrets: dict[str, bytes]) -> list[tuple[str, str]]:
    """(secret, file) for every file of the data and key folders (WAL, shm and journals included) holding one."""
    files = [f for d in (site.settings.data_dir, site.settings.key_dir) for f in d.rglob("*") if f.is_file()]
    return [(what, f.name) for f in files for what, blob in secrets.items() if blob in f.read_bytes()]


@pytest.fixture
def busy_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A SQLite site whose key files give up on a busy reader after a moment, not 30 s."""
    monkeypatch.setattr(KeyStore, "BUSY_TIMEOUT", 0.2)
    s = make_site(tmp_path)
    yield s
    s.close()


def test_no_file_holds_an_erased_subjects_keys_the_moment_erasure_returns(busy_site: Site) -> None:
    """Service and a second instance still open: the erased subject's wrapped keys are in no file."""
    site = busy_site
    second = site.reopen()  # another service instance on the same files, with its own connections
    try:
        for sid, vecs in people(3).items():
            site.consent(sid)
            site.enroll(sid, vecs)
        pseudonym = site.gallery.resolve("p0001")
        assert second.privacy.registry.subject_id(pseudonym) == "p0001"  # it has read both key files
        secrets = _wrapped_keys(site, pseudonym)
        assert {what for what, _ in _leaks(site, secrets)} >= {"keystore.db", "privacy-keys.db"}  # seen before

        site.privacy.erase(ADMIN, "p0001")

        assert _leaks(site, secrets) == []
        assert second.gallery.keystore.get(pseudonym) is None
        assert site.gallery.identity(site.gallery.resolve("p0002"))[0] == "p0002"  # the others are intact
    finally:
        second.close()


def test_a_reader_holding_the_key_file_makes_erasure_fail_whole_never_leave_a_copy(busy_site: Site) -> None:
    """A reader inside a read transaction (a backup, another instance) used to leave the key in the WAL
    while erasure reported success; now erasure waits, then fails with nothing changed, and a retry works."""
    site = busy_site
    site.consent("p0000")
    pseudonym = site.enroll("p0000", people(1)["p0000"])
    secrets = _wrapped_keys(site, pseudonym)
    reader = sqlite3.connect(site.settings.key_dir / "keystore.db", isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM subject_keys").fetchone()[0] == 1
        with pytest.raises(StoreUnavailable):
            site.privacy.erase(ADMIN, "p0000")
        assert site.gallery.identity(pseudonym)[0] == "p0000"  # nothing was erased
        reader.execute("COMMIT")
    finally:
        reader.close()
    receipt = site.privacy.erase(ADMIN, "p0000")
    assert receipt["erased"]["template_key"] == "destroyed"
    assert _leaks(site, secrets) == []
