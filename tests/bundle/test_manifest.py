"""The signed model bundle: it verifies as shipped, and every kind of tampering is a clear refusal."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from facekeeper.bundle import manifest
from facekeeper.bundle.manifest import verify_bundle
from facekeeper.engine.embed import DlibEmbedder
from facekeeper.errors import BundleError, ModelMismatch
from facekeeper.matching import default_table
from facekeeper.service import Service
from facekeeper.vendor.bundle import CATALOG, sign_bundle

TABLE = {"tables": [{"model_id": "dlib-resnet-v1", "source": "test", "impostor_pairs": 1000, "genuine_pairs": 10,
                     "points": [[0.001, 0.5], [0.01, 0.6]]}]}


class Site:
    """A bundle signed by a throwaway vendor key over small stand-in model files."""

    def __init__(self, root: Path) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.models = root / "models"
        self.models.mkdir()
        for i, entry in enumerate(CATALOG):
            (self.models / entry.file).write_bytes(bytes([i]) * 4096)
        self.calibration = root / "calibration.json"
        self.calibration.write_text(json.dumps(TABLE))
        self.bundle_dir = root / "bundle"
        sign_bundle(self.key, bundle_dir=self.bundle_dir, models_dir=self.models, calibration_path=self.calibration)

    def verify(self, public_key: object = None) -> manifest.Bundle:
        return verify_bundle(self.bundle_dir, models_dir=self.models, calibration_path=self.calibration,
                             public_key=public_key or self.key.public_key())  # type: ignore[arg-type]


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_a_signed_bundle_verifies_and_carries_its_table(site: Site) -> None:
    bundle = site.verify()
    assert bundle.version == "1.0.0"
    assert bundle.table_for("dlib-resnet-v1").points == ((0.001, 0.5), (0.01, 0.6))
    assert {m.file for m in bundle.models} == {e.file for e in CATALOG}


def test_one_changed_byte_in_a_model_file_is_refused(site: Site) -> None:
    path = site.models / CATALOG[0].file
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="not the one the vendor signed"):
        site.verify()


def test_a_missing_model_file_is_refused(site: Site) -> None:
    (site.models / CATALOG[2].file).unlink()
    with pytest.raises(BundleError, match="missing"):
        site.verify()


def test_a_bundle_signed_by_another_key_is_refused(site: Site) -> None:
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(BundleError, match="not by the vendor key this installation trusts"):
        site.verify(stranger.public_key())


def test_a_re_signed_bundle_by_a_foreign_key_is_refused(site: Site) -> None:
    sign_bundle(Ed25519PrivateKey.generate(), bundle_dir=site.bundle_dir, models_dir=site.models,
                calibration_path=site.calibration)
    with pytest.raises(BundleError, match="signed by key"):
        site.verify()


def test_an_edited_manifest_is_refused(site: Site) -> None:
    path = site.bundle_dir / manifest.MANIFEST
    path.write_text(path.read_text().replace('"points"', '"points" ', 1))
    with pytest.raises(BundleError, match="altered after signing"):
        site.verify()


def test_missing_manifest_or_signature_is_refused(site: Site) -> None:
    (site.bundle_dir / manifest.SIGNATURE).unlink()
    with pytest.raises(BundleError, match=r"signature .* is missing"):
        site.verify()
    (site.bundle_dir / manifest.MANIFEST).unlink()
    with pytest.raises(BundleError, match=r"manifest .* is missing"):
        site.verify()


def test_a_re_measured_calibration_table_needs_a_new_signature(site: Site) -> None:
    changed = json.loads(site.calibration.read_text())
    changed["tables"][0]["points"][0][1] = 0.55
    site.calibration.write_text(json.dumps(changed))
    with pytest.raises(BundleError, match="re-sign the bundle"):
        site.verify()
    sign_bundle(site.key, bundle_dir=site.bundle_dir, models_dir=site.models, calibration_path=site.calibration)
    bundle = site.verify()
    assert bundle.version == "1.0.1" and bundle.table_for("dlib-resnet-v1").points[0] == (0.001, 0.55)


def test_a_file_changed_after_a_first_verification_is_still_caught(site: Site) -> None:
    site.verify()
    path = site.models / CATALOG[1].file
    time.sleep(0.01)
    path.write_bytes(b"\x07" * 4096)  # same size, new content
    with pytest.raises(BundleError, match="not the one the vendor signed"):
        site.verify()


def test_a_model_outside_the_bundle_has_no_thresholds(site: Site) -> None:
    with pytest.raises(ModelMismatch, match="not part of the signed model bundle"):
        site.verify().table_for("dlib-resnet-v2")


def test_the_shipped_bundle_verifies_with_the_shipped_key() -> None:
    bundle = manifest.load_trusted_bundle()
    assert bundle.table_for(DlibEmbedder.model_id) == default_table(DlibEmbedder.model_id)
    embedder = bundle.embedder(DlibEmbedder.model_id)
    assert embedder.version in embedder.model_id  # templates name the model version they were made with
    assert embedder.embedding_size == DlibEmbedder.dim


def test_both_backends_tag_templates_with_the_bundled_model_id() -> None:
    from facekeeper.engine.dlib_onnx import OnnxResnetEmbedder

    ids = {e.model_id for e in manifest.load_trusted_bundle().embedders}
    assert {DlibEmbedder.model_id, OnnxResnetEmbedder.model_id} <= ids


def test_service_refuses_to_open_on_a_tampered_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = Service.init(tmp_path / "data", tmp_path / "keys")
    svc.close()
    copy = tmp_path / "bundle"
    shutil.copytree(manifest.default_bundle_dir(), copy)
    doc = json.loads((copy / manifest.MANIFEST).read_text())
    doc["models"][0]["sha256"] = "0" * 64
    (copy / manifest.MANIFEST).write_text(json.dumps(doc, indent=2) + "\n")
    monkeypatch.setattr(manifest, "default_bundle_dir", lambda: copy)
    with pytest.raises(BundleError, match="does not verify"):
        Service.open(tmp_path / "data")
    with pytest.raises(BundleError):
        Service.init(tmp_path / "data2", tmp_path / "keys2")
    assert not (tmp_path / "data2").exists()
