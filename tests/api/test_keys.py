"""API keys: shown once, stored as scrypt hashes in a 0600 file, revocable at once, cheap to refuse."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from facekeeper.api import keys as api_keys
from facekeeper.api.keys import KeyStore, split_token
from facekeeper.errors import AuthError, ConfigError, InvalidInput, RateLimited


def test_key_is_shown_once_and_only_its_scrypt_hash_is_stored(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_keys, "SCRYPT", {"n": 2**15, "r": 8, "p": 1})
    store = KeyStore(tmp_path / "api-keys.db")
    new = store.create("acme", "operator")
    store.close()
    _, secret = split_token(new.token)
    raw = (tmp_path / "api-keys.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("api-keys.db-*"))
    assert secret.encode() not in raw and new.token.encode() not in raw
    db = sqlite3.connect(tmp_path / "api-keys.db")
    params, digest = db.execute("SELECT params, hash FROM api_keys").fetchone()
    assert params == "scrypt:n=32768,r=8,p=1" and len(digest) == 32
    assert stat.S_IMODE((tmp_path / "api-keys.db").stat().st_mode) == 0o600


def test_authenticate_returns_the_key_record(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    new = store.create("acme", "device", "access-control", "gate 3")
    key = store.authenticate(new.token)
    assert (key.id, key.tenant, key.role, key.purpose, key.label) == (new.key.id, "acme", "device",
                                                                       "access-control", "gate 3")
    assert store.authenticate(new.token) == key  # remembered: no second scrypt


def test_wrong_secret_unknown_id_and_garbage_are_refused_without_echoing(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    new = store.create("acme", "admin")
    prefix, key_id, secret = new.token.split(".")
    for bad in (f"{prefix}.{key_id}.{secret[:-2]}xx", f"{prefix}.ak_0000000000000000.{secret}", "hello",
                f"{prefix}.{key_id}"):
        with pytest.raises(AuthError) as info:
            store.authenticate(bad)
        assert secret not in info.value.message and key_id not in info.value.message


def test_revocation_takes_effect_at_once_even_from_another_process(tmp_path: Path) -> None:
    server = KeyStore(tmp_path / "k.db")
    new = server.create("acme", "operator")
    server.authenticate(new.token)
    cli = KeyStore(tmp_path / "k.db")  # what 'facekeeper keys revoke' opens
    cli.revoke(new.key.id)
    with pytest.raises(AuthError):
        server.authenticate(new.token)
    assert server.list_keys("acme") == [] and len(server.list_keys("acme", include_revoked=True)) == 1


def test_guessing_one_key_id_is_limited_without_locking_out_its_holder(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    new = store.create("acme", "device", "access-control")
    store.authenticate(new.token)  # the legitimate holder, remembered
    prefix, key_id, _ = new.token.split(".")
    for _ in range(api_keys.MAX_UNVERIFIED_PER_MINUTE - 1):  # the holder's first check counted too
        with pytest.raises(AuthError):
            store.authenticate(f"{prefix}.{key_id}.guess")
    with pytest.raises(RateLimited):
        store.authenticate(f"{prefix}.{key_id}.guess")
    assert store.authenticate(new.token).id == key_id


def test_an_admin_cannot_revoke_another_tenants_key(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    theirs = store.create("globex", "device", "payment")
    with pytest.raises(InvalidInput):
        store.revoke(theirs.key.id, tenant="acme")
    assert store.get(theirs.key.id) is not None and store.get(theirs.key.id).active  # type: ignore[union-attr]


def test_device_keys_need_a_purpose_and_roles_are_checked(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    with pytest.raises(InvalidInput):
        store.create("acme", "device")
    with pytest.raises(InvalidInput):
        store.create("acme", "root")


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    KeyStore(tmp_path / "k.db").close()
    (tmp_path / "k.db").chmod(0o644)
    with pytest.raises(ConfigError):
        KeyStore(tmp_path / "k.db")
