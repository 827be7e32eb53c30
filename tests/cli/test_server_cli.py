"""``facekeeper tenants`` and ``facekeeper keys``: tenants as deployments, keys shown once, stored hashed."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facekeeper.api.keys import KeyStore
from facekeeper.cli.main import app
from facekeeper.config import ENV_KEY
from facekeeper.errors import ConfigError, InvalidInput

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
