"""The one facade every interface calls: CLI today, the HTTP service and SDK tomorrow.

Each operation takes the images or ids it needs and returns plain result records; interfaces only
translate. Images are decoded, used and dropped inside a call: nothing here writes pixels anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facekeeper import config
from facekeeper.bundle import Bundle, Licensing, load_trusted_bundle
from facekeeper.config import Settings
from facekeeper.engine import Engine, Face, pipeline
from facekeeper.errors import ConfigError, InvalidInput
from facekeeper.gallery.gallery import Gallery, SubjectInfo
from facekeeper.gallery.keys import DeploymentKey, load_key, write_key_file
from facekeeper.matching import CalibrationTable, Decision, decide, per_comparison_fmr

ImageSource = str | Path | bytes
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass(frozen=True)
class EnrollResult:
    subject_id: str
    pseudonym: str
    templates_added: int
    quality: list[dict[str, float]]


@dataclass(frozen=True)
class VerifyResult:
    decision: Decision
    against: str  # "image" or "subject"

    def to_dict(self) -> dict[str, Any]:
        return {"against": self.against, **self.decision.to_dict()}


@dataclass(frozen=True)
class IdentifyCandidate:
    subject_id: str
    name: str | None
    pseudonym: str
    decision: Decision

    def to_dict(self) -> dict[str, Any]:
        return {"subject_id": self.subject_id, "name": self.name, "pseudonym": self.pseudonym,
                **self.decision.to_dict()}


@dataclass(frozen=True)
class IdentifyResult:
    """``match`` is the identified subject, or None: "unknown" is an answer, not a failure."""

    match: IdentifyCandidate | None
    candidates: list[IdentifyCandidate]
    searched_subjects: int
    target_fpir: float

    def to_dict(self) -> dict[str, Any]:
        return {"match": self.match.to_dict() if self.match else None, "unknown": self.match is None,
                "searched_subjects": self.searched_subjects, "target_fpir": self.target_fpir,
                "candidates": [c.to_dict() for c in self.candidates]}


@dataclass
class BulkSummary:
    enrolled: dict[str, int] = field(default_factory=dict)  # subject id -> templates added
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (file, code, message)

    def to_dict(self) -> dict[str, Any]:
        return {"subjects": len(self.enrolled), "templates": sum(self.enrolled.values()),
                "skipped": [{"file": f, "code": c, "message": m} for f, c, m in self.skipped]}


def face_record(face: Face) -> dict[str, Any]:
    """What ``detect`` reports about a face: geometry and quality, nothing that identifies anyone."""
    return {"box": {"left": face.box[0], "top": face.box[1], "right": face.box[2], "bottom": face.box[3]},
            "score": round(face.detection.score, 3),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks],
            "quality": face.quality.as_dict()}


class Service:
    def __init__(self, settings: Settings, key: DeploymentKey, gallery: Gallery,
                 engine: Engine | None = None, bundle: Bundle | None = None) -> None:
        self.settings = settings
        self.gallery = gallery
        self.engine = engine or Engine(settings.engine, settings.quality, settings.limits)
        self._key = key
        self._table: CalibrationTable | None = None
        self.bundle = bundle or load_trusted_bundle()  # refuses to start on unsigned models or thresholds
        self.license = Licensing(settings.data_dir, settings.deployment_id, gallery.store)

    # -- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def init(cls, data_dir: Path, key_dir: Path | None = None, **engine_overrides: Any) -> Service:
        """Create a deployment: settings, deployment key (0600, outside the data dir) and empty gallery."""
        if (data_dir / config.CONFIG_NAME).exists():
            raise ConfigError(f"a deployment already exists at {data_dir}")
        bundle = load_trusted_bundle()
        settings = Settings(data_dir=data_dir, key_dir=Path("."))
        settings.key_dir = key_dir or config.default_key_dir(settings.deployment_id)
        for name, value in engine_overrides.items():
            if value is not None:
                setattr(settings.engine, name, value)
        config.validate(settings)
        if settings.key_path.exists() and not os.environ.get(config.ENV_KEY):
            raise ConfigError(f"{settings.key_path} already exists: give a fresh --key-dir")
        data_dir.mkdir(parents=True, exist_ok=True)
        key = load_key(settings.key_path) if os.environ.get(config.ENV_KEY) else DeploymentKey.generate()
        if not os.environ.get(config.ENV_KEY):
            write_key_file(settings.key_path, key)
        try:
            gallery = Gallery.create(settings, key)
            settings.save()
        except BaseException:
            for path in (settings.gallery_path, settings.config_path):
                path.unlink(missing_ok=True)
            raise
        return cls(settings, key, gallery, bundle=bundle)

    @classmethod
    def open(cls, data_dir: Path, *, engine: Engine | None = None, **engine_overrides: Any) -> Service:
        settings = config.load(data_dir)
        for name, value in engine_overrides.items():
            if value is not None:
                setattr(settings.engine, name, value)
        config.validate(settings)
        key = load_key(settings.key_path)
        return cls(settings, key, Gallery.open(settings, key), engine)

    def close(self) -> None:
        self.gallery.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def table(self) -> CalibrationTable:
        if self._table is None:
            self._table = self.bundle.table_for(self.engine.model_id)
        return self._table

    # -- operations -----------------------------------------------------------------------------
    def detect(self, image: ImageSource, landmarks: int = 68) -> list[dict[str, Any]]:
        rgb = self.engine.decode(image)
        return [face_record(f) for f in self.engine.faces(rgb, landmarks)]

    def enroll(self, images: Sequence[ImageSource], subject_id: str, name: str | None = None) -> EnrollResult:
        """Enroll one or more photos of one person. All photos must pass, or nothing is stored."""
        if not images:
            raise InvalidInput("give at least one photo to enroll")
        self._require("enroll", new_subjects=0 if self.gallery.find(subject_id) else 1)
        faces = [self.engine.single_face(self.engine.decode(img), enrollment=True) for img in images]
        descriptors = self.engine.embed([f.chip for f in faces])
        pseudonym = self.gallery.enroll(subject_id, descriptors, self.engine.model_id, name)
        return EnrollResult(subject_id, pseudonym, len(faces), [f.quality.as_dict() for f in faces])

    def enroll_dir(self, root: Path, progress: Callable[[int, int], None] | None = None,
                   workers: int | None = None) -> BulkSummary:
        """Enroll a folder with one sub-folder per person (the folder name is the subject id).

        Each photo is judged on its own: a bad photo is skipped with its reason, the others enroll.
        Photos are prepared on ``workers`` processes and embedded in batches across people; each person
        is still one transaction, so an interrupted run leaves whole subjects or none.
        """
        if not root.is_dir():
            raise InvalidInput(f"{root} is not a folder")
        people = sorted(p for p in root.iterdir() if p.is_dir())
        jobs = [(person.name, sorted(f for f in person.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES))
                for person in people]
        self._require("enroll", new_subjects=sum(1 for s, files in jobs if files and self.gallery.find(s) is None))
        total = sum(len(files) for _, files in jobs)
        summary = BulkSummary()
        owner = {f: subject_id for subject_id, files in jobs for f in files}
        chips: dict[str, list[np.ndarray]] = {}
        ready: list[str] = []  # subjects whose photos are all prepared, in order
        remaining = {subject_id: len(files) for subject_id, files in jobs}
        prepared = pipeline.prepare(self.engine, [f for _, files in jobs for f in files], workers=workers)
        for done, item in enumerate(prepared, start=1):
            subject_id = owner[item.path]
            if item.error is not None:
                summary.skipped.append((f"{subject_id}/{item.path.name}", item.error.code, item.error.message))
            else:
                assert item.chip is not None
                chips.setdefault(subject_id, []).append(item.chip)
            remaining[subject_id] -= 1
            if remaining[subject_id] == 0 and subject_id in chips:
                ready.append(subject_id)
            if progress:
                progress(done, total)
            if sum(len(chips[s]) for s in ready) >= self.engine.settings.batch_size or done == total:
                self._enroll_prepared(ready, chips, summary)
                ready = []
        return summary

    def _enroll_prepared(self, subjects: list[str], chips: dict[str, list[np.ndarray]],
                         summary: BulkSummary) -> None:
        """Embed several people's chips in one batch, then store each person in a transaction of its own."""
        if not subjects:
            return
        batch = [c for s in subjects for c in chips[s]]
        descriptors = self.engine.embed(batch)
        start = 0
        for subject_id in subjects:
            n = len(chips.pop(subject_id))
            self.gallery.enroll(subject_id, descriptors[start : start + n], self.engine.model_id)
            summary.enrolled[subject_id] = n
            start += n

    def verify(self, probe: ImageSource, reference: ImageSource | None = None, *,
               subject_id: str | None = None, fmr: float | None = None) -> VerifyResult:
        """1:1. Against another image, or against an enrolled subject (its best template)."""
        if (reference is None) == (subject_id is None):
            raise InvalidInput("verify needs exactly one of: a second image, or a subject id")
        self._require("verify")
        fmr = fmr or self.settings.match.verify_fmr
        probe_vec = self._descriptor(probe)
        if reference is not None:
            distance = float(np.linalg.norm(probe_vec - self._descriptor(reference)))
            return VerifyResult(decide(self.table, distance, fmr), "image")
        assert subject_id is not None
        pseudonym = self.gallery.resolve(subject_id)
        protected = self.gallery.protect(probe_vec, self.engine.model_id)
        stored = self.gallery.templates(pseudonym, self.engine.model_id)
        distance = float(np.linalg.norm(stored - protected, axis=1).min())
        return VerifyResult(decide(self.table, distance, fmr), "subject")

    def identify(self, probe: ImageSource, k: int | None = None, fpir: float | None = None) -> IdentifyResult:
        """1:N. Answers with the nearest subject only when it is within the threshold for the stated FPIR."""
        self._require("identify")
        return self.identify_descriptor(self._descriptor(probe), k, fpir)

    def identify_descriptor(self, descriptor: np.ndarray, k: int | None = None,
                            fpir: float | None = None) -> IdentifyResult:
        self._require("identify")
        k = k or self.settings.match.top_k
        if k < 1:
            raise InvalidInput("k must be at least 1")
        fpir = fpir or self.settings.match.identify_fpir
        searched = self.gallery.store.subject_count()
        fmr = per_comparison_fmr(fpir, searched)
        candidates = []
        for c in self.gallery.search(descriptor, self.engine.model_id, k):
            subject_id, name = self.gallery.identity(c.pseudonym)
            candidates.append(IdentifyCandidate(subject_id, name, c.pseudonym, decide(self.table, c.distance, fmr)))
        match = candidates[0] if candidates and candidates[0].decision.match else None
        return IdentifyResult(match, candidates, searched, fpir)

    def subjects(self) -> list[SubjectInfo]:
        return self.gallery.subjects()

    def subject(self, subject_id: str) -> SubjectInfo:
        return self.gallery.subject(self.gallery.resolve(subject_id))

    def delete(self, subject_id: str) -> dict[str, Any]:
        erasure = self.gallery.delete_subject(self.gallery.resolve(subject_id))
        return {"subject_id": subject_id, "pseudonym": erasure.pseudonym, "templates_erased": erasure.templates,
                "erased_at": erasure.erased_at}

    def _require(self, feature: str, new_subjects: int = 0) -> None:
        """Licensed operations stop here without a valid license; detect, listing and erasure never do."""
        self.license.require(feature, self.gallery.store.subject_count(), new_subjects)

    def _descriptor(self, image: ImageSource) -> np.ndarray:
        face = self.engine.single_face(self.engine.decode(image), enrollment=False)
        return self.engine.embed([face.chip])[0]

