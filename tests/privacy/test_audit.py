"""The audit chain: every operation, no biometric data or names, and any tampering is found."""

from __future__ import annotations

from pathlib import Path

import pytest

from facekeeper.db.database import Connection
from facekeeper.errors import ConsentRequired, Forbidden, InvalidInput, ReceiptInvalid
from facekeeper.privacy import Actor, receipts
from tests.privacy.conftest import ADMIN, RawDb, Site, people


def populated(site: Site, n: int = 4) -> None:
    data = people(n)
    for sid, vecs in data.items():
        site.consent(sid)
        site.enroll(sid, vecs)
    site.privacy.withdraw(ADMIN, "p0001", "access-control")


def raw(site: Site) -> RawDb:
    """The attacker's view: the tables, without the triggers that keep honest code append-only."""
    return site.backend.raw(site.settings)


def test_every_operation_is_audited_with_outcome_and_purpose(site: Site) -> None:
    populated(site)
    with pytest.raises(ConsentRequired):
        site.enroll("stranger", people(1)["p0000"])
    with pytest.raises(Forbidden):
        site.privacy.grant(Actor("gate-1", "device"), "p0002", "payment", method="paper", evidence="x")
    entries = site.privacy.audit.entries()
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    actions = [(e.action, e.outcome) for e in entries]
    assert actions.count(("consent.grant", "ok")) == 4 and actions.count(("enroll", "ok")) == 4
    assert ("enroll", "refused:consent-required") in actions
    assert ("consent.grant", "refused:forbidden") in actions
    assert all(e.purpose == "access-control" for e in entries if e.action == "enroll")
    assert site.privacy.audit.verify().ok


def test_audit_holds_no_subject_id_name_or_vector(site: Site) -> None:
    populated(site)
    rows = site.gallery.store.db.execute("SELECT * FROM audit").fetchall()
    text = repr(rows)
    assert "p000" not in text
    assert all(len(str(v)) < 200 for row in rows for v in row)


def test_detail_that_could_carry_a_vector_or_free_text_is_refused(site: Site) -> None:
    with pytest.raises(InvalidInput):
        site.privacy.audit.record(ADMIN, "x", "ok", at=0, detail={"v": [0.1] * 128})
    with pytest.raises(InvalidInput):
        site.privacy.audit.record(ADMIN, "x", "ok", at=0, detail={"note": "n" * 500})


def test_the_log_is_append_only_for_honest_code(site: Site) -> None:
    populated(site)
    db = site.gallery.store.db
    with pytest.raises(Exception, match="append-only"):
        db.execute("UPDATE audit SET outcome = 'ok' WHERE seq = 1")
    with pytest.raises(Exception, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = 1")
    if site.backend.url:
        with pytest.raises(Exception, match="append-only"):
            db.execute("TRUNCATE audit")


def test_an_edited_entry_is_named(site: Site) -> None:
    populated(site)
    raw(site).execute("UPDATE audit SET actor = 'mallory' WHERE seq = 5")
    report = site.privacy.audit.verify()
    assert not report.ok and report.first_bad == 5


def test_a_deleted_entry_is_named(site: Site) -> None:
    populated(site)
    raw(site).execute("DELETE FROM audit WHERE seq = 3")
    report = site.privacy.audit.verify()
    assert not report.ok and report.first_bad == 3 and "missing" in (report.problem or "")


def test_deleting_the_first_entry_is_caught(site: Site) -> None:
    populated(site)
    raw(site).execute("DELETE FROM audit WHERE seq = 1")
    assert site.privacy.audit.verify().first_bad == 1


def test_cutting_the_tail_is_caught_by_the_anchor_in_the_key_dir(site: Site) -> None:
    populated(site)
    head = site.privacy.audit.head()[0]
    raw(site).execute("DELETE FROM audit WHERE seq >= ?", (head - 1,))
    report = site.privacy.audit.verify()
    assert not report.ok and report.first_bad == head - 1 and "removed" in (report.problem or "")


def test_reordered_entries_are_caught(site: Site) -> None:
    populated(site)
    db = raw(site)
    db.execute("UPDATE audit SET seq = -1 WHERE seq = 4")
    db.execute("UPDATE audit SET seq = 4 WHERE seq = 5")
    db.execute("UPDATE audit SET seq = 5 WHERE seq = -1")
    assert site.privacy.audit.verify().first_bad == 4


def test_a_rewritten_chain_without_the_key_is_caught(site: Site) -> None:
    """An attacker who recomputes every MAC with a key of their own still fails verification."""
    from facekeeper.gallery.keys import DeploymentKey
    from facekeeper.privacy.audit import AuditLog

    populated(site)
    db = raw(site)
    forger = AuditLog(site.gallery.store, DeploymentKey.generate(), site.settings.deployment_id, Path("/tmp"))
    prev = forger._genesis
    for row in db.execute("SELECT * FROM audit ORDER BY seq").fetchall():
        values = list(row[:11])
        if values[0] == 2:
            values[8] = "refused:consent-required"
        mac = forger._mac(prev, tuple(values))
        db.execute("UPDATE audit SET outcome = ?, mac = ? WHERE seq = ?", (values[8], mac, values[0]))
        prev = mac
    assert site.privacy.audit.verify().first_bad == 1


def test_a_byte_edited_file_is_caught(site: Site) -> None:
    if site.backend.url:
        pytest.skip("SQLite only: PostgreSQL checksums its pages; an edit behind its back is an UPDATE (tested above)")
    populated(site)
    site.close()
    path = site.settings.gallery_path
    data = path.read_bytes()
    assert data.count(b"consent.withdraw") == 1
    path.write_bytes(data.replace(b"consent.withdraw", b"consent.withdrew"))
    again = site.reopen()
    try:
        report = again.privacy.audit.verify()
        withdrawal = next(e.seq for e in again.privacy.audit.entries() if e.action == "consent.withdrew")
        assert not report.ok and report.first_bad == withdrawal
    finally:
        again.close()


def test_an_audit_entry_commits_with_its_data_or_not_at_all(site: Site) -> None:
    site.consent("p0000")
    before = site.privacy.audit.head()[0]

    def failing_hook(db: Connection, pseudonym: str, n: int) -> None:
        site.privacy.audit.append(db, ADMIN, "enroll", "ok", at=0, subject=pseudonym)
        raise RuntimeError("crash after the audit entry, before commit")

    with pytest.raises(RuntimeError):
        site.gallery.enroll("p0000", people(1)["p0000"], "dlib-resnet-v1",
                            pseudonym=site.privacy.registry.find("p0000"), within=failing_hook)
    assert site.privacy.audit.head()[0] == before
    assert site.gallery.store.template_count() == 0


def test_export_is_signed_and_tampering_with_it_is_caught(site: Site) -> None:
    populated(site)
    doc = site.privacy.export_audit(ADMIN, since=site.clock() - 1)
    assert doc["chain"]["ok"] and doc["entries"]
    site.privacy.verify_receipt(doc)
    doc["entries"][0]["outcome"] = "refused"
    with pytest.raises(ReceiptInvalid):
        receipts.verify(doc, site.privacy.signer.public_key)


def test_auditor_role_reads_the_audit_but_cannot_touch_subjects(site: Site) -> None:
    auditor = Actor("inspector", "auditor")
    populated(site)
    assert site.privacy.verify_audit(auditor).ok
    with pytest.raises(Forbidden):
        site.privacy.erase(auditor, "p0000")


def test_a_new_deployments_chain_starts_with_entry_one_and_verifies(site: Site) -> None:
    first = site.privacy.audit.entries()[0]
    assert (first.seq, first.action) == (1, "audit.start")
    populated(site)
    again = site.reopen()
    try:
        report = again.privacy.audit.verify()
        assert report.ok and report.entries == again.privacy.audit.head()[0] and report.problem is None
        assert [e.action for e in again.privacy.audit.entries()].count("audit.start") == 1
    finally:
        again.close()


def test_cutting_the_tail_and_deleting_the_anchor_is_caught(site: Site) -> None:
    populated(site)
    head = site.privacy.audit.head()[0]
    raw(site).execute("DELETE FROM audit WHERE seq >= ?", (head - 2,))
    site.privacy.audit.anchor_path.unlink()
    report = site.privacy.audit.verify()
    assert not report.ok and report.first_bad == head - 2 and "removed" in (report.problem or "")


def test_cutting_the_tail_and_deleting_both_head_records_is_caught(site: Site) -> None:
    populated(site)
    db = raw(site)
    db.execute("DELETE FROM audit WHERE seq >= ?", (site.privacy.audit.head()[0] - 2,))
    db.execute("DELETE FROM meta WHERE key = 'audit_head'")
    site.privacy.audit.anchor_path.unlink()
    again = site.reopen()  # opening must not adopt the cut chain
    try:
        report = again.privacy.audit.verify()
        assert not report.ok and "missing" in (report.problem or "")
    finally:
        again.close()


def test_a_head_record_copied_from_an_entry_does_not_pass_for_one(site: Site) -> None:
    """Without the key, an attacker can only copy an entry's (seq, MAC): that is not a tagged head record."""
    import json

    populated(site)
    head = site.privacy.audit.head()[0]
    db = raw(site)
    db.execute("DELETE FROM audit WHERE seq >= ?", (head - 2,))
    seq, mac = db.execute("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    forged = json.dumps({"deployment_id": site.settings.deployment_id, "seq": seq, "mac": mac})
    db.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (forged,))
    site.privacy.audit.anchor_path.write_text(forged)
    report = site.privacy.audit.verify()
    assert not report.ok and "untagged" in (report.problem or "")


@pytest.mark.parametrize("drop_anchor", [False, True])
def test_emptying_the_chain_is_caught(site: Site, drop_anchor: bool) -> None:
    populated(site)
    db = raw(site)
    db.execute("DELETE FROM audit")
    if drop_anchor:
        site.privacy.audit.anchor_path.unlink()
        db.execute("DELETE FROM meta WHERE key = 'audit_head'")
    again = site.reopen()  # a deployment that holds people is never started afresh
    try:
        report = again.privacy.audit.verify()
        assert not report.ok and report.entries == 0 and "empty" in (report.problem or "")
    finally:
        again.close()


@pytest.mark.parametrize("column, value", [("bucket", "far"), ("detail", '{"templates":9}')])
def test_the_mac_covers_the_bucket_and_detail_columns(site: Site, column: str, value: str) -> None:
    populated(site)
    seq = next(e.seq for e in site.privacy.audit.entries() if e.action == "enroll")
    raw(site).execute(f"UPDATE audit SET {column} = ? WHERE seq = ?", (value, seq))
    report = site.privacy.audit.verify()
    assert not report.ok and report.first_bad == seq


def test_a_chain_written_before_head_records_is_adopted_once_its_anchor_vouches_for_it(site: Site) -> None:
    """An upgraded deployment: no head record in the gallery, an untagged anchor at the chain's end."""
    import json

    populated(site)
    seq, mac = site.privacy.audit.head()
    raw(site).execute("DELETE FROM meta WHERE key = 'audit_head'")
    site.privacy.audit.anchor_path.write_text(json.dumps({"deployment_id": site.settings.deployment_id,
                                                          "seq": seq, "mac": mac}))
    assert not site.privacy.audit.verify().ok
    again = site.reopen()
    try:
        assert again.privacy.audit.verify().ok
        assert "tag" in json.loads(again.privacy.audit.anchor_path.read_text())
    finally:
        again.close()


def test_a_batch_that_fails_midway_still_anchors_the_entries_it_committed(site: Site) -> None:
    audit = site.privacy.audit
    before = audit._read_anchor()
    with pytest.raises(RuntimeError), audit.anchoring_once():
        site.consent("alice")
        site.consent("bob")
        assert audit._read_anchor() == before  # deferred: no anchor inside the batch
        raise RuntimeError("the batch stops here")
    assert audit._read_anchor() == audit.head()
    assert audit.verify().ok
