"""One typed settings object for a deployment, read from ``facekeeper.toml`` with environment overrides.

A deployment is a data directory (gallery, index snapshot) plus a key directory kept elsewhere (the
deployment key and the per-subject key store). Keeping keys away from data is what lets a stolen or
backed-up data directory stay useless, and what makes erasure by key destruction real.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from facekeeper.errors import ConfigError

CONFIG_NAME = "facekeeper.toml"
ENV_HOME = "FACEKEEPER_HOME"
ENV_KEY = "FACEKEEPER_DEPLOYMENT_KEY"
ENV_KEY_DIR = "FACEKEEPER_KEY_DIR"


@dataclass
class EngineSettings:
    """How faces are found and turned into templates."""

    backend: str = "dlib"  # "onnx" (fast, same weights) or "dlib" (the reference runtime)
    detector: str = "hog"  # "hog" or "cnn" (dlib mmod; seconds per image on a CPU)
    upsample: int = 1  # detector upsampling of the working copy; finds faces half the size per step
    detect_max_side: int = 800  # detection runs on a copy no larger than this; landmarks use full size
    landmarks: int = 5  # 5 or 68 point model used for alignment
    batch_size: int = 16
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


@dataclass
class IndexSettings:
    exact_below: int = 50_000  # below this many templates exact search is both faster and perfect
    nlist: int = 4096
    nprobe: int = 64
    snapshot_every: int = 1000  # changes applied to the in-memory index before it is persisted again


@dataclass
class LimitSettings:
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000


@dataclass
class Settings:
    data_dir: Path
    key_dir: Path
    deployment_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    engine: EngineSettings = field(default_factory=EngineSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    match: MatchSettings = field(default_factory=MatchSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)

    @property
    def gallery_path(self) -> Path:
        return self.data_dir / "gallery.db"

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
        """Write the settings as TOML (data_dir is implied by where the file lives)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f'deployment_id = "{self.deployment_id}"',
            f'key_dir = "{self.key_dir}"',
        ]
        for section in ("engine", "quality", "match", "index", "limits"):
            lines.append(f"\n[{section}]")
            for name, value in dataclasses.asdict(getattr(self, section)).items():
                lines.append(f"{name} = {_toml_value(value)}")
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _section(cls: type, raw: dict[str, Any], name: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{name}]: {', '.join(sorted(unknown))}")
    obj = cls()
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
    sections = {"engine": EngineSettings, "quality": QualitySettings, "match": MatchSettings,
                "index": IndexSettings, "limits": LimitSettings}
    top_known = {"deployment_id", "key_dir", *sections}
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
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    eng = settings.engine
    if eng.backend not in ("onnx", "dlib"):
        raise ConfigError(f"engine.backend must be 'onnx' or 'dlib', not {eng.backend!r}")
    if eng.detector not in ("hog", "cnn"):
        raise ConfigError(f"engine.detector must be 'hog' or 'cnn', not {eng.detector!r}")
    if eng.landmarks not in (5, 68):
        raise ConfigError("engine.landmarks must be 5 or 68")
    if not 0 <= eng.upsample <= 3:
        raise ConfigError("engine.upsample must be between 0 and 3")
    if eng.batch_size < 1 or eng.workers < 0 or eng.onnx_threads < 1:
        raise ConfigError("engine.batch_size and engine.onnx_threads must be >= 1, engine.workers >= 0")
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
