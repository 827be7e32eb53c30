"""The non-face alternative passes the same purpose check; secrets are stored only as scrypt hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from facekeeper import config
from facekeeper.errors import ConfigError, CredentialError
from facekeeper.privacy import Actor
from tests.privacy.conftest import ADMIN, DAY, Site


def test_anyone_can_get_a_pin_without_enrolling_a_face(site: Site) -> None:
    issued = site.privacy.issue_credential(ADMIN, "refuser", "access-control", "pin")
    assert len(issued.secret) == 6 and issued.secret.isdigit()
    sid, info = site.privacy.check_credential(Actor("gate-1", "device"), "access-control", subject_id="refuser",
                                              pin=issued.secret)
    assert sid == "refuser" and info.kind == "pin"
    assert site.gallery.store.subject_count() == 0
    entry = site.privacy.audit.entries()[-1]
    assert (entry.action, entry.outcome, entry.purpose) == ("credential.check", "match", "access-control")


def test_a_token_works_alone_and_only_for_its_purpose(site: Site) -> None:
    issued = site.privacy.issue_credential(ADMIN, "p0000", "payment", "token")
    assert site.privacy.check_credential(ADMIN, "payment", token=issued.secret)[0] == "p0000"
    with pytest.raises(CredentialError):
        site.privacy.check_credential(ADMIN, "access-control", token=issued.secret)
    with pytest.raises(CredentialError):
        site.privacy.check_credential(ADMIN, "payment", token=issued.secret[:-2] + "xx")


def test_wrong_pins_lock_the_credential(site: Site) -> None:
    issued = site.privacy.issue_credential(ADMIN, "p0000", "access-control", "pin")
    wrong = f"{(int(issued.secret) + 1) % 10**6:06d}"
    for _ in range(site.settings.privacy.credential_max_failures):
        with pytest.raises(CredentialError):
            site.privacy.check_credential(ADMIN, "access-control", subject_id="p0000", pin=wrong)
    with pytest.raises(CredentialError) as exc:
        site.privacy.check_credential(ADMIN, "access-control", subject_id="p0000", pin=issued.secret)
    assert exc.value.details.get("locked")


def test_unknown_subject_and_wrong_pin_get_the_same_answer(site: Site) -> None:
    site.privacy.issue_credential(ADMIN, "p0000", "access-control", "pin")
    answers = set()
    for sid in ("p0000", "nobody"):
        with pytest.raises(CredentialError) as exc:
            site.privacy.check_credential(ADMIN, "access-control", subject_id=sid, pin="000000x")
        answers.add(exc.value.message)
    assert len(answers) == 1


def test_secrets_are_never_stored_in_clear(site: Site) -> None:
    pin = site.privacy.issue_credential(ADMIN, "p0000", "access-control", "pin")
    token = site.privacy.issue_credential(ADMIN, "p0001", "access-control", "token")
    site.backend.flush(site.settings)
    blob = b"".join(p.read_bytes() for p in site.backend.files(site.settings))
    assert token.secret.split(".")[2].encode() not in blob
    params = site.gallery.store.db.execute("SELECT params FROM credentials").fetchall()
    assert {p[0] for p in params} == {"scrypt:n=32768,r=8,p=1"}
    assert pin.credential_id.encode() in blob


def test_expired_and_revoked_credentials_fail(site: Site) -> None:
    issued = site.privacy.issue_credential(ADMIN, "p0000", "access-control", "token", expires_at=site.clock() + DAY)
    site.clock.advance(2)
    with pytest.raises(CredentialError):
        site.privacy.check_credential(ADMIN, "access-control", token=issued.secret)
    fresh = site.privacy.issue_credential(ADMIN, "p0000", "access-control", "token")
    site.privacy.revoke_credential(ADMIN, fresh.credential_id)
    with pytest.raises(CredentialError):
        site.privacy.check_credential(ADMIN, "access-control", token=fresh.secret)


def test_a_face_only_purpose_is_rejected_at_start_up(site: Site) -> None:
    text = site.settings.config_path.read_text()
    site.settings.config_path.write_text(text + '\n[purposes."vip-lounge"]\ndescription = "x"\nface_only = true\n')
    with pytest.raises(ConfigError, match="face-only"):
        config.load(site.settings.data_dir)


def test_purposes_round_trip_through_the_config_file(tmp_path: Path) -> None:
    settings = config.Settings(data_dir=tmp_path / "d", key_dir=tmp_path / "k")
    settings.purposes["visitors"] = config.PurposeSettings(description="Visitor log", operations=["verify"],
                                                           idle_days=30)
    settings.notice.rights = 'Say "stop"\nany time'
    settings.save()
    loaded = config.load(settings.data_dir)
    assert loaded.purposes == settings.purposes and loaded.notice == settings.notice
    settings.privacy.default_purpose = "nope"
    with pytest.raises(ConfigError):
        config.validate(settings)
