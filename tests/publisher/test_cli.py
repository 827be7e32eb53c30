"""``facekeeper-vendor``: keys, licenses and bundle signing, end to end through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from facekeeper.bundle import manifest
from facekeeper.bundle.license import Licensing
from facekeeper.bundle.signing import load_public_key_file
from facekeeper.bundle.trust import TrustedKey
from facekeeper.engine import models
from facekeeper.publisher.cli import app

runner = CliRunner()


def vendor(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def keygen(path: Path) -> Path:
    code, out = vendor("keygen", "--out", str(path))
    assert code == 0, out
    return path


class Meta(dict[str, str]):
    def get_meta(self, key: str) -> str | None:
        return self.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self[key] = value


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    keys = keygen(tmp_path / "keys")
    assert (keys / "vendor_private.pem").stat().st_mode & 0o777 == 0o600
    code, out = vendor("keygen", "--out", str(keys))
    assert code != 0 and "never overwritten" in out


def test_keygen_refuses_a_directory_inside_a_repository(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    code, out = vendor("keygen", "--out", str(tmp_path / "repo" / "keys"))
    assert code == 3 and "git work tree" in out
    assert not (tmp_path / "repo" / "keys").exists()


def test_issue_and_inspect_a_license(tmp_path: Path) -> None:
    keys = keygen(tmp_path / "keys")
    out_file = tmp_path / "lic.json"
    code, out = vendor("license", "issue", "--key", str(keys / "vendor_private.pem"), "--licensee", "ACME Ltd",
                       "--expires", "+365d", "--features", "verify,identify", "--max-subjects", "5000",
                       "--deployment-id", "a" * 32, "--out", str(out_file))
    assert code == 0, out
    code, out = vendor("license", "inspect", str(out_file), "--public-key", str(keys / "vendor_public.pem"))
    shown = json.loads(out)
    assert code == 0 and shown["signature"] == "valid" and shown["licensee"] == "ACME Ltd"
    assert shown["features"] == ["identify", "verify"] and shown["max_subjects"] == 5000
    key = TrustedKey(load_public_key_file(keys / "vendor_public.pem"))
    lic = Licensing(tmp_path, "a" * 32, Meta(), keys=[key]).install(out_file.read_bytes())
    assert not lic.evaluation and lic.subject_cap == 5000


def test_issue_refuses_unknown_features_and_bad_dates(tmp_path: Path) -> None:
    keys = keygen(tmp_path / "keys")
    base = ["license", "issue", "--key", str(keys / "vendor_private.pem"), "--licensee", "x", "--max-subjects", "1",
            "--deployment-id", "a" * 32, "--out", str(tmp_path / "l.json")]
    code, out = vendor(*base, "--expires", "+30d", "--features", "verify,teleport")
    assert code == 2 and "teleport" in out
    code, out = vendor(*base, "--expires", "yesterday", "--features", "verify")
    assert code == 2 and "expiry" in out
    code, out = vendor(*base, "--expires", "2001-01-01", "--features", "verify")
    assert code == 2 and "expire before" in out


def test_bundle_sign_then_verify(tmp_path: Path) -> None:
    keys = keygen(tmp_path / "keys")
    bundle_dir = tmp_path / "bundle"
    calibration = tmp_path / "calibration.json"
    shutil.copy(manifest.default_calibration_path(), calibration)
    common = ["--bundle-dir", str(bundle_dir), "--calibration", str(calibration)]
    code, out = vendor("bundle", "sign", "--key", str(keys / "vendor_private.pem"), *common,
                       "--models-dir", str(models.models_dir()))
    assert code == 2 and "not the one installations trust" in out  # the shipped trust anchor is another key
    code, out = vendor("bundle", "sign", "--key", str(keys / "vendor_private.pem"), *common,
                       "--trusted", str(keys / "vendor_public.pem"), "--bundle-version", "7.0.0")
    assert code == 0 and "signed bundle 7.0.0" in out, out
    code, out = vendor("bundle", "verify", *common, "--public-key", str(keys / "vendor_public.pem"))
    assert code == 0 and json.loads(out)["bundle_version"] == "7.0.0"
    code, out = vendor("bundle", "verify", *common)  # against the shipped vendor key: refused
    assert code == 33 and "does not verify" in out


def test_the_shipped_bundle_verifies() -> None:
    code, out = vendor("bundle", "verify")
    assert code == 0 and json.loads(out)["models"][0]["model_id"] == "dlib-resnet-v1"
