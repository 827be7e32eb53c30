"""One typed settings object for a deployment, read from ``facekeeper.toml`` with environment overrides.

A deployment is a data directory (gallery, index snapshot) plus a key directory kept elsewhere (the
deployment key and the per-subject key store). Keeping keys away from data is what lets a stolen or
backed-up data directory stay useless, and what makes erasure by key destruction real.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from facekeeper.errors import ConfigError

CONFIG_NAME = "facekeeper.toml"
ENV_HOME = "FACEKEEPER_HOME"
ENV_KEY = "FACEKEEPER_DEPLOYMENT_KEY"
ENV_KEY_DIR = "FACEKEEPER_KEY_DIR"
ENV_DATABASE_URL = "FACEKEEPER_DATABASE_URL"  # the gallery database, with its password: kept out of files
ENV_KEYSTORE_URL = "FACEKEEPER_KEYSTORE_URL"
PRIVATE_UMASK = 0o077  # folders 0700, files 0600: a deployment's data is its owner's alone


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Create folders and files inside as the owner's alone, whatever the process umask (SQLite gives a
    database's -wal and -shm files the mode of the database itself, so they follow)."""
    before = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(before)


def make_private(folder: Path) -> None:
    """``folder`` 0700 and everything in it (files 0600, folders 0700), for what was created before."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod(0o700 if path.is_dir() else 0o600)


@dataclass
class EngineSettings:
    """How faces are found and turned into templates."""

    backend: str = "onnx"  # "onnx" (fast, same weights) or "dlib" (the reference runtime)
    # "yunet" (OpenCV Zoo's CNN: found a face in every photo of our sets, 5 points for SFace; dlib's chip from
    # its box framed as HOG's, same accuracy), "hog" (dlib) or "cnn" (dlib mmod; seconds per image on a CPU)
    detector: str = "yunet"
    upsample: int = 1  # detector upsampling of the working copy; finds faces half the size per step
    detect_max_side: int = 800  # detection runs on a copy no larger than this; landmarks use full size
    # quick pass: first look only for faces at least this fraction of the shorter side (0 = always thorough)
    quick_face: float = 0.25
    landmarks: int = 5  # 5 or 68 point model used for alignment
    batch_size: int = 16
    # Accurate mode's FaceNet crop: "hog" reshapes the one HOG box to MTCNN's framing (no second detector);
    # "mtcnn" runs MTCNN as well and crops its box (see docs/accuracy.md for the measured difference).
    facenet_box: str = "hog"
    # Accurate mode's models fused with dlib: "sface-2021dec-int8bq" and/or "facenet-20180408-102900", in the
    # order the signed bundle's fusion calibration names them, else accurate purposes decide in fast mode.
    # SFace by default: fused with dlib it beats dlib + FaceNet at every FMR measured (docs/accuracy.md).
    side_models: list[str] = field(default_factory=lambda: ["sface-2021dec-int8bq"])
    # A probe with several faces (a bystander behind the person) uses one: "largest" or "centre" (nearest the
    # image centre, for portraits). Enrollment always refuses several faces.
    face_choice: str = "largest"
    workers: int = 0  # 0 = one per CPU core
    onnx_threads: int = 1


@dataclass
class QualitySettings:
    """Enrollment gate. Values measured on real photos; see docs/quality.md."""

    min_eye_distance: float = 24.0  # pixels between eye centres in the original image
    min_sharpness: float = 10.0  # variance of the Laplacian on the aligned 150x150 grey chip
    max_yaw: float = 0.5  # nose asymmetry between the jaw edges: 0 frontal, 1 full profile
    max_roll_degrees: float = 25.0


@dataclass
class MatchSettings:
    """Decisions are stated as target false-match rates, mapped to distances by the calibration table."""

    verify_fmr: float = 1e-4
    identify_fpir: float = 1e-2  # chance a stranger matches anyone; per-comparison FMR = fpir / subjects
    top_k: int = 5
    # accurate-mode 1:N: subjects taken from the dlib index before re-ranking by the fused score
    rerank_k: int = 50


@dataclass
class GallerySettings:
    """Where the gallery lives. The URLs may carry passwords: prefer the environment variables."""

    backend: str = "sqlite"  # sqlite (a file in the data directory) | postgres
    url: str = ""  # postgres: postgresql://user@host/db; FACEKEEPER_DATABASE_URL overrides
    # where subject keys live: "" = files in the key directory (one host); a PostgreSQL URL (better another
    # database than the gallery's) when several hosts serve one gallery. FACEKEEPER_KEYSTORE_URL overrides
    keystore_url: str = ""
    pool_size: int = 4  # connections per process


@dataclass
class IndexSettings:
    backend: str = "faiss"  # faiss (in-process) | pgvector (postgres only) | ray (postgres only)
    exact_below: int = 50_000  # below this many templates exact search is both faster and perfect
    nlist: int = 4096
    nprobe: int = 64
    snapshot_every: int = 1000  # changes applied to the in-memory index before it is persisted again
    ef_search: int = 200  # pgvector HNSW: recall@1 0.998, p99 10.9 ms at 1M (docs/scaling.md)
    ray_address: str = ""  # ray: "" starts a local head on 127.0.0.1; else host:port or ray://host:port
    shards: int = 2  # ray: faiss shards (actors)


@dataclass
class LimitSettings:
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000


@dataclass
class CalibrationSettings:
    """Site self-calibration (``facekeeper calibrate``): the most pairs one subject takes part in."""

    partners: int = 100  # each subject is compared with its successors on a keyed ring (2x this many others)
    per_partner: int = 16  # template pairs per pair of subjects
    genuine: int = 32  # pairs of one subject's own templates


@dataclass
class FederationSettings:
    """Federated calibration (``facekeeper federate join``): privacy loss per round and per year, and the
    per-subject pair caps the noise is scaled to (see docs/federation.md)."""

    round_epsilon: float = 1.0
    yearly_epsilon: float = 4.0  # rounds are refused once the last 365 days spent this much
    partners: int = 8
    per_partner: int = 4
    genuine: int = 6
    flower_bin: str = ""  # folder holding flower-supernode; "" = env FACEKEEPER_FLOWER_BIN, then PATH


@dataclass
class GateSettings:
    """Gate mode (``facekeeper gate run``): the camera, when a face is usable, how a pass is decided.

    The thresholds of a usable face are the gate's own, stricter on pose than enrollment's: a face that
    fails them waits for a better frame of the same pass instead of being refused (docs/gate.md).
    """

    source: str = ""  # /dev/video0, rtsp://ADDRESS/PATH (an address in allow_nets) or a video file
    door: str = ""  # the [doors.NAME] this camera watches
    purpose: str = "access-control"
    fpir: float = 1e-3  # chance that a stranger's pass names anyone consented for the purpose
    best_frames: int = 3  # frames voted on per pass (odd: a tie needs an even split)
    max_wait_seconds: float = 1.0  # decide with fewer usable frames once the first is this old
    min_eye_distance: float = 28.0  # pixels
    max_yaw: float = 0.35
    min_sharpness: float = 10.0
    # a track ends this many frames after its face was last seen: short, so a person stepping into the spot
    # another just left starts a pass of their own instead of inheriting a decided one
    lost_after_frames: int = 5
    # networks of the site's cameras and door controllers: the egress guard admits them and nothing else
    allow_nets: list[str] = field(default_factory=list)


@dataclass
class DoorSettings:
    """One door a gate opens: its output and its rules. Secrets are references, never values: ``env:NAME``
    (an environment variable) or ``file:PATH`` (a 0600 file, e.g. in the key directory)."""

    output: str = "dry-run"  # dry-run | webhook | osdp
    url: str = ""  # webhook: http(s)://ADDRESS[:PORT]/PATH of the site's controller (an address in allow_nets)
    secret: str = ""  # webhook: the HMAC-SHA256 key; osdp: the 16-byte secure channel base key (SCBK), in hex
    osdp_device: str = ""  # osdp: the RS-485 serial device, e.g. /dev/ttyUSB0
    osdp_address: int = 0  # osdp: this reader's address on the line, 0-126
    osdp_baud: int = 9600
    timeout_seconds: float = 2.0  # how long the controller has to answer
    anti_passback_seconds: float = 60.0  # the same person is not let through this door again within this time
    min_presence_seconds: float = 0.2  # a face must be in view this long (3 frames at 15 fps) before the door decides


OPERATIONS = ("enroll", "verify", "identify")
BUILTIN_PURPOSES: dict[str, str] = {
    "access-control": "Opening doors and gates for people who chose face access instead of a badge or PIN.",
    "payment": "Confirming a payment by face, for people who chose it instead of a PIN or card.",
    "attendance": "Recording arrival and departure, for people who chose it instead of a badge or PIN.",
    "model-improvement": "Measuring and improving recognition accuracy on this site's own population.",
    "withdrawal": "Confirming a cash withdrawal by face, for people who chose it instead of a PIN or card.",
}


TEMPLATE_UPDATES = ("off", "on-match")  # [purposes.NAME] template_update


@dataclass
class PurposeSettings:
    """One purpose faces may be used for: its notice text, its limits, and the operations it allows.

    Retention per consent is the earliest of: the consent's expiry, ``idle_days`` after the last successful
    match, and ``max_retention_days`` after the consent was given (see docs/privacy.md).
    """

    description: str = ""  # what the privacy notice tells people this purpose is; required before enrollment
    max_retention_days: int = 1095
    idle_days: int = 1095  # erase this long after the last successful match for this purpose
    operations: list[str] = field(default_factory=lambda: list(OPERATIONS))
    verify_fmr: float = 0.0  # 0: use [match] verify_fmr; e.g. 1e-5 for payment
    # "fast": dlib alone; "accurate": dlib + [engine] side_models fused (fewer false non-matches at the same
    # FMR, ~20 ms more per face with SFace, and a second template per photo). Enrollment for an accurate
    # purpose stores both.
    mode: str = "fast"
    face_only: bool = False  # always refused at start-up: every purpose must accept a non-face credential
    # When a decision's FMR (1:N: FPIR / subjects searched) is below the lowest the table measured:
    # "extrapolate" decides at the impostor-tail fit's threshold (and says so), "refuse" matches nobody.
    beyond_table: str = "extrapolate"
    # "active": verify and identify need a fresh live challenge-response session (``liveness_start``), whose
    # frames show the probe's face; descriptors from edge terminals are refused. "none": no liveness check.
    liveness: str = "none"
    # Moving to a new model without photos (docs/accuracy.md): "on-match" adds the [engine] side_models'
    # templates a subject lacks from a photo probe dlib matched at ``template_update_fmr``, for people whose
    # consent allows it; "off" never does.
    template_update: str = "off"
    # The chance that one stranger's probe adds a template (1:N: divided by the people searched). 0: 1e-5, or
    # the strictest FMR dlib's table measures when it stops above that; never looser than the decision's own.
    # Below the measured table ``beyond_table`` applies, as to the purpose's matches.
    template_update_fmr: float = 0.0


def default_purposes() -> dict[str, PurposeSettings]:
    out = {name: PurposeSettings(description=text) for name, text in BUILTIN_PURPOSES.items()}
    out["payment"].mode = "accurate"  # a false non-match at the till costs a customer more than 35 ms
    # At the fused 1e-4 threshold 7 of London's 20,604 stranger pairs matched (6 of 312 among black volunteers),
    # none at 1e-5; and fused at 1e-5 still rejects fewer genuine pairs than dlib at 1e-4 (docs/accuracy.md).
    out["payment"].verify_fmr = 1e-5
    # A withdrawal checks a claimed identity (the card's holder), never searches; money leaves, so it decides
    # like payment and neither extrapolates past the measured table.
    out["withdrawal"].operations = ["enroll", "verify"]
    out["withdrawal"].mode = "accurate"
    out["withdrawal"].verify_fmr = 1e-5
    for money in ("payment", "withdrawal"):
        out[money].beyond_table = "refuse"
        out[money].liveness = "active"  # a photo or a video of the customer must not pay or take cash
    out["model-improvement"].operations = ["enroll"]
    out["model-improvement"].max_retention_days = 365
    out["model-improvement"].idle_days = 365
    return out


@dataclass
class NoticeSettings:
    """The privacy notice people read before consenting. Enrollment is refused while a field is empty."""

    version: str = ""  # recorded with each consent, so one can tell which text a person saw
    controller: str = ""  # who decides what happens to the faces (legal name)
    contact: str = ""  # where people exercise their rights (privacy officer, DPO)
    retention: str = ""  # the retention statement in words
    rights: str = ""  # access, withdrawal, erasure, the non-face alternative, complaint to the authority


@dataclass
class PrivacySettings:
    default_purpose: str = "access-control"
    guardian_age: int = 14  # a consent stating an age below this needs a guardian's record (PIPL art. 31)
    expiry_warning_days: int = 30  # the compliance report lists consents ending within this many days
    credential_max_failures: int = 5  # a PIN locks after this many wrong tries in a row
    filing_warning: int = 80_000  # enrolled people: warn before the filing threshold
    filing_threshold: int = 100_000  # enrolled people: China's 2025 measures require a filing from here


@dataclass
class Settings:
    data_dir: Path
    key_dir: Path
    deployment_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    engine: EngineSettings = field(default_factory=EngineSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    match: MatchSettings = field(default_factory=MatchSettings)
    gallery: GallerySettings = field(default_factory=GallerySettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    notice: NoticeSettings = field(default_factory=NoticeSettings)
    purposes: dict[str, PurposeSettings] = field(default_factory=default_purposes)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    federation: FederationSettings = field(default_factory=FederationSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    doors: dict[str, DoorSettings] = field(default_factory=dict)

    @property
    def gallery_path(self) -> Path:
        return self.data_dir / "gallery.db"

    def _keep_secret(self, name: str, url: str) -> str:
        """A URL with a password goes to the key directory (0600); the settings file keeps it without one."""
        bare = re.sub(r"(://[^:/@]+):[^@]*@", r"\1@", url)
        if bare != url:
            self.key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self.key_dir / f"{name}.secret"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(url)
        return bare

    def _secret_url(self, name: str, env: str, configured: str) -> str:
        """Environment first, then the key directory's copy with its password, then the settings file."""
        if os.environ.get(env):
            return os.environ[env]
        path = self.key_dir / f"{name}.secret"
        if configured and path.is_file():
            return path.read_text(encoding="utf-8").strip()
        return configured

    @property
    def database_url(self) -> str:
        """The PostgreSQL URL, or "" for the SQLite file."""
        if self.gallery.backend != "postgres":
            return ""
        return self._secret_url("url", ENV_DATABASE_URL, self.gallery.url)

    @property
    def gallery_location(self) -> Path | str:
        """What ``Store`` opens: the SQLite file or the PostgreSQL URL."""
        return self.database_url or self.gallery_path

    def keystore_location(self, name: str) -> Path | str:
        """Where subject keys of one kind live: a file named ``name`` in the key directory, or a URL."""
        url = self._secret_url("keystore_url", ENV_KEYSTORE_URL, self.gallery.keystore_url)
        return url or self.key_dir / name

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.snapshot"

    @property
    def key_path(self) -> Path:
        return self.key_dir / "deployment.key"

    @property
    def keystore_path(self) -> Path:
        return self.key_dir / "keystore.db"

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_NAME

    def save(self) -> None:
        """Write the settings as TOML (data_dir is implied by where the file lives); the data folder and the
        gallery's files are made the owner's alone."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lines = [
            f'deployment_id = "{self.deployment_id}"',
            f'key_dir = "{self.key_dir}"',
        ]
        for section in ("gallery", "engine", "quality", "match", "index", "limits", "privacy", "notice",
                        "calibration", "federation", "gate"):
            lines.append(f"\n[{section}]")
            for name, value in dataclasses.asdict(getattr(self, section)).items():
                if section == "gallery" and name in ("url", "keystore_url"):
                    value = self._keep_secret(name, value)
                lines.append(f"{name} = {_toml_value(value)}")
        for purpose, ps in self.purposes.items():
            lines.append(f"\n[purposes.{_toml_value(purpose)}]")
            for name, value in dataclasses.asdict(ps).items():
                lines.append(f"{name} = {_toml_value(value)}")
        for door, ds in self.doors.items():
            lines.append(f"\n[doors.{_toml_value(door)}]")
            for name, value in dataclasses.asdict(ds).items():
                lines.append(f"{name} = {_toml_value(value)}")
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write("\n".join(lines) + "\n")
        self.data_dir.chmod(0o700)
        for path in self.data_dir.glob(f"{self.gallery_path.name}*"):
            path.chmod(0o600)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a JSON string is a valid TOML basic string (newlines escaped)
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def _section(cls: type, raw: dict[str, Any], name: str, base: Any = None) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{name}]: {', '.join(sorted(unknown))}")
    obj = base if base is not None else cls()
    for key, value in raw.items():
        default = getattr(obj, key)
        if isinstance(default, float) and isinstance(value, int):
            value = float(value)
        if type(default) is not type(value):
            raise ConfigError(f"[{name}] {key} must be {type(default).__name__}, got {value!r}")
        setattr(obj, key, value)
    return obj


def default_key_dir(deployment_id: str) -> Path:
    base = os.environ.get(ENV_KEY_DIR)
    if base:
        return Path(base)
    return Path.home() / ".config" / "facekeeper" / "keys" / deployment_id


def home_from_env(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    return Path(os.environ.get(ENV_HOME, "facekeeper-data"))


def load(data_dir: Path) -> Settings:
    """Read a deployment's settings; a missing or malformed file is a ``ConfigError`` that says what to do."""
    path = data_dir / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"no deployment at {data_dir}: run 'facekeeper init --home {data_dir}' first")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    sections = {"gallery": GallerySettings, "engine": EngineSettings, "quality": QualitySettings,
                "match": MatchSettings, "index": IndexSettings, "limits": LimitSettings, "privacy": PrivacySettings,
                "notice": NoticeSettings, "calibration": CalibrationSettings, "federation": FederationSettings,
                "gate": GateSettings}
    top_known = {"deployment_id", "key_dir", "purposes", "doors", *sections}
    unknown = set(raw) - top_known
    if unknown:
        raise ConfigError(f"unknown setting(s) in {path}: {', '.join(sorted(unknown))}")
    deployment_id = str(raw.get("deployment_id", ""))
    if not deployment_id:
        raise ConfigError(f"{path} has no deployment_id")
    key_dir_env = os.environ.get(ENV_KEY_DIR)
    key_dir = Path(key_dir_env) if key_dir_env else Path(str(raw.get("key_dir") or default_key_dir(deployment_id)))
    settings = Settings(data_dir=data_dir, key_dir=key_dir, deployment_id=deployment_id)
    for name, cls in sections.items():
        setattr(settings, name, _section(cls, raw.get(name, {}), name))
    settings.purposes = _purposes(raw.get("purposes", {}))
    doors = raw.get("doors", {})
    if not isinstance(doors, dict):
        raise ConfigError("[doors] must hold one table per door")
    settings.doors = {name: _section(DoorSettings, table, f"doors.{name}") for name, table in doors.items()}
    validate(settings)
    return settings


def _purposes(raw: Any) -> dict[str, PurposeSettings]:
    """Built-in purposes, overridden or extended by ``[purposes.NAME]`` tables."""
    if not isinstance(raw, dict):
        raise ConfigError("[purposes] must hold one table per purpose")
    out = default_purposes()
    for purpose, table in raw.items():
        out[purpose] = _section(PurposeSettings, table, f"purposes.{purpose}", out.get(purpose))
        if isinstance(table, dict) and "mode" not in table:
            # written before modes existed: it decided in fast mode, and an upgrade must not change that
            # silently (nor pair accurate mode with the FMR the file pins); set mode to opt in
            out[purpose].mode = "fast"
    return out


def validate_privacy(settings: Settings) -> None:
    """Purposes must be well formed and none may be face-only: refusing a face must cost a person nothing."""
    for purpose, ps in settings.purposes.items():
        if not purpose or len(purpose) > 40 or not all(c.isascii() and (c.isalnum() or c == "-") for c in purpose):
            raise ConfigError(f"purpose names are 1-40 letters, digits or '-': {purpose!r}")
        if ps.face_only:
            raise ConfigError(
                f"purpose {purpose} is declared face-only: every purpose must accept a non-face credential"
                " (PIN or QR token) so that refusing face recognition costs a person nothing")
        bad = [op for op in ps.operations if op not in OPERATIONS]
        if bad or not all(isinstance(op, str) for op in ps.operations):
            raise ConfigError(f"purposes.{purpose}.operations may only list {', '.join(OPERATIONS)}")
        if ps.max_retention_days < 1 or ps.idle_days < 1:
            raise ConfigError(f"purposes.{purpose}: retention periods must be at least one day")
        if ps.mode not in ("fast", "accurate"):
            raise ConfigError(f"purposes.{purpose}.mode must be 'fast' or 'accurate', not {ps.mode!r}")
        if not 0 <= ps.verify_fmr < 1:
            raise ConfigError(f"purposes.{purpose}.verify_fmr must be between 0 and 1 (0 = the default)")
        if ps.liveness not in ("active", "none"):
            raise ConfigError(f"purposes.{purpose}.liveness must be 'active' or 'none', not {ps.liveness!r}")
        if ps.template_update not in TEMPLATE_UPDATES:
            raise ConfigError(f"purposes.{purpose}.template_update must be 'off' or 'on-match',"
                              f" not {ps.template_update!r}")
        if not 0 <= ps.template_update_fmr < 1:
            raise ConfigError(f"purposes.{purpose}.template_update_fmr must be between 0 and 1 (0 = the default)")
        if ps.beyond_table not in ("refuse", "extrapolate"):
            raise ConfigError(f"purposes.{purpose}.beyond_table must be 'refuse' or 'extrapolate',"
                              f" not {ps.beyond_table!r}")
    p = settings.privacy
    if p.default_purpose not in settings.purposes:
        raise ConfigError(f"privacy.default_purpose {p.default_purpose!r} is not a declared purpose")
    if p.guardian_age < 0 or p.expiry_warning_days < 0 or p.credential_max_failures < 1:
        raise ConfigError("privacy: guardian_age and expiry_warning_days must be >= 0, credential_max_failures >= 1")
    if not 0 < p.filing_warning <= p.filing_threshold:
        raise ConfigError("privacy.filing_warning must be positive and at most privacy.filing_threshold")


def validate_storage(settings: Settings) -> None:
    g, ix = settings.gallery, settings.index
    if g.backend not in ("sqlite", "postgres"):
        raise ConfigError(f"gallery.backend must be 'sqlite' or 'postgres', not {g.backend!r}")
    if g.backend == "postgres" and not settings.database_url:
        raise ConfigError(f"gallery.backend = postgres needs gallery.url or {ENV_DATABASE_URL}")
    for name, url in (("gallery.url", settings.database_url), ("gallery.keystore_url", g.keystore_url)):
        if url and not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"{name} must be a postgresql:// URL")
    if g.pool_size < 1:
        raise ConfigError("gallery.pool_size must be at least 1")
    if ix.backend not in ("faiss", "pgvector", "ray"):
        raise ConfigError(f"index.backend must be 'faiss', 'pgvector' or 'ray', not {ix.backend!r}")
    if ix.backend in ("pgvector", "ray") and g.backend != "postgres":
        raise ConfigError(f"index.backend = {ix.backend} reads its vectors from PostgreSQL: set gallery.backend"
                          " = postgres")
    if not 1 <= ix.ef_search <= 1000 or ix.shards < 1:
        raise ConfigError("index.ef_search must be 1-1000 (pgvector's range) and index.shards at least 1")


def validate_gate(settings: Settings) -> None:
    """Gate and door settings: outputs that exist, rules that make sense, networks that parse."""
    import ipaddress

    g = settings.gate
    if not 0 < g.fpir < 1 or g.best_frames < 1 or g.lost_after_frames < 1 or g.max_wait_seconds < 0:
        raise ConfigError("gate: fpir between 0 and 1, best_frames and lost_after_frames >= 1, max_wait_seconds >= 0")
    if g.min_eye_distance <= 0 or not 0 < g.max_yaw <= 1 or g.min_sharpness < 0:
        raise ConfigError("gate: min_eye_distance > 0, max_yaw in (0, 1], min_sharpness >= 0")
    for net in g.allow_nets:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"gate.allow_nets: {net!r} is not a network (e.g. 192.168.10.0/24)") from None
    for door, d in settings.doors.items():
        if not door or len(door) > 40 or not all(c.isascii() and (c.isalnum() or c in "-_") for c in door):
            raise ConfigError(f"door names are 1-40 letters, digits, '-' or '_': {door!r}")
        if d.output not in ("dry-run", "webhook", "osdp"):
            raise ConfigError(f"doors.{door}.output must be 'dry-run', 'webhook' or 'osdp', not {d.output!r}")
        if d.output != "dry-run" and not d.secret.startswith(("env:", "file:")):
            raise ConfigError(f"doors.{door}.secret must be a reference, env:NAME or file:PATH, never the secret")
        if d.output == "webhook" and not d.url.startswith(("http://", "https://")):
            raise ConfigError(f"doors.{door}.url must be the controller's http(s) URL")
        if d.output == "osdp" and (not d.osdp_device or not 0 <= d.osdp_address <= 126):
            raise ConfigError(f"doors.{door}: osdp needs osdp_device and an osdp_address of 0-126")
        if d.anti_passback_seconds < 0 or d.min_presence_seconds < 0 or d.timeout_seconds <= 0:
            raise ConfigError(f"doors.{door}: anti_passback_seconds and min_presence_seconds >= 0, timeout > 0")


def validate(settings: Settings) -> None:
    validate_privacy(settings)
    validate_storage(settings)
    validate_gate(settings)
    cal, fed = settings.calibration, settings.federation
    if min(cal.partners, cal.per_partner, fed.partners, fed.per_partner) < 1 or min(cal.genuine, fed.genuine) < 0:
        raise ConfigError("calibration and federation: partners and per_partner must be >= 1, genuine >= 0")
    if not 0 < fed.round_epsilon <= fed.yearly_epsilon:
        raise ConfigError("federation.round_epsilon must be positive and at most federation.yearly_epsilon")
    eng = settings.engine
    if eng.backend not in ("onnx", "dlib"):
        raise ConfigError(f"engine.backend must be 'onnx' or 'dlib', not {eng.backend!r}")
    if eng.detector not in ("yunet", "hog", "cnn"):
        raise ConfigError(f"engine.detector must be 'yunet', 'hog' or 'cnn', not {eng.detector!r}")
    known_sides = ("sface-2021dec-int8bq", "facenet-20180408-102900")
    if not eng.side_models or len(set(eng.side_models)) != len(eng.side_models) or not set(eng.side_models) <= set(
            known_sides):
        raise ConfigError(f"engine.side_models must list some of {', '.join(known_sides)} once each,"
                          f" not {eng.side_models!r}")
    if eng.facenet_box not in ("hog", "mtcnn"):
        raise ConfigError(f"engine.facenet_box must be 'hog' or 'mtcnn', not {eng.facenet_box!r}")
    if eng.face_choice not in ("largest", "centre"):
        raise ConfigError(f"engine.face_choice must be 'largest' or 'centre', not {eng.face_choice!r}")
    if eng.landmarks not in (5, 68):
        raise ConfigError("engine.landmarks must be 5 or 68")
    if not 0 <= eng.upsample <= 3:
        raise ConfigError("engine.upsample must be between 0 and 3")
    if not 0 <= eng.quick_face <= 1:
        raise ConfigError("engine.quick_face must be between 0 (off) and 1 (a fraction of the shorter side)")
    if eng.batch_size < 1 or eng.workers < 0 or eng.onnx_threads < 1:
        raise ConfigError("engine.batch_size and engine.onnx_threads must be >= 1, engine.workers >= 0")
    if settings.match.top_k < 1 or settings.match.rerank_k < 1:
        raise ConfigError("match.top_k and match.rerank_k must be at least 1")
    for name in ("verify_fmr", "identify_fpir"):
        value = getattr(settings.match, name)
        if not 0 < value < 1:
            raise ConfigError(f"match.{name} must be between 0 and 1")
    try:
        data = settings.data_dir.resolve()
        keys = settings.key_dir.resolve()
    except OSError as exc:
        raise ConfigError(f"cannot resolve deployment paths: {exc}") from None
    if keys == data or data in keys.parents:
        raise ConfigError("key_dir must not be inside the data directory: keys and data are backed up apart")
