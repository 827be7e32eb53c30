"""API keys: shown once, stored as salted HMAC verifiers in a 0600 file, revocable at once, cheap to refuse,
and never locked out by someone else's wrong guesses."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from facekeeper.api import keys as api_keys
from facekeeper.api.keys import KeyStore, split_token
from facekeeper.errors import AuthError, ConfigError, InvalidInput, RateLimited


def test_key_is_shown_once_and_only_its_verifier_is_stored(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "api-keys.db")
    new = store.create("acme", "operator")
    store.close()
    _, secret = split_token(new.token)
    raw = (tmp_path / "api-keys.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("api-keys.db-*"))
    assert secret.encode() not in raw and new.token.encode() not in raw
    db = sqlite3.connect(tmp_path / "api-keys.db")
    params, digest = db.execute("SELECT params, hash FROM api_keys").fetchone()
    assert params == "hmac-sha256" and len(digest) == 32
    assert stat.S_IMODE((tmp_path / "api-keys.db").stat().st_mode) == 0o600


def test_authenticate_returns_the_key_record(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    new = store.create("acme", "device", "access-control", "gate 3")
    key = store.authenticate(new.token)
    assert (key.id, key.tenant, key.role, key.purpose, key.label) == (new.key.id, "acme", "device",
                                                                       "access-control", "gate 3")
    assert store.authenticate(new.token) == key


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


def guess(store: KeyStore, token: str, times: int) -> None:
    """``times`` wrong secrets for the key id of ``token``, each refused (401, or 429 once flooded)."""
    prefix, key_id, _ = token.split(".")
    for i in range(times):
        with pytest.raises((AuthError, RateLimited)):
            store.authenticate(f"{prefix}.{key_id}.guess{i}")


def test_wrong_secrets_for_a_key_id_never_lock_out_its_holder_even_after_a_restart(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    new = store.create("acme", "device", "access-control")
    store.close()
    store = KeyStore(tmp_path / "k.db")  # a restart: nothing remembered about the holder
    guess(store, new.token, api_keys.MAX_FAILURES_PER_MINUTE + 5)
    assert store.authenticate(new.token).id == new.key.id
    store.close()
    restarted = KeyStore(tmp_path / "k.db")
    guess(restarted, new.token, api_keys.MAX_FAILURES_PER_MINUTE * 3)
    assert restarted.authenticate(new.token).id == new.key.id


def test_a_guesser_is_throttled_and_the_holder_is_not(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    new = store.create("acme", "device", "access-control")
    prefix, key_id, _ = new.token.split(".")
    for i in range(api_keys.MAX_FAILURES_PER_MINUTE):
        with pytest.raises(AuthError):
            store.authenticate(f"{prefix}.{key_id}.guess{i}")
    with pytest.raises(RateLimited) as info:
        store.authenticate(f"{prefix}.{key_id}.guess")
    assert info.value.details["retry_after"] == 60
    assert store.authenticate(new.token).id == key_id
    with pytest.raises(RateLimited):  # the holder's success does not reset the guesser's count
        store.authenticate(f"{prefix}.{key_id}.guess")


def test_a_key_stored_as_scrypt_by_an_earlier_version_still_opens_and_is_rewritten(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db")
    new = store.create("acme", "operator")
    _, secret = split_token(new.token)
    salt = b"s" * 16
    cost = {"n": 2**10, "r": 8, "p": 1}
    store._db.execute("UPDATE api_keys SET salt = ?, hash = ?, params = ?",
                      (salt, api_keys._hash(secret, salt, cost), "scrypt:n=1024,r=8,p=1"))
    guess(store, new.token, 2)
    assert store.authenticate(new.token).id == new.key.id
    assert store._db.execute("SELECT params FROM api_keys").fetchone() == ("hmac-sha256",)
    guess(store, new.token, api_keys.MAX_FAILURES_PER_MINUTE)
    assert store.authenticate(new.token).id == new.key.id


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
