"""The compliance report computes its answers, and its disk scan finds what it claims to find."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from facekeeper.privacy import compliance, export, scan
from tests.privacy.conftest import ADMIN, DAY, Site, people


def test_counts_per_purpose_expiring_and_next_sweep(site: Site) -> None:
    data = people(4)
    for i, (sid, vecs) in enumerate(data.items()):
        site.privacy.grant(ADMIN, sid, "access-control", method="paper", evidence="f",
                           expires_at=site.clock() + (10 if i == 0 else 400) * DAY)
        if i < 3:
            site.enroll(sid, vecs)
    site.consent("p0003", "payment")
    r = compliance.report(site.privacy, ADMIN)
    assert r["purposes"]["access-control"] == {"consented_people": 4, "enrolled_people": 3, "templates": 6,
                                               "credentials": 0, "notice_missing": []}
    assert r["purposes"]["payment"]["consented_people"] == 1 and r["purposes"]["payment"]["enrolled_people"] == 0
    assert [e["subject"] for e in r["expiring"]] == [site.privacy.registry.find("p0000")]
    assert r["next_sweep"]["counts"] == {} and r["audit_chain"]["ok"] and r["disk_scan"]["clean"]
    assert r["filing"]["status"] == "ok" and r["warnings"] == []
    site.clock.advance(11)
    r = compliance.report(site.privacy, ADMIN)
    assert r["next_sweep"]["counts"] == {"consent": 1, "face": 1, "person": 1}
    assert any("sweep" in w for w in r["warnings"])


def test_filing_threshold_warnings(site: Site) -> None:
    site.settings.privacy.filing_warning, site.settings.privacy.filing_threshold = 2, 3
    data = people(3)
    statuses = []
    for sid, vecs in data.items():
        site.consent(sid)
        site.enroll(sid, vecs)
        statuses.append(compliance.report(site.privacy, ADMIN)["filing"]["status"])
    assert statuses == ["ok", "approaching", "filing-required"]


def test_disk_scan_finds_planted_images_and_plaintext_vectors(site: Site) -> None:
    site.consent("p0000")
    site.enroll("p0000", people(1)["p0000"])
    assert compliance.report(site.privacy, ADMIN)["disk_scan"]["clean"]
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "JPEG")
    (site.settings.data_dir / "cache.bin").write_bytes(b"junk" * 100 + buf.getvalue() + b"junk")
    vec = people(1)["p0000"][0]
    (site.settings.key_dir / "notes").write_bytes(b"x" * 3 + vec.astype("<f4").tobytes())
    r = compliance.report(site.privacy, ADMIN)["disk_scan"]
    assert not r["clean"]
    assert [(i["format"], i["offset"]) for i in r["images"]] == [("jpeg", 400)]
    assert [(v["offset"], v["floats"]) for v in r["plaintext_vectors"]] == [(3, 128)]


def test_disk_scan_finds_a_whole_image_file_and_a_plain_template_row(site: Site) -> None:
    site.consent("p0000")
    pseudonym = site.enroll("p0000", people(1)["p0000"])
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(site.settings.data_dir / "upload.png")
    from facekeeper.gallery.protect import vector_to_bytes

    site.gallery.store.db.execute("UPDATE templates SET sealed = ? WHERE pseudonym = ?",
                                  (vector_to_bytes(np.zeros(128, np.float32)), pseudonym))
    r = scan.check_template_rows(site.gallery.store, scan.scan_paths([site.settings.data_dir]))
    assert {i["format"] for i in r.images} == {"png"} and r.template_rows_not_sealed == 2


def test_random_bytes_do_not_look_like_images_or_templates() -> None:
    data = np.random.default_rng(0).bytes(8_000_000)
    assert scan.image_signatures(data) == [] and scan.float_runs(data) == []


def test_subject_access_export_has_everything_but_the_templates(site: Site) -> None:
    data = people(2)
    for sid, vecs in data.items():
        site.consent(sid)
        site.enroll(sid, vecs)
    site.privacy.issue_credential(ADMIN, "p0000", "access-control", "pin")
    doc = export.subject_access(site.privacy, ADMIN, "p0000")
    pseudonym = site.gallery.resolve("p0000")
    assert doc["subject"]["pseudonym"] == pseudonym and doc["face"]["templates"] == 2
    assert len(doc["face"]["template_dates"]) == 2
    assert doc["consents"][0]["evidence"]["evidence"] == "form 2027-001"
    assert doc["consents"][0]["erased_by"]["rule"] in ("consent-expired", "unused", "max-retention")
    assert {e["subject"] for e in doc["audit"]} == {pseudonym}
    assert doc["credentials"][0]["kind"] == "pin" and "hash" not in doc["credentials"][0]
    text = repr(doc)
    assert "sealed" not in text and "p0001" not in text
