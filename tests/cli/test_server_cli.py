"""``facekeeper tenants`` and ``facekeeper keys``: tenants as deployments, keys shown once, stored hashed,
folders and files the owner's alone, and no root made by a command that only reads."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facekeeper.api.keys import KeyStore
from facekeeper.api.tenants import ENV_KEY_ROOT, ENV_ROOT
from facekeeper.cli.main import app
from facekeeper.config import ENV_KEY
from facekeeper.errors import ConfigError, InvalidInput
from facekeeper.service import Service

runner = CliRunner()


def cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    r = runner.invoke(app, ["--json", *args, "--root", str(tmp_path / "root"), "--key-root", str(tmp_path / "keys")])
    return r.exit_code, r.stdout


def test_tenants_are_deployments_with_keys_apart(tmp_path: Path) -> None:
    code, out = cli(tmp_path, "tenants", "create", "site-1")
    assert code == 0, out
    made = json.loads(out)
    assert Path(made["home"]) == tmp_path / "root" / "tenants" / "site-1"
    assert Path(made["key_dir"]) == tmp_path / "keys" / "site-1"
    assert stat.S_IMODE((tmp_path / "keys" / "site-1" / "deployment.key").stat().st_mode) == 0o600
    cli(tmp_path, "tenants", "create", "site-2")
    assert [t["tenant"] for t in json.loads(cli(tmp_path, "tenants", "list")[1])] == ["site-1", "site-2"]
    assert cli(tmp_path, "tenants", "create", "site-1")[0] == ConfigError.exit_code
    assert cli(tmp_path, "tenants", "create", "Bad Name")[0] == InvalidInput.exit_code


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    cli(tmp_path, "tenants", "create", "site-1")
    code, out = cli(tmp_path, "keys", "create", "--tenant", "site-1", "--role", "device", "--purpose",
                    "access-control", "--label", "gate 3")
    assert code == 0, out
    made = json.loads(out)
    assert made["api_key"].startswith("fkapi1.") and made["purpose"] == "access-control"
    store = KeyStore(tmp_path / "root" / "api-keys.db")
    assert store.authenticate(made["api_key"]).role == "device"
    store.close()
    listed = json.loads(cli(tmp_path, "keys", "list", "--tenant", "site-1")[1])
    assert [k["id"] for k in listed] == [made["id"]] and "api_key" not in listed[0]
    assert json.loads(cli(tmp_path, "keys", "revoke", made["id"])[1])["revoked_at"] is not None
    assert json.loads(cli(tmp_path, "keys", "list")[1]) == []
    assert len(json.loads(cli(tmp_path, "keys", "list", "--revoked")[1])) == 1


def test_key_creation_and_revocation_are_audited_in_the_tenant_s_chain(tmp_path: Path) -> None:
    cli(tmp_path, "tenants", "create", "site-1")
    made = json.loads(cli(tmp_path, "keys", "create", "--tenant", "site-1", "--role", "operator")[1])
    cli(tmp_path, "keys", "revoke", made["id"])
    with Service.open(tmp_path / "root" / "tenants" / "site-1") as svc:
        entries = [e for e in svc.privacy.audit.entries() if e.action == "keys.manage"]
        assert svc.privacy.audit.verify().ok
    assert [(e.outcome, e.detail["key_id"], e.detail["role"]) for e in entries] == [
        ("created", made["id"], "operator"), ("revoked", made["id"], "operator")]


def test_keys_refuse_unknown_tenants_roles_and_purposes(tmp_path: Path) -> None:
    cli(tmp_path, "tenants", "create", "site-1")
    assert cli(tmp_path, "keys", "create", "--tenant", "nope", "--role", "admin")[0] == ConfigError.exit_code
    assert cli(tmp_path, "keys", "create", "--tenant", "site-1", "--role", "root")[0] == InvalidInput.exit_code
    assert cli(tmp_path, "keys", "create", "--tenant", "site-1", "--role", "device")[0] == InvalidInput.exit_code
    assert cli(tmp_path, "keys", "create", "--tenant", "site-1", "--role", "device", "--purpose",
               "spying")[0] == InvalidInput.exit_code


def test_serve_refuses_one_key_for_every_tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, "A" * 43 + "=")
    assert cli(tmp_path, "serve")[0] == ConfigError.exit_code
    assert cli(tmp_path, "tenants", "create", "site-1")[0] == ConfigError.exit_code


@pytest.mark.parametrize("args", [("tenants", "list"), ("keys", "list"), ("keys", "revoke", "ak_0000000000000000"),
                                  ("serve",)])
def test_commands_other_than_tenants_create_need_an_existing_root_and_create_nothing(
        args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_ROOT, raising=False)
    monkeypatch.delenv(ENV_KEY_ROOT, raising=False)
    r = runner.invoke(app, ["--json", *args])
    assert r.exit_code == ConfigError.exit_code, r.stdout
    assert "FACEKEEPER_SERVICE_ROOT" in r.stdout + r.stderr
    assert list(tmp_path.iterdir()) == []


def test_listing_keys_of_a_root_without_keys_creates_no_key_file(tmp_path: Path) -> None:
    cli(tmp_path, "tenants", "create", "site-1")
    (tmp_path / "root" / "api-keys.db").unlink(missing_ok=True)
    assert json.loads(cli(tmp_path, "keys", "list")[1]) == []
    assert not (tmp_path / "root" / "api-keys.db").exists()


def test_tenant_folders_are_0700_and_files_0600_under_a_permissive_umask(tmp_path: Path) -> None:
    before = os.umask(0o022)
    try:
        assert cli(tmp_path, "tenants", "create", "site-1")[0] == 0
        svc = Service.open(tmp_path / "root" / "tenants" / "site-1")
        try:
            svc.set_notice(version="v2")  # a write while open: the gallery's -wal and -shm exist now
            made = [tmp_path / "root", *(tmp_path / "root").rglob("*"), tmp_path / "keys",
                    *(tmp_path / "keys").rglob("*")]
            names = {p.name for p in made}
            assert {"tenants", "site-1", "facekeeper.toml", "gallery.db", "gallery.db-wal", "gallery.db-shm",
                    "deployment.key"} <= names
            loose = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in made
                     if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)}
            assert loose == {}
        finally:
            svc.close()
    finally:
        os.umask(before)
