"""Errors that reach an API client name no folder of the server: not the tenant's settings file, not its
data or key folder, not where the code is installed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from facekeeper.api.app import ServerSettings
from facekeeper.api.runner import no_server_paths
from facekeeper.api.tenants import Layout
from facekeeper.errors import LicenseError
from tests.api.conftest import PURPOSE, MakeClient, Root

ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:tmp|root|home|srv|var|work|usr|opt|etc)\b")


def assert_no_server_path(text: str, root: Root) -> None:
    for folder in (root.layout.root, root.layout.key_root):
        assert str(folder) not in text and str(folder.resolve()) not in text
    assert not ABSOLUTE.search(text), text


def test_an_incomplete_notice_names_the_settings_file_not_where_it_is(root: Root, make_client: MakeClient) -> None:
    settings = root.layout.data_dir("acme") / "facekeeper.toml"
    settings.write_text(settings.read_text().replace('controller = "', 'controller = "" #'))
    with make_client(ServerSettings(in_process=True, deny_egress=False, rate=1000.0, burst=1000)) as client:
        r = client.post("/v1/consents", headers=root.auth("acme", "operator"),
                        json={"subject_id": "s-1", "purpose": PURPOSE, "method": "paper", "evidence": "form 9"})
    assert r.status_code == 409 and r.json()["code"] == "notice-incomplete", r.text
    assert "facekeeper.toml" in r.json()["detail"]
    assert_no_server_path(r.text, root)


def test_a_tenant_whose_settings_are_broken_is_reported_without_its_path(root: Root, make_client: MakeClient,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    settings = root.layout.data_dir("acme") / "facekeeper.toml"
    settings.write_text("bogus = 1\n" + settings.read_text())
    with make_client(ServerSettings(in_process=True, deny_egress=False, rate=1000.0, burst=1000)) as client:
        r = client.get("/v1/subjects", headers=root.auth("acme", "operator"))
    assert r.status_code == 500 and r.json()["code"] == "config-error", r.text
    assert "acme" in r.json()["detail"]
    assert_no_server_path(r.text, root)
    assert str(settings) in caplog.text  # the operator reads where, in the service's log


def test_any_error_leaving_a_service_call_loses_the_servers_folders(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "root", tmp_path / "keys")
    code = Path(__file__).resolve().parents[2] / "src" / "facekeeper" / "bundle" / "models"
    with pytest.raises(LicenseError) as info, no_server_paths(layout):
        raise LicenseError(f"cannot read {layout.root}/tenants/a/license.json, {layout.key_root / 'a'} or {code}",
                           purpose="x")
    assert info.value.message == "cannot read tenants/a/license.json, a or facekeeper/bundle/models"
    assert info.value.details == {"purpose": "x"}
