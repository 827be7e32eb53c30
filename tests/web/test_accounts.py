"""The console's account store: Argon2 hashes in a 0600 file, time-based lockout, TOTP, one-time logins,
sessions, and self-service codes that name no one without the paper they are printed on."""

from __future__ import annotations

import stat
from pathlib import Path

import pyotp
import pytest

from facekeeper.errors import AuthError, InvalidInput, RateLimited
from facekeeper.web import accounts
from facekeeper.web.accounts import AccountStore
from tests.clock import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> AccountStore:
    s = AccountStore(tmp_path / "root" / accounts.ACCOUNTS_FILE, clock=clock)
    s.create("acme", "olga", "operator", "a long enough password")
    return s


def test_passwords_are_argon2_hashes_in_a_file_only_the_owner_reads(store: AccountStore) -> None:
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    raw = store.path.read_bytes() + Path(f"{store.path}-wal").read_bytes()
    assert b"a long enough password" not in raw
    assert b"$argon2id$" in raw


def test_a_short_password_or_a_device_role_is_refused(store: AccountStore) -> None:
    with pytest.raises(InvalidInput):
        store.create("acme", "bob", "operator", "short")
    with pytest.raises(InvalidInput):
        store.create("acme", "gate", "device", "a long enough password")


def test_an_unknown_name_and_a_wrong_password_get_the_same_words(store: AccountStore) -> None:
    with pytest.raises(AuthError) as unknown:
        store.login("acme", "nobody", "a long enough password")
    with pytest.raises(AuthError) as wrong:
        store.login("acme", "olga", "not the password at all")
    assert unknown.value.message == wrong.value.message


def test_repeated_failures_lock_the_account_for_a_while_then_its_holder_gets_in(store: AccountStore,
                                                                                 clock: Clock) -> None:
    for _ in range(accounts.MAX_FAILURES):
        with pytest.raises(AuthError):
            store.login("acme", "olga", "a guessed password!")
    with pytest.raises(RateLimited):  # locked: even the right password waits
        store.login("acme", "olga", "a long enough password")
    clock.now += accounts.LOCK_SECONDS + 1
    assert store.login("acme", "olga", "a long enough password").role == "operator"


def test_a_session_is_of_its_tenant_and_ends_when_idle(store: AccountStore, clock: Clock) -> None:
    s = store.login("acme", "olga", "a long enough password")
    assert store.session(s.token) == s
    assert store.session(s.token, kind="person") is None
    clock.now += accounts.IDLE_SECONDS + 1
    assert store.session(s.token) is None


def test_removing_an_account_ends_its_sessions_at_once(store: AccountStore) -> None:
    s = store.login("acme", "olga", "a long enough password")
    store.remove("acme", "olga")
    assert store.session(s.token) is None


def test_a_confirmed_totp_is_asked_for_at_sign_in(store: AccountStore) -> None:
    store.create("acme", "ada", "admin", "an admin's password")
    secret = store.start_totp("acme", "ada")
    store.login("acme", "ada", "an admin's password")  # not in force until confirmed
    store.confirm_totp("acme", "ada", pyotp.TOTP(secret).now())
    with pytest.raises(AuthError, match="authenticator"):
        store.login("acme", "ada", "an admin's password")
    assert store.login("acme", "ada", "an admin's password", pyotp.TOTP(secret).now()).role == "admin"


def test_a_one_time_login_opens_one_session_once(store: AccountStore, clock: Clock) -> None:
    token = store.one_time_login("acme", "olga")
    assert store.use_once(token).username == "olga"
    with pytest.raises(AuthError):
        store.use_once(token)
    late = store.one_time_login("acme", "olga")
    clock.now += accounts.ONCE_SECONDS + 1
    with pytest.raises(AuthError):
        store.use_once(late)


def test_a_self_service_code_opens_its_subject_and_the_file_names_no_one(store: AccountStore) -> None:
    code = store.issue_self_service("acme", "volunteer-4711")
    session = store.open_self_service(code.code.lower().replace("-", " "), code.pin)
    assert (session.tenant, session.subject_id, session.kind) == ("acme", "volunteer-4711", "person")
    assert store.session(session.token, kind="person").subject_id == "volunteer-4711"
    raw = store.path.read_bytes() + Path(f"{store.path}-wal").read_bytes()
    assert b"volunteer-4711" not in raw and code.pin.encode() not in raw


def test_wrong_pins_lock_a_code_for_a_while(store: AccountStore, clock: Clock) -> None:
    code = store.issue_self_service("acme", "p1")
    wrong = "000000" if code.pin != "000000" else "111111"
    for _ in range(accounts.MAX_FAILURES):
        with pytest.raises(AuthError):
            store.open_self_service(code.code, wrong)
    with pytest.raises(RateLimited):
        store.open_self_service(code.code, code.pin)
    clock.now += accounts.LOCK_SECONDS + 1
    assert store.open_self_service(code.code, code.pin).subject_id == "p1"


def test_a_forgotten_code_opens_nothing_and_ends_its_sessions(store: AccountStore) -> None:
    code = store.issue_self_service("acme", "p1")
    session = store.open_self_service(code.code, code.pin)
    assert session.subject is not None
    store.forget_self_service(session.subject)
    assert store.session(session.token, kind="person") is None
    with pytest.raises(AuthError):
        store.open_self_service(code.code, code.pin)
