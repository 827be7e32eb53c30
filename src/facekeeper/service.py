"""The one facade every interface calls: CLI today, the HTTP service and SDK tomorrow.

Each operation takes the images or ids it needs and returns plain result records; interfaces only
translate. Images are decoded, used and dropped inside a call: nothing here writes pixels anywhere.

Every operation names who asks (an ``Actor``: id, role, tenant; the service's default actor when None)
and why (a purpose; the configured default when None), and runs as: policy check (role, purpose,
notice, consent) → work → one audit entry, written in the transaction of the data change when there is
one. Refusals are audited too. Time comes from ``clock``, so retention can be tested by moving it.

Each purpose has a mode. ``fast`` decides with dlib alone; ``accurate`` fuses dlib and FaceNet
(``facekeeper.fusion``) and enrolls both templates. A decision falls back to fast, and says so in ``mode``
and ``note``, when what accurate mode needs is missing: the fusion calibration in the signed bundle, or
the subject's FaceNet templates (enrolled for a fast purpose). The FMR stays the stated one either way,
because each mode decides with its own signed table; only the false non-match rate differs. Descriptors
sent by edge terminals are dlib descriptors, so those calls are always fast.

A purpose with ``template_update = "on-match"`` moves a site to its side models without photos: a photo probe
dlib matched at a strict FMR adds the side-model templates the subject lacks, computed from that probe, when
the person's consent allows it (``facekeeper.template_update``); ``template_coverage`` reports who still lacks
them. Descriptors from edge terminals carry no pixels, so they never add one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facekeeper import config, errors, template_update
from facekeeper.bundle import Bundle, Licensing, load_trusted_bundle
from facekeeper.bundle.license import LicenseStatus
from facekeeper.config import Settings
from facekeeper.contract import operation
from facekeeper.db import migrate
from facekeeper.engine import Engine, Face, pipeline
from facekeeper.engine.core import embedder_class
from facekeeper.errors import AuditError, ConfigError, FacekeeperError, GalleryError, InvalidInput, ModelMismatch
from facekeeper.federation.calibrate import SiteCalibration
from facekeeper.federation.modes import site_modes
from facekeeper.fusion import FACENET_MODEL_ID, FusionCalibration
from facekeeper.gallery.gallery import Candidate, Gallery, SubjectInfo
from facekeeper.gallery.keys import DeploymentKey, load_key, write_key_file
from facekeeper.gate.decision import (
    DELIVERED,
    MAX_GATE_FRAMES,
    GateDecision,
    Grant,
    Outcome,
    Via,
    door_lock,
    send_grant,
    vote,
    within_passback,
)
from facekeeper.liveness.core import Liveness, LivenessChallenge, LivenessResult
from facekeeper.liveness.summary import outcomes as liveness_outcomes
from facekeeper.matching import CalibrationTable, Decision, decide, per_comparison_fmr, refused, similarity
from facekeeper.privacy import (
    Actor,
    Consent,
    ConsentForm,
    Privacy,
    SweepReport,
    WithdrawResult,
    compliance,
    coverage,
    export,
)
from facekeeper.privacy.audit import ChainReport
from facekeeper.privacy.core import Operation
from facekeeper.privacy.coverage import CoverageReport
from facekeeper.privacy.credentials import CredentialInfo, Issued
from facekeeper.privacy.overview import SubjectsOverview, subjects_overview
from facekeeper.privacy.policy import fmr_bucket, may, require_notice
from facekeeper.privacy.probes import admit_descriptor, note_answer
from facekeeper.privacy.schema import DAY, Clock, system_clock
from facekeeper.provenance import calibration_status

ImageSource = str | Path | bytes
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}  # what engine.image decodes


@dataclass(frozen=True)
class EnrollResult:
    subject_id: str
    pseudonym: str
    templates_added: int
    quality: list[dict[str, float | str]]


NO_FUSION = ("accurate mode is not in the signed model bundle (no fusion calibration): decided in fast mode;"
             " the vendor must re-sign the bundle")
EDGE_FAST = "an edge terminal sends a dlib descriptor only: decided in fast mode"
NO_SIDE = ("the subject has no template of accurate mode's second model (enrolled for a fast purpose, or before"
           " the model changed): decided in fast mode")


def other_side_models(signed: Sequence[str], configured: Sequence[str]) -> str:
    """The note of a deployment whose ``[engine] side_models`` are not the signed fusion's (a settings file
    written under an older bundle keeps the side model it was written with)."""
    return (f"the signed bundle fuses dlib with {', '.join(signed)}, but [engine] side_models names"
            f" {', '.join(configured)}: decided in fast mode; set side_models = {list(signed)} and let templates"
            " follow (docs/accuracy.md, 'Moving to a new model without photos')")


@dataclass(frozen=True)
class Probe:
    """A probe's descriptors: dlib's always, each side model's (by id) in accurate mode; ``source`` is the photo
    they came from (None for an edge descriptor), held only for the call, for a template update."""

    dlib: np.ndarray
    side: dict[str, np.ndarray] = field(default_factory=dict)
    source: ImageSource | None = field(default=None, repr=False)
    faces: int = 1  # faces found in the photo (the one ``face_choice`` picked was described)


IDENTIFY_BEYOND = {  # no rates in these words: FPIR / per-comparison FMR would tell a device how many were searched
    "extrapolated": "this gallery needs a per-comparison FMR below the measured table: the threshold is extrapolated"
                    " from the impostor tail (generalized Pareto fit), at the strict end of its 95% interval",
    "beyond": "this gallery needs a per-comparison FMR below the measured table, and this purpose does not decide"
              " beyond it (or the table has no tail fit): answered unknown; a 1:1 check against a claimed identity"
              " decides at a measured rate",
}
SCORE_ROLES = frozenset({"admin", "operator", "auditor"})  # shown scores; every other role gets a Verdict


@dataclass(frozen=True)
class Verdict:
    """A decision without its score: what a device is told.

    A score is an oracle. Exact distances let one device key rebuild every enrolled template from 129
    probes (issue 17), and even coarse ones can be averaged; a gate needs only the decision.
    """

    match: bool
    mode: str
    target_fmr: float
    calibration: str = "measured"  # not a score: whether the threshold was measured, extrapolated or refused
    calibration_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"match": self.match, "mode": self.mode, "target_fmr": self.target_fmr,
                "calibration": self.calibration, "calibration_note": self.calibration_note}


def shown_to(role: str, decision: Decision | Verdict) -> Decision | Verdict:
    """``decision`` as ``role`` may see it: quantised scores for the roles that see scores, else the verdict."""
    if isinstance(decision, Verdict):
        return decision
    if role in SCORE_ROLES:
        return decision.shown()
    return Verdict(decision.match, decision.mode, decision.target_fmr, decision.calibration,
                   decision.calibration_note)


@dataclass(frozen=True)
class VerifyResult:
    decision: Decision | Verdict  # a Verdict, without any score, in a device's view
    against: str  # "image" or "subject"
    note: str | None = None  # why the decision's mode is not the purpose's
    templates_added: tuple[str, ...] = ()  # models whose template this match added (admin/operator view only)
    faces_in_photo: int = 1  # faces in the probe photo; more than one: ``face_choice`` picked (admin/operator)

    def view(self, role: str) -> VerifyResult:
        """What ``role`` is shown (``shown_to``); every result leaves the facade through this."""
        scores = role in SCORE_ROLES
        return dataclasses.replace(self, decision=shown_to(role, self.decision),
                                   templates_added=self.templates_added if scores else (),
                                   faces_in_photo=self.faces_in_photo if scores else 1)

    def to_dict(self) -> dict[str, Any]:
        out = {"against": self.against, **self.decision.to_dict(), "note": self.note}
        return out if isinstance(self.decision, Verdict) else {**out, "templates_added": list(self.templates_added),
                                                               "faces_in_photo": self.faces_in_photo}


@dataclass(frozen=True)
class IdentifyCandidate:
    subject_id: str
    name: str | None
    pseudonym: str | None  # None in a device's view, as the name
    decision: Decision | Verdict

    def to_dict(self) -> dict[str, Any]:
        if isinstance(self.decision, Verdict):
            return {"subject_id": self.subject_id}
        return {"subject_id": self.subject_id, "name": self.name, "pseudonym": self.pseudonym,
                **self.decision.to_dict()}


@dataclass(frozen=True)
class IdentifyResult:
    """``match`` is the identified subject, or None: "unknown" is an answer, not a failure.

    Admins and operators also get the ``candidates`` that came closest (a test page's view), scores
    quantised. A device gets the matched subject's id alone: no candidates, names, scores, nor how many
    people were searched (``scores`` is False and those fields are empty).
    """

    match: IdentifyCandidate | None
    candidates: list[IdentifyCandidate]
    searched_subjects: int | None
    target_fpir: float
    target_fmr: float | None = 0.0  # per comparison: target_fpir / searched_subjects
    mode: str = "fast"  # the purpose's mode as run; each candidate's decision states its own
    note: str | None = None
    scores: bool = True
    calibration: str = "measured"  # the deciding candidate's: measured, extrapolated or beyond (refused)
    calibration_note: str | None = None  # in words without numbers: a device must not learn how many were searched
    templates_added: tuple[str, ...] = ()  # models whose template the match added (admin/operator view only)
    faces_in_photo: int = 1  # faces in the probe photo; more than one: ``face_choice`` picked (admin/operator)

    def view(self, role: str) -> IdentifyResult:
        """What ``role`` is shown; every result leaves the facade through this."""
        if role in SCORE_ROLES:
            shown = [dataclasses.replace(c, decision=shown_to(role, c.decision)) for c in self.candidates]
            return dataclasses.replace(self, match=shown[0] if self.match is not None else None, candidates=shown)
        match = (None if self.match is None
                 else IdentifyCandidate(self.match.subject_id, None, None, shown_to(role, self.match.decision)))
        return IdentifyResult(match, [], None, self.target_fpir, None, self.mode, self.note, scores=False,
                              calibration=self.calibration, calibration_note=self.calibration_note)

    def to_dict(self) -> dict[str, Any]:
        found = {"match": self.match.to_dict() if self.match else None, "unknown": self.match is None,
                 "mode": self.mode, "target_fpir": self.target_fpir, "note": self.note,
                 "calibration": self.calibration, "calibration_note": self.calibration_note}
        if not self.scores:
            return found
        return {**found, "searched_subjects": self.searched_subjects, "target_fmr": self.target_fmr,
                "candidates": [c.to_dict() for c in self.candidates], "templates_added": list(self.templates_added),
                "faces_in_photo": self.faces_in_photo}


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


def default_actor() -> Actor:
    """The local operator: the OS user, as admin (whoever runs the CLI already holds the files and keys)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "local"
    return Actor(user or "local", "admin")


class Service:
    def __init__(self, settings: Settings, key: DeploymentKey, gallery: Gallery,
                 engine: Engine | None = None, bundle: Bundle | None = None, *,
                 clock: Clock | None = None, actor: Actor | None = None) -> None:
        self.settings = settings
        self.gallery = gallery
        self.engine = engine or Engine(settings.engine, settings.quality, settings.limits)
        self._key = key
        self._table: CalibrationTable | None = None
        self.bundle = bundle or load_trusted_bundle()  # refuses to start on unsigned models or thresholds
        self.license = Licensing(settings.data_dir, settings.deployment_id, gallery.store)
        self.clock = clock or system_clock
        self.actor = actor or default_actor()
        self.privacy = Privacy(settings, key, gallery, self.clock)
        self._calibration: SiteCalibration | None = None
        self._liveness_state: Liveness | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def init(cls, data_dir: Path, key_dir: Path | None = None, *, clock: Clock | None = None,
             database_url: str | None = None, keystore_url: str | None = None, index_backend: str | None = None,
             **engine_overrides: Any) -> Service:
        """Create a deployment: settings, deployment key (0600, outside the data dir) and empty gallery.

        With ``database_url`` the gallery lives in PostgreSQL, migrated to the current schema first;
        ``keystore_url`` puts subject keys in a (preferably other) PostgreSQL database too.
        """
        if (data_dir / config.CONFIG_NAME).exists():
            raise ConfigError(f"a deployment already exists at {data_dir}")
        bundle = load_trusted_bundle()
        settings = Settings(data_dir=data_dir, key_dir=Path("."))
        settings.key_dir = key_dir or config.default_key_dir(settings.deployment_id)
        for name, value in engine_overrides.items():
            if value is not None:
                setattr(settings.engine, name, value)
        if database_url:
            settings.gallery.backend, settings.gallery.url = "postgres", database_url
        if keystore_url:
            settings.gallery.keystore_url = keystore_url
        if index_backend:
            settings.index.backend = index_backend
        config.validate(settings)
        databases = {u for u in (settings.database_url, settings.keystore_location("keystore.db"))
                     if isinstance(u, str) and u}  # a key directory file needs no migration
        for url in databases:
            migrate.upgrade(url)
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
        return cls(settings, key, gallery, bundle=bundle, clock=clock)

    @classmethod
    def open(cls, data_dir: Path, *, engine: Engine | None = None, clock: Clock | None = None,
             **engine_overrides: Any) -> Service:
        settings = config.load(data_dir)
        for name, value in engine_overrides.items():
            if value is not None:
                setattr(settings.engine, name, value)
        config.validate(settings)
        key = load_key(settings.key_path)
        return cls(settings, key, Gallery.open(settings, key), engine, clock=clock)

    @classmethod
    def move_to_postgres(cls, data_dir: Path, url: str, *, keystore_url: str | None = None,
                         index_backend: str | None = None) -> dict[str, Any]:
        """Move a SQLite deployment into PostgreSQL (``facekeeper migrate-store``); the file is left as it was.

        Rows are copied sealed (``db.move``); then counts are compared, the audit chain is verified on the
        target and must end where the file's does, and only then do the settings point at PostgreSQL.
        """
        from facekeeper.db import move

        settings = config.load(data_dir)
        if settings.gallery.backend != "sqlite":
            raise ConfigError("this deployment is not on SQLite: nothing to move")
        key = load_key(settings.key_path)
        source = cls.open(data_dir)
        try:
            before = source.privacy.audit.verify()
            if not before.ok:
                raise AuditError("the audit chain of the SQLite file does not verify: fix that before moving")
            head = source.privacy.audit.head()
            subjects = source.gallery.store.subject_count()
        finally:
            source.close()
        report = move.copy_site(settings.gallery_path, url, key_dir=settings.key_dir, keystore_url=keystore_url)
        differ = move.verify_counts(settings.gallery_path, url)
        if differ:
            raise GalleryError(f"row counts differ after the copy: {differ}; the deployment stays on SQLite")
        moved = dataclasses.replace(
            settings,
            gallery=dataclasses.replace(settings.gallery, backend="postgres", url=url,
                                        keystore_url=keystore_url or settings.gallery.keystore_url),
            index=dataclasses.replace(settings.index, backend=index_backend or settings.index.backend))
        config.validate(moved)
        target = cls(moved, key, Gallery.open(moved, key))
        try:
            after = target.privacy.audit.verify()
            if not after.ok or target.privacy.audit.head() != head:
                raise AuditError("the audit chain does not verify in PostgreSQL after the copy; the deployment"
                                 " stays on SQLite")
            indexed = target.gallery.rebuild_index() if target.gallery.vectors_in_database else None
            moved.save()
            target.privacy.audit.record(Actor("migrate-store", "admin"), "store.move", "ok", at=time.time(),
                                        detail={"to": "postgres", "subjects": subjects,
                                                "keys": "postgres" if keystore_url else "key-dir"})
        finally:
            target.close()
        return {"copied": report.copied, "keys_moved": report.keys_moved, "audit_entries": head[0],
                "subjects": subjects, "vectors_indexed": indexed, "left_behind": str(settings.gallery_path)}

    def close(self) -> None:
        self.privacy.close()
        self.gallery.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def table(self) -> CalibrationTable:
        adopted = self.calibration.adopted(self.engine.model_id)  # the site's own table, once adopted
        if adopted is not None:
            return adopted
        if self._table is None:
            self._table = self.bundle.table_for(self.engine.model_id)
        return self._table

    @property
    def calibration(self) -> SiteCalibration:
        """The site's own thresholds: measure, adopt, revert (``facekeeper.federation.calibrate``)."""
        if self._calibration is None:
            self._calibration = SiteCalibration(self.settings, self._key, self.gallery, self.privacy, self.bundle,
                                                site_modes(self.engine.model_id, self.bundle, self.gallery))
        return self._calibration

    @property
    def fusion(self) -> FusionCalibration | None:
        """Accurate mode's signed calibration, or None when the bundle does not carry one for the engine's
        side models (``[engine] side_models``)."""
        fusion = self.bundle.fusion
        return fusion if fusion is not None and list(fusion.side_models) == self.engine.settings.side_models else None

    def _accurate(self, op: Operation) -> bool:
        """Whether this operation runs in accurate mode: its purpose asks for it and the bundle signs it."""
        assert op.purpose_settings is not None
        return op.purpose_settings.mode == "accurate" and self.fusion is not None

    def _note(self, op: Operation) -> str | None:
        assert op.purpose_settings is not None
        if op.purpose_settings.mode != "accurate" or self.fusion is not None:
            return None
        signed = self.bundle.fusion
        return NO_FUSION if signed is None else other_side_models(signed.side_models, self.engine.settings.side_models)

    # -- operations -----------------------------------------------------------------------------
    @operation("detect", cost="photo")
    def detect(self, image: ImageSource, landmarks: int = 68, *, actor: Actor | None = None) -> list[dict[str, Any]]:
        """Faces in a photo: boxes, landmarks and quality. Nothing is stored."""
        with self.privacy.operation(actor, "detect"):
            rgb = self.engine.decode(image)
            return [face_record(f) for f in self.engine.faces(rgb, landmarks)]

    @operation("enroll", purpose="default", cost="photo")
    def enroll(self, images: Sequence[ImageSource], subject_id: str, name: str | None = None, *,
               purpose: str | None = None, actor: Actor | None = None,
               consent: ConsentForm | None = None) -> EnrollResult:
        """Enroll one or more photos of one person for a purpose. All photos must pass, or nothing is stored.

        The person needs a live consent for the purpose: recorded beforehand (``grant_consent``) or given
        here as ``consent`` (collected on the spot), which is recorded first. Nothing is decoded before
        the consent check passes, and the consent is checked again in the transaction that stores.
        """
        if not images:
            raise InvalidInput("give at least one photo to enroll")
        if consent is not None:
            self.grant_consent(subject_id, purpose, consent, actor=actor)
        with self.privacy.operation(actor, "enroll", purpose, operation="enroll") as op:
            pseudonym = self.privacy.prepare_enroll(op, subject_id)
            self._require("enroll", new_subjects=0 if self.gallery.find(subject_id) else 1)
            described = self.engine.describe(images, enrollment=True, accurate=self._accurate(op))
            pseudonym = self._store_descriptors(op, subject_id, pseudonym, [d.dlib for d in described],
                                                [d.side for d in described], name)
        self.privacy.audit.anchor()
        return EnrollResult(subject_id, pseudonym, len(described), [d.face.quality.as_dict() for d in described])

    def _store_descriptors(self, op: Operation, subject_id: str, pseudonym: str, dlib: Sequence[np.ndarray],
                           side_vectors: Sequence[dict[str, np.ndarray]], name: str | None = None) -> str:
        """Enrollment's descriptor-level core, shared by ``enroll`` and the bulk path: one transaction that
        re-checks consent, stores the protected templates (each side model's too when every photo has one)
        and audits. Returns the subject's pseudonym."""
        models = set.intersection(*(set(v) for v in side_vectors)) if side_vectors else set()
        side = {m: np.stack([v[m] for v in side_vectors]) for m in sorted(models)} or None
        return self.gallery.enroll(subject_id, np.stack(dlib), self.engine.model_id, name, pseudonym=pseudonym,
                                   within=self.privacy.enroll_hook(op), side=side)

    @operation("enroll", purpose="default", cost="photo", audit="per-subject")
    def enroll_dir(self, root: Path, progress: Callable[[int, int], None] | None = None,
                   workers: int | None = None, *, purpose: str | None = None, actor: Actor | None = None,
                   consent: ConsentForm | None = None, cluster: str | None = None) -> BulkSummary:
        """Enroll a folder with one sub-folder per person (the folder name is the subject id).

        Each photo is judged on its own: a bad photo is skipped with its reason, the others enroll.
        Photos are prepared and embedded in batches on ``workers`` processes; each person is one
        transaction, so an interrupted run leaves whole subjects or none. A person without a
        live consent for the purpose is skipped (``consent-required``) before any photo of theirs is read,
        unless ``consent`` records the same form for everyone in the folder first.

        ``cluster`` (a Ray address, or ``local`` for a one-machine head on 127.0.0.1) prepares and embeds
        the photos on the cluster's workers instead; consent checks, storage and audit stay here.
        """
        if not root.is_dir():
            raise InvalidInput(f"{root} is not a folder")
        # by name: the order Path's comparison gives within one folder, at a tenth of its cost (3,040 photos)
        people = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)
        jobs = [(person.name, sorted((f for f in person.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES),
                                     key=lambda f: f.name)) for person in people]
        listed = min(workers or pipeline.default_workers(self.engine.settings), sum(len(f) for _, f in jobs))
        # the workers start (models loaded, no photo) while consent is checked, and a thread makes what storing
        # needs (the embedder's id, the rotation templates are sealed with): start-up is most of a small
        # folder's time, and consent's writes mostly wait for the disk
        storing = threading.Thread(target=lambda: self.gallery.transform(
            self.engine.model_id, embedder_class(self.engine.settings).dim), name="facekeeper-storing")
        storing.start()
        with contextlib.ExitStack() as stack:
            stack.callback(storing.join)
            pool = (stack.enter_context(pipeline.WorkerPool(self.engine, listed, embed=True))
                    if listed > 1 and not cluster else None)
            return self._enroll_listed(jobs, progress, workers, pool, purpose, actor, consent, cluster)

    def _enroll_listed(self, jobs: list[tuple[str, list[Path]]], progress: Callable[[int, int], None] | None,
                       workers: int | None, pool: pipeline.WorkerPool | None, purpose: str | None, actor: Actor,
                       consent: ConsentForm | None, cluster: str | None) -> BulkSummary:
        summary = BulkSummary()
        jobs, accurate = self._consented_jobs(jobs, purpose, actor, consent, summary)
        self._require("enroll", new_subjects=sum(1 for s, files in jobs if files and self.gallery.find(s) is None))
        total = sum(len(files) for _, files in jobs)
        owner = {f: subject_id for subject_id, files in jobs for f in files}
        made: dict[str, list[tuple[np.ndarray, np.ndarray | None]]] = {}  # descriptors the workers made
        ready: list[str] = []  # subjects whose photos are all prepared, in order
        remaining = {subject_id: len(files) for subject_id, files in jobs}
        photos = [f for _, files in jobs for f in files]
        if cluster:
            from facekeeper.cluster import pipeline as cluster_pipeline
            from facekeeper.cluster.runtime import connect

            connect(None if cluster == "local" else cluster, state_dir=self.settings.key_dir / "ray")
            prepared = cluster_pipeline.prepare(self.engine, photos, workers=workers, accurate=accurate)
        else:
            prepared = pipeline.prepare(self.engine, photos, workers=workers, accurate=accurate, embed=True, pool=pool)
        for done, item in enumerate(prepared, start=1):
            subject_id = owner[item.path]
            if item.error is not None:
                summary.skipped.append((f"{subject_id}/{item.path.name}", item.error.code, item.error.message))
            else:
                assert item.descriptor is not None
                made.setdefault(subject_id, []).append((item.descriptor, item.side_descriptors))
            remaining[subject_id] -= 1
            if remaining[subject_id] == 0 and subject_id in made:
                ready.append(subject_id)
            if progress:
                progress(done, total)
            if sum(len(made[s]) for s in ready) >= self.engine.settings.batch_size or done == total:
                self._store_prepared(ready, made, summary, purpose, actor)
                ready = []
        return summary

    def _consented_jobs(self, jobs: list[tuple[str, list[Path]]], purpose: str | None, actor: Actor,
                        consent: ConsentForm | None,
                        summary: BulkSummary) -> tuple[list[tuple[str, list[Path]]], bool]:
        """The people who may be enrolled for the purpose (the others are reported as skipped, unread), and
        whether the purpose runs in accurate mode."""
        with self.privacy.operation(actor, "enroll", purpose, operation="enroll") as op:
            assert op.purpose is not None
            policy_purpose = op.purpose
            require_notice(self.settings, policy_purpose)
            accurate = self._accurate(op)
            op.audited = True  # each person's enrollment is audited on its own
        kept = []
        with self.privacy.audit.anchoring_once():  # each consent its own transaction and entry, one anchor
            for subject_id, files in jobs:
                if not files:
                    continue
                try:
                    if consent is not None:
                        self.grant_consent(subject_id, policy_purpose, consent, actor=actor)
                    self.privacy.ledger.require_live(self.privacy.registry.find(subject_id), policy_purpose,
                                                     self.clock())
                except FacekeeperError as exc:
                    summary.skipped.append((f"{subject_id}/", exc.code, exc.message))
                    continue
                kept.append((subject_id, files))
        return kept, accurate

    def _store_prepared(self, subjects: list[str], made: dict[str, list[tuple[np.ndarray, dict[str, np.ndarray]]]],
                        summary: BulkSummary, purpose: str | None, actor: Actor) -> None:
        """Store each person's descriptors (and the side models', in accurate mode) in a transaction of its own, then
        anchor the audit chain once for the group."""
        if not subjects:
            return
        for subject_id in subjects:
            rows = made.pop(subject_id)
            try:
                with self.privacy.operation(actor, "enroll", purpose, operation="enroll") as op:
                    pseudonym = self.privacy.prepare_enroll(op, subject_id)
                    self._store_descriptors(op, subject_id, pseudonym, [d for d, _ in rows], [f for _, f in rows])
                summary.enrolled[subject_id] = len(rows)
            except FacekeeperError as exc:  # e.g. consent withdrawn while the photos were prepared
                summary.skipped.append((f"{subject_id}/", exc.code, exc.message))
        self.privacy.audit.anchor()

    @operation("verify", purpose="default", cost="photo")
    def verify(self, probe: ImageSource, reference: ImageSource | None = None, *,
               subject_id: str | None = None, fmr: float | None = None, purpose: str | None = None,
               actor: Actor | None = None, liveness_session: str | None = None) -> VerifyResult:
        """1:1. Against another image, or against an enrolled subject (its best template per model).

        Against a subject, the subject needs a live consent for the purpose, checked before the probe is
        even decoded. The FMR defaults to the purpose's own (e.g. stricter for payment), then [match]; the
        mode is the purpose's.
        """
        if (reference is None) == (subject_id is None):
            raise InvalidInput("verify needs exactly one of: a second image, or a subject id")
        with self.privacy.operation(actor, "verify", purpose, operation="verify") as op:
            self._require("verify")
            fmr = self._verify_fmr(op, fmr)
            pseudonym = None if subject_id is None else self._matchable_subject(op, subject_id)
            accurate = self._accurate(op)
            probe_vec = self._liveness_gate(op, liveness_session, pseudonym, lambda: self._probe(probe, accurate))
            if reference is not None:
                ref = self._probe(reference, accurate)
                distance = float(np.linalg.norm(probe_vec.dlib - ref.dlib))
                if not probe_vec.side or not ref.side or self.fusion is None:
                    result = VerifyResult(decide(self.table, distance, fmr), "image", self._note(op))
                else:
                    sides = [float(self.fusion.side_distances(m, probe_vec.side[m], ref.side[m][None])[0])
                             for m in self.fusion.side_models]
                    result = VerifyResult(self._fused(self.fusion, distance, sides, fmr), "image")
                result = dataclasses.replace(result, faces_in_photo=probe_vec.faces)
                return self._verified(op, None, result).view(op.actor.role)
            assert pseudonym is not None
            result = self._verified(op, pseudonym, self._against_subject(probe_vec, pseudonym, fmr, self._note(op)))
            assert isinstance(result.decision, Decision)
            added = self._update_templates(op, probe_vec, pseudonym, result.decision)
            result = dataclasses.replace(result, templates_added=added, faces_in_photo=probe_vec.faces)
            return result.view(op.actor.role)

    @operation("verify", purpose="default")
    def verify_descriptor(self, descriptor: np.ndarray, subject_id: str, *, model_id: str | None = None,
                          fmr: float | None = None, purpose: str | None = None,
                          actor: Actor | None = None) -> VerifyResult:
        """1:1 against an enrolled subject for a descriptor made elsewhere: an edge terminal that does not
        send photos (``model_id`` names the model that made it; a different one is ``ModelMismatch``).
        Always fast: the terminal sends a dlib descriptor only."""
        with self.privacy.operation(actor, "verify", purpose, operation="verify") as op:
            self._require("verify")
            Liveness.refuse_edge(op)
            fmr = self._verify_fmr(op, fmr)
            probe_vec = self._outside_descriptor(op, descriptor, model_id)
            try:
                pseudonym = self._matchable_subject(op, subject_id)
            except errors.UnknownSubject:
                note_answer(self.settings.deployment_id, op.actor, op.now, unknown=True)  # a gate enumerating ids
                raise
            note = EDGE_FAST if self._accurate(op) else self._note(op)
            result = self._verified(op, pseudonym, self._against_subject(Probe(probe_vec), pseudonym, fmr, note))
            note_answer(self.settings.deployment_id, op.actor, op.now, unknown=not result.decision.match)
            return result.view(op.actor.role)

    def _verify_fmr(self, op: Operation, fmr: float | None) -> float:
        assert op.purpose_settings is not None
        return fmr or op.purpose_settings.verify_fmr or self.settings.match.verify_fmr

    def _fused(self, fusion: FusionCalibration, dlib_distance: float, side_distances: Sequence[float],
               fmr: float) -> Decision:
        score = float(fusion.score(dlib_distance, *side_distances))
        table = self.calibration.adopted(fusion.table.model_id) or fusion.table  # the site's own, once adopted
        return decide(table, score, fmr, mode="accurate", shown_similarity=similarity(dlib_distance))

    def _protected_side(self, fusion: FusionCalibration,
                        probe: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Each side model's probe and FaceNet's reference centre, rotated into the space its stored templates
        live in."""
        out = {}
        for m in fusion.side_models:
            centre = None if fusion.centre is None or m != FACENET_MODEL_ID else self.gallery.protect(fusion.centre, m)
            out[m] = (self.gallery.protect(probe[m], m), centre)
        return out

    def _side_distance(self, fusion: FusionCalibration, protected: dict[str, tuple[np.ndarray, np.ndarray | None]],
                       pseudonym: str) -> list[float] | None:
        """The subject's best distance to the protected probe per side model; None when it lacks any of them."""
        out = []
        for m in fusion.side_models:
            stored = self.gallery.templates(pseudonym, m)
            if len(stored) == 0:
                return None
            out.append(float(fusion.side_distances(m, protected[m][0], stored, protected[m][1]).min()))
        return out

    def _against_subject(self, probe: Probe, pseudonym: str, fmr: float, note: str | None) -> VerifyResult:
        protected = self.gallery.protect(probe.dlib, self.engine.model_id)
        stored = self.gallery.templates(pseudonym, self.engine.model_id)
        distance = float(np.linalg.norm(stored - protected, axis=1).min())
        if probe.side and self.fusion is not None:
            fn = self._side_distance(self.fusion, self._protected_side(self.fusion, probe.side), pseudonym)
            if fn is not None:
                return VerifyResult(self._fused(self.fusion, distance, fn, fmr), "subject")
            note = NO_SIDE
        return VerifyResult(decide(self.table, distance, fmr), "subject", note)

    def _matchable_subject(self, op: Operation, subject_id: str) -> str:
        """The pseudonym of a subject that may be compared for the operation's purpose, before any decoding.

        To a role that cannot read consents (a device), a subject without live consent for the purpose is
        an unknown subject, in the same words: otherwise a gate learns who is enrolled for other purposes.
        The audit entry still names the subject and the true reason, so the auditor sees what happened.
        """
        pseudonym = self.gallery.resolve(subject_id)
        try:
            self.privacy.matchable(op, pseudonym)
        except errors.ConsentRequired:
            if may(op.actor.role, "consent.list"):
                raise
            masked = errors.UnknownSubject(f"no subject '{subject_id}' in this gallery: 'facekeeper subjects list'"
                                           " shows them")
            masked.audited_as = "refused:consent-required"  # the caller is told less than the auditor
            raise masked from None
        return pseudonym

    def _verified(self, op: Operation, pseudonym: str | None, result: VerifyResult) -> VerifyResult:
        assert op.purpose_settings is not None and isinstance(result.decision, Decision)
        d = refused(result.decision, op.purpose_settings.beyond_table)
        self.privacy.matched(op, pseudonym, "match" if d.match else "no-match", fmr_bucket(d.estimated_fmr),
                             {"against": result.against, "mode": d.mode, "calibration": d.calibration})
        return dataclasses.replace(result, decision=d)

    @operation("identify", purpose="default", cost="photo")
    def identify(self, probe: ImageSource, k: int | None = None, fpir: float | None = None, *,
                 purpose: str | None = None, actor: Actor | None = None,
                 liveness_session: str | None = None) -> IdentifyResult:
        """1:N. Answers with the best subject only when it is within the threshold for the stated FPIR.

        Only subjects with a live consent for the purpose are searched (and counted for the FPIR). In
        accurate mode the dlib index proposes ``rerank_k`` subjects and the fused score re-ranks them.
        """
        with self.privacy.operation(actor, "identify", purpose, operation="identify") as op:
            self._require("identify")
            probe_vec = self._liveness_gate(op, liveness_session, None, lambda: self._probe(probe, self._accurate(op)))
            return self._identify(op, probe_vec, k, fpir, self._note(op))

    @operation("identify", purpose="default")
    def identify_descriptor(self, descriptor: np.ndarray, k: int | None = None, fpir: float | None = None, *,
                            purpose: str | None = None, actor: Actor | None = None,
                            model_id: str | None = None) -> IdentifyResult:
        """1:N for a descriptor made elsewhere (an edge terminal, a benchmark); ``model_id``, when given, must
        be this engine's. Always fast, as ``verify_descriptor``."""
        with self.privacy.operation(actor, "identify", purpose, operation="identify") as op:
            self._require("identify")
            Liveness.refuse_edge(op)
            note = EDGE_FAST if self._accurate(op) else self._note(op)
            result = self._identify(op, Probe(self._outside_descriptor(op, descriptor, model_id)), k, fpir, note)
            note_answer(self.settings.deployment_id, op.actor, op.now, unknown=result.match is None)
            return result

    @operation("gate.decide", purpose="default")
    def gate_decide(self, descriptors: Sequence[np.ndarray], door: str, *, present_for: float,
                    open_door: Callable[[Grant], str] | None = None, purpose: str | None = None,
                    actor: Actor | None = None) -> GateDecision:
        """One door decision for one pass in front of a gate camera, from the descriptors of its best frames.

        Each frame is identified among the people consented for the purpose at ``[gate] fpir``; the frames
        vote (a tie is unknown); then the door's rules: the pass lasted ``min_presence_seconds``, and the
        person was not let through this door within ``anti_passback_seconds``. Only an open calls
        ``open_door`` (the door output, run in the caller's process), whose answer the one audit entry
        records. The gate made the descriptors with this engine, so the call is light.
        """
        with self.privacy.operation(actor, "gate.decide", purpose, operation="identify") as op:
            self._require("identify")
            rules = self._door_rules(door)
            if not 1 <= len(descriptors) <= MAX_GATE_FRAMES:
                raise InvalidInput(f"a gate decision takes 1 to {MAX_GATE_FRAMES} descriptors")
            vectors = [self._outside_descriptor(op, d, None) for d in descriptors]
            assert op.purpose is not None
            fpir = self.settings.gate.fpir
            allowed = self.privacy.allowed(op.purpose, op.now)
            fmr = per_comparison_fmr(fpir, len(allowed))
            everyone = len(allowed) == self.gallery.store.subject_count()
            assert op.purpose_settings is not None
            beyond = op.purpose_settings.beyond_table  # past the measured table: as identify decides
            answers: list[str | None] = []
            for vec in vectors:
                hits = (self.gallery.search(vec, self.engine.model_id, 1, None if everyone else allowed)
                        if allowed else [])
                answers.append(hits[0].pseudonym if hits and refused(decide(self.table, hits[0].distance, fmr),
                                                                     beyond).match else None)
            pseudonym, votes = vote(answers)
            note_answer(self.settings.deployment_id, op.actor, op.now, unknown=pseudonym is None)
            subject_id = self.gallery.identity(pseudonym)[0] if pseudonym is not None else None
            return self._door_decision(op, door, rules, pseudonym, subject_id, "face", fpir, open_door,
                                       {"frames": len(vectors), "votes": votes},
                                       brief=present_for < rules.min_presence_seconds)

    @operation("gate.decide", purpose="default")
    def gate_credential(self, door: str, *, pin: str | None = None, subject_id: str | None = None,
                        token: str | None = None, open_door: Callable[[Grant], str] | None = None,
                        purpose: str | None = None, actor: Actor | None = None) -> GateDecision:
        """The same door through the same rules with a PIN or QR token: nobody has to use their face.

        The credential is checked as ``check_credential`` checks it (a wrong PIN counts towards its lock);
        anti-passback spans both ways in, so a face and then a PIN do not let one person through twice.
        """
        with self.privacy.operation(actor, "gate.decide", purpose, needs_purpose=True) as op:
            assert op.purpose is not None
            rules = self._door_rules(door)
            claimed = self.privacy.registry.find(subject_id) if subject_id is not None else None
            if subject_id is not None and claimed is None:
                claimed = "s_unknown"  # the same work and answer as a wrong PIN
            info = self.privacy.credentials.check(op.purpose, op.now, token=token, pseudonym=claimed, pin=pin)
            op.subject = info.pseudonym
            sid = self.privacy.registry.subject_id(info.pseudonym)
            if sid is None:
                raise errors.CredentialError("credential not accepted")
            via: Via = "pin" if info.kind == "pin" else "token"
            return self._door_decision(op, door, rules, info.pseudonym, sid, via, None, open_door,
                                       {"credential": info.id}, brief=False)

    def _door_rules(self, door: str) -> config.DoorSettings:
        rules = self.settings.doors.get(door)
        if rules is None:
            raise InvalidInput(f"no door {door!r}: declare it as [doors.{door}] in {config.CONFIG_NAME}")
        return rules

    def _door_decision(self, op: Operation, door: str, rules: config.DoorSettings, pseudonym: str | None,
                       subject_id: str | None, via: Via, fpir: float | None,
                       open_door: Callable[[Grant], str] | None, detail: dict[str, Any], *,
                       brief: bool) -> GateDecision:
        """The door rules that need state, the output, and the decision's one audit entry.

        Anti-passback reads the audit chain itself: it already holds every door decision (door, pseudonym,
        time, the controller's answer), so no second record of people's movements is kept, and the rule
        holds across processes and restarts. Decisions for one door take turns within this process.
        """
        with door_lock(self.settings.deployment_id, door):
            outcome: Outcome = "unknown" if pseudonym is None else "too-brief" if brief else "open"
            if (outcome == "open" and pseudonym is not None
                    and self._recently_through(door, pseudonym, op.now, rules.anti_passback_seconds)):
                outcome = "passback"
            answer = "not-sent"
            if outcome == "open":
                assert subject_id is not None
                answer = send_grant(open_door, Grant(door, subject_id, via, op.now))
            with self.gallery.store.transaction() as db:
                if outcome == "open" and op.purpose is not None and pseudonym is not None:
                    self.privacy._touch(db, pseudonym, op.purpose, op.now)  # a pass renews the idle clock
                self.privacy.append(db, op, outcome, subject=pseudonym,
                                    detail={**detail, "door": door, "via": via, "fpir": fpir, "door_answer": answer})
            self.privacy.audit.anchor()
        return GateDecision(outcome, door, via, subject_id if outcome == "open" else None, answer, fpir)

    def _recently_through(self, door: str, pseudonym: str, now: float, window: float) -> bool:
        """Whether ``door`` let ``pseudonym`` through (the controller took the grant) within ``window``."""
        last = None
        for e in self.privacy.audit.entries(since=now - window, subject=pseudonym):
            if (e.action == "gate.decide" and e.outcome == "open" and e.detail.get("door") == door
                    and e.detail.get("door_answer") in DELIVERED):
                last = e.at
        return within_passback(last, now, window)

    def _identify(self, op: Operation, probe: Probe, k: int | None, fpir: float | None,
                  note: str | None) -> IdentifyResult:
        k = k or self.settings.match.top_k
        if k < 1:
            raise InvalidInput("k must be at least 1")
        fpir = fpir or self.settings.match.identify_fpir
        assert op.purpose is not None
        allowed = self.privacy.allowed(op.purpose, op.now)
        searched = len(allowed)
        fmr = per_comparison_fmr(fpir, searched)
        everyone = searched == self.gallery.store.subject_count()  # allowed ⊆ enrolled: no filter needed
        accurate = bool(probe.side) and self.fusion is not None
        first = max(k, self.settings.match.rerank_k) if accurate else k
        hits = (self.gallery.search(probe.dlib, self.engine.model_id, first, None if everyone else allowed)
                if allowed else [])
        decided = self._rerank(probe, hits, fmr) if accurate else [(c, decide(self.table, c.distance, fmr))
                                                                    for c in hits]
        assert op.purpose_settings is not None
        decided = [(c, refused(d, op.purpose_settings.beyond_table)) for c, d in decided]
        if accurate and any(d.mode == "fast" for _, d in decided):
            note = NO_SIDE.replace("the subject has", "some candidates have")
        candidates = []
        for c, decision in decided[:k]:
            subject_id, name = self.gallery.identity(c.pseudonym)
            candidates.append(IdentifyCandidate(subject_id, name, c.pseudonym, decision))
        match = candidates[0] if candidates and candidates[0].decision.match else None
        best = candidates[0].decision.estimated_fmr if candidates else None
        mode = "accurate" if accurate else "fast"
        calibration = candidates[0].decision.calibration if candidates else "measured"
        self.privacy.matched(op, match.pseudonym if match else None, "match" if match else "unknown",
                             fmr_bucket(best) if best is not None else None,
                             {"searched": searched, "candidates": len(candidates), "mode": mode,
                              "calibration": calibration})
        added = () if match is None else self._update_templates(op, probe, match.pseudonym, match.decision, searched)
        return IdentifyResult(match, candidates, searched, fpir, fmr, mode, note, calibration=calibration,
                              calibration_note=IDENTIFY_BEYOND.get(calibration),
                              templates_added=added, faces_in_photo=probe.faces).view(op.actor.role)

    def _update_templates(self, op: Operation, probe: Probe, pseudonym: str | None, decision: Decision | Verdict,
                          searched: int = 1) -> tuple[str, ...]:
        """After a match: the ``[engine] side_models`` templates the subject lacks, added from the probe's photo
        (``facekeeper.template_update``); returns the models added.

        Nothing is added unless the purpose says ``on-match``, the probe is a photo, dlib matched in fast mode at
        the strict FMR (shared among the ``searched`` people of a 1:N search), the person's live consent allows
        it (checked again in the write transaction), and the photo passes enrollment's own checks (one face, the
        quality gate) and is the face that matched. One ``template.add`` audit entry per template.
        """
        ps = op.purpose_settings
        assert ps is not None and op.purpose is not None
        if ps.template_update != "on-match" or probe.source is None or pseudonym is None:
            return ()
        assert isinstance(decision, Decision)
        wanted = template_update.lacking(self.gallery.models_of(pseudonym), self.engine.settings.side_models)
        strict = (template_update.strict_match(self.table, decision, ps.template_update_fmr, searched=searched,
                                               beyond=ps.beyond_table) if wanted else None)
        if strict is None or not self.privacy.ledger.allows_template_updates(pseudonym, op.purpose, op.now):
            return ()
        try:
            (again,) = self.engine.describe([probe.source], enrollment=True, accurate=True)
            # the face that matched, found as the probe was: fast mode looks on a smaller copy than accurate mode
            (same,) = [again] if probe.side else self.engine.describe([probe.source], enrollment=True)
        except FacekeeperError:  # several faces, below the quality gate: enrollment would not keep it either
            return ()
        if float(np.linalg.norm(same.dlib - probe.dlib)) > template_update.SAME_FACE:
            return ()
        added = []
        bucket = fmr_bucket(strict.estimated_fmr)
        try:
            for model in wanted:
                hook = self.privacy.template_update_hook(op, pseudonym, model, bucket, op.action)
                if self.gallery.add_side_template(pseudonym, model, again.side[model], within=hook):
                    added.append(model)
        except (errors.ConsentRequired, errors.UnknownSubject):  # withdrawn or erased meanwhile: nothing more
            pass
        if added:
            self.privacy.audit.anchor()
        return tuple(added)

    def _rerank(self, probe: Probe, hits: list[Candidate], fmr: float) -> list[tuple[Candidate, Decision]]:
        """Accurate 1:N's second stage: each proposed subject decided by its fused score at ``fmr``.

        A subject without side-model templates is decided in fast mode at the same FMR (its decision says
        so). Passing decisions rank before failing ones, then by how rarely a stranger scores as close
        (the table's estimated FMR), accurate before fast, then by score.
        """
        assert probe.side and self.fusion is not None
        protected = self._protected_side(self.fusion, probe.side)
        out = []
        for c in hits:
            fn = self._side_distance(self.fusion, protected, c.pseudonym)
            d = (decide(self.table, c.distance, fmr) if fn is None
                 else self._fused(self.fusion, c.distance, fn, fmr))
            out.append((c, d))
        out.sort(key=lambda cd: (not cd[1].match, cd[1].estimated_fmr, cd[1].mode != "accurate", cd[1].distance))
        return out

    # -- liveness -------------------------------------------------------------------------------
    @operation("liveness.start", purpose="default")
    def liveness_start(self, subject_id: str | None = None, *, steps: int | None = None, purpose: str | None = None,
                       actor: Actor | None = None) -> LivenessChallenge:
        """Open a challenge-response liveness session: an id, a nonce and 2-3 actions to make in order.

        The terminal shows each action ``step_seconds`` apart and sends the frames within ``expires_at``;
        attempts that were not live are limited per terminal and per person (``liveness.sessions``).
        """
        with self.privacy.operation(actor, "liveness.start", purpose, needs_purpose=True) as op:
            subject = None if subject_id is None else self.gallery.find(subject_id)
            return self._liveness().start(op, subject, steps)

    @operation("liveness.submit", cost="photo")
    def liveness_submit(self, session_id: str, nonce: str, frames: Sequence[bytes] = (),
                        times: Sequence[float] = (), *, video: bytes | None = None,
                        actor: Actor | None = None) -> LivenessResult:
        """Answer a liveness session with its frames (timestamped photos, or a short video): live, spoof or
        uncertain, with the reasons and timings. Frames are measured in memory and dropped; the audit keeps
        the challenge, the decision and its reasons."""
        liveness = self._liveness()
        with self.privacy.operation(actor, "liveness.submit") as op:
            session = liveness.session(session_id)
            op.purpose, op.subject = session.purpose, session.subject
            return liveness.submit(op, session, nonce, frames, times, video)

    def _liveness(self) -> Liveness:
        if self._liveness_state is None:
            self._liveness_state = Liveness(self.gallery.store, self._key, self.engine, self.privacy)
        self._liveness_state.engine = self.engine
        return self._liveness_state

    def _liveness_gate(self, op: Operation, session_id: str | None, subject: str | None,
                       probe: Callable[[], Probe]) -> Probe:
        """The probe, once the purpose's liveness rule holds (``Liveness.gate``: a fresh live session of the
        purpose, whose frames show the probe's face, used up here)."""
        assert op.purpose_settings is not None
        if op.purpose_settings.liveness != "active":
            return probe()
        return self._liveness().gate(op, session_id, subject, probe, lambda p: p.dlib)

    @operation("subject.list")
    def subjects(self, *, actor: Actor | None = None) -> list[SubjectInfo]:
        """Enrolled subjects with their template counts (never the templates)."""
        with self.privacy.operation(actor, "subject.list"):
            return self.gallery.subjects()

    @operation("subject.list")
    def subject(self, subject_id: str, *, actor: Actor | None = None) -> SubjectInfo:
        """One enrolled subject: pseudonym, template count and dates (never a template)."""
        with self.privacy.operation(actor, "subject.list") as op:
            op.subject = self.gallery.resolve(subject_id)
            return self.gallery.subject(op.subject)

    @operation("subject.erase")
    def delete(self, subject_id: str, *, actor: Actor | None = None) -> dict[str, Any]:
        """The right to erasure: templates (key destroyed), credentials, consent evidence, the person.

        Returns the signed erasure receipt with a short summary.
        """
        receipt = self.privacy.erase(actor, subject_id)
        return {"subject_id": subject_id, "pseudonym": receipt["subject"],
                "templates_erased": receipt["erased"]["templates"], "erased_at": receipt["erased_at_epoch"],
                "receipt": receipt}

    # -- privacy operations -----------------------------------------------------------------------
    @operation("consent.grant", purpose="default")
    def grant_consent(self, subject_id: str, purpose: str | None, form: ConsentForm, *,
                      actor: Actor | None = None) -> Consent:
        """Record a person's consent for a purpose (method, evidence, expiry, guardian for a minor)."""
        return self.privacy.grant(actor, subject_id, purpose, method=form.method,
                                  evidence=form.evidence, collected_by=form.collected_by, expires_at=form.expires_at,
                                  minor=form.minor, guardian=form.guardian, age=form.age,
                                  template_updates=form.template_updates)

    @operation("consent.withdraw", purpose="default")
    def withdraw_consent(self, subject_id: str, purpose: str | None, *, actor: Actor | None = None) -> WithdrawResult:
        """Withdraw a consent for a purpose; the last one erases the face at once."""
        return self.privacy.withdraw(actor, subject_id, purpose)

    @operation("consent.list")
    def consents(self, subject_id: str, *, actor: Actor | None = None) -> list[Consent]:
        """A person's consents, live and ended, with the notice version each was given under."""
        return self.privacy.consents(actor, subject_id)

    @operation("sweep", audit="per-subject")
    def sweep(self, *, dry_run: bool = False, actor: Actor | None = None) -> SweepReport:
        """Erase what retention says is due (idempotent; concurrent sweeps take turns)."""
        return self.privacy.sweep(actor, dry_run=dry_run)

    @operation("audit.verify")
    def verify_audit(self, *, actor: Actor | None = None) -> ChainReport:
        """Recompute the keyed audit chain; a broken one names its first bad entry."""
        return self.privacy.verify_audit(actor)

    @operation("audit.export")
    def export_audit(self, since: float | None = None, *, actor: Actor | None = None) -> dict[str, Any]:
        """Audit entries since a time with the chain's status, signed for offline checking."""
        return self.privacy.export_audit(actor, since)

    @operation("subject.export")
    def export_subject(self, subject_id: str, *, actor: Actor | None = None) -> dict[str, Any]:
        """Subject access: everything held about the person, without the templates."""
        return export.subject_access(self.privacy, actor, subject_id)

    @operation("credential.issue", purpose="default")
    def issue_credential(self, subject_id: str, purpose: str | None = None, kind: str = "pin", *,
                         expires_at: float | None = None, actor: Actor | None = None) -> Issued:
        """A PIN or QR token: the way through the same purpose check without a face."""
        return self.privacy.issue_credential(actor, subject_id, purpose, kind, expires_at)

    @operation("credential.revoke")
    def revoke_credential(self, credential_id: str, *, actor: Actor | None = None) -> None:
        """Revoke an alternative credential, effective at once."""
        self.privacy.revoke_credential(actor, credential_id)

    @operation("credential.check", purpose="default")
    def check_credential(self, purpose: str | None = None, *, token: str | None = None,
                         subject_id: str | None = None, pin: str | None = None,
                         actor: Actor | None = None) -> tuple[str, CredentialInfo]:
        """The non-face way through the same purpose check: (subject id, credential) or ``CredentialError``."""
        return self.privacy.check_credential(actor, purpose, token=token, subject_id=subject_id,
                                             pin=pin)

    @operation("compliance.report")
    def compliance_report(self, *, actor: Actor | None = None) -> dict[str, Any]:
        """Per purpose: people, templates, credentials, expiring consents, the chain, a disk scan."""
        return compliance.report(self.privacy, actor)

    @operation("receipt.verify")
    def verify_receipt(self, doc: dict[str, Any], public_key: str | None = None, *,
                       actor: Actor | None = None) -> dict[str, Any]:
        """Check an erasure receipt's or audit export's signature (this deployment's key unless one is given)."""
        return self.privacy.verify_receipt(doc, public_key)

    @property
    def receipt_public_key(self) -> str:
        return self.privacy.signer.public_key

    @operation("notice.set")
    def set_notice(self, *, actor: Actor | None = None, **fields: str) -> None:
        """Fill in the privacy notice (controller, contact, retention, rights, version) and save it."""
        with self.privacy.operation(actor, "notice.set") as op:
            unknown = set(fields) - set(config.NoticeSettings.__dataclass_fields__)
            if unknown:
                raise InvalidInput(f"unknown notice field(s): {', '.join(sorted(unknown))}")
            for name, value in fields.items():
                setattr(self.settings.notice, name, value)
            self.settings.save()
            self.privacy.record(op, "ok", detail={"fields": sorted(fields)})

    @operation("license.install")
    def install_license(self, content: bytes, *, actor: Actor | None = None) -> LicenseStatus:
        """Check a license file from the vendor (signature, deployment, dates) and make it this deployment's."""
        self.license.install(content)
        return self.license.status(self.gallery.store.subject_count())

    @operation("license.status")
    def license_status(self, *, actor: Actor | None = None) -> LicenseStatus:
        """This deployment's id and its license: what the vendor needs to issue one, and what is in force."""
        return self.license.status(self.gallery.store.subject_count())

    @operation("keys.manage")
    def manage_api_key(self, change: str, apply: Callable[[], dict[str, str | None]], *,
                       actor: Actor | None = None) -> dict[str, str | None]:
        """Create or revoke an API key of this tenant through the guard: ``apply`` changes the key store (it
        sits beside the tenants, so the server owns it) and returns the key's id, role and purpose, which
        the tenant's chain records. Runs in the server process: ``apply`` never crosses to a worker."""
        if change not in ("created", "revoked"):
            raise InvalidInput("an API key change is 'created' or 'revoked'")
        with self.privacy.operation(actor, "keys.manage") as op:
            facts = apply()
            self.privacy.record(op, change, detail={k: facts.get(k) for k in ("key_id", "role", "key_purpose")})
            return facts

    @operation("subject.list")
    def subjects_overview(self, limit: int | None = None, *, actor: Actor | None = None) -> SubjectsOverview:
        """Enrolled subjects with each consent's state and the date retention erases the face, in one call.

        The console's subject list: one audited call for the page, not one consent listing per person; never
        a template, the consent evidence or a guardian's record.
        """
        with self.privacy.operation(actor, "subject.list") as op:
            return subjects_overview(self.privacy, self.gallery.subjects(), op.now, limit)

    @operation("calibration.status")
    def calibration_status(self, *, actor: Actor | None = None) -> dict[str, Any]:
        """The calibration in force and its provenance: signed tables, the site's adopted one, the last eval.

        The signed bundle's tables (model, FMR to threshold, what they were measured on, bundle version,
        signer), which table each mode decides with (the site's own once adopted), and the last
        ``facekeeper eval --deployment`` summary with its DET curve (aggregates only).
        """
        with self.privacy.operation(actor, "calibration.status"):
            return calibration_status(self.bundle, self.engine.model_id, self.calibration, self.settings.data_dir)

    @operation("templates.coverage")
    def template_coverage(self, purpose: str | None = None, limit: int | None = None, *,
                          actor: Actor | None = None) -> CoverageReport:
        """Per purpose and model, how many people hold its templates and which still lack one.

        The progress of moving to new models without photos (``[purposes.NAME] template_update``): the gallery's
        model and each ``[engine] side_models``, among the people each purpose may match (every declared
        purpose, or ``purpose``). An admin gets subject ids, an auditor pseudonyms; ``limit`` cuts each list
        (the counts stay whole). Never a template.
        """
        if limit is not None and limit < 0:
            raise InvalidInput("limit must be 0 or more")
        with self.privacy.operation(actor, "templates.coverage", purpose) as op:
            purposes = [op.purpose] if op.purpose is not None else sorted(self.settings.purposes)
            models = [self.engine.model_id, *self.engine.settings.side_models]
            found = coverage.report(self.privacy, purposes, models, op.now, limit=limit,
                                    subject_ids=may(op.actor.role, "subject.list"))
            self.privacy.record(op, "ok", detail={"purposes": len(purposes), "models": models,
                                                  "lacking": sum(m.lack for p in found.purposes for m in p.models)})
            return found

    @operation("devices.status")
    def devices_status(self, *, actor: Actor | None = None) -> dict[str, Any]:
        """The gates' last status and the liveness sessions of the last day by outcome: counts, never a face.

        Each gate's status file (frames/s, decode errors, reconnects, tracks, decisions by outcome, door
        answers, decision latency) as ``facekeeper gate status`` shows it, and the tenant's liveness
        sessions started in the last 24 hours counted by outcome.
        """
        from facekeeper.gate.runner import read_statuses  # the gate's loop and tracker: not for every service

        with self.privacy.operation(actor, "devices.status") as op:
            return {"gates": [g.to_dict() for g in read_statuses(self.settings.data_dir)],
                    "liveness": liveness_outcomes(self._liveness().sessions.store.db, op.now - DAY, op.now)}

    def _require(self, feature: str, new_subjects: int = 0) -> None:
        """Licensed operations stop here without a valid license; detect, listing and erasure never do."""
        self.license.require(feature, self.gallery.store.subject_count(), new_subjects)

    def _outside_descriptor(self, op: Operation, descriptor: np.ndarray, model_id: str | None) -> np.ndarray:
        """A descriptor this service did not make: from this engine's model, the right size, all finite, and
        a face's (``privacy.probes``), from a key that is not locked for probing. Refusals are audited by the
        guard (``refused:probe-suspicious``, ``refused:probe-lockout``)."""
        if model_id is not None and model_id != self.engine.model_id:
            raise ModelMismatch(f"the descriptor was made by model {model_id} and this service uses"
                                f" {self.engine.model_id}: run the same facekeeper release on the terminal",
                                descriptor_model=model_id, engine_model=self.engine.model_id)
        vec = np.asarray(descriptor, dtype=np.float32).ravel()
        if vec.size != self.engine.embedder.dim or not np.isfinite(vec).all():
            raise InvalidInput(f"a descriptor is {self.engine.embedder.dim} finite numbers")
        admit_descriptor(self.settings.deployment_id, op.actor, self.engine.model_id, vec, op.now)
        return vec

    def _probe(self, image: ImageSource, accurate: bool) -> Probe:
        (one,) = self.engine.describe([image], enrollment=False, accurate=accurate)
        return Probe(one.dlib, one.side, image, one.face.faces_in_photo)


class EngineCache:
    """One engine (models loaded once) per distinct engine/quality/limit settings in this process."""

    def __init__(self) -> None:
        self._engines: dict[tuple[Any, ...], Engine] = {}
        self._lock = threading.Lock()

    def warm(self, deployments: Iterable[Settings], *, photos: bool = True) -> None:
        """Load the models every deployment's engine needs now, so no request waits for them (without
        ``photos``, only the embedder, which names the model that descriptors are checked against)."""
        for settings in deployments:
            engine = self(settings)
            _models = ((engine.embedder, engine.detector, engine.landmarker(), engine.landmarker(68)) if photos
                       else (engine.embedder,))
            purposes = settings.purposes.values()
            if photos and (any(p.template_update == "on-match" for p in purposes)
                           or (any(p.mode == "accurate" for p in purposes) and self._fusion_signed())):
                # accurate-mode purposes, and those adding templates on a match: the side models, loaded before
                # requests too
                _sides = [engine.side_embedder(m) for m in settings.engine.side_models]

    @staticmethod
    def _fusion_signed() -> bool:
        return load_trusted_bundle().fusion is not None

    def __call__(self, settings: Settings) -> Engine:
        # repr: the engine settings hold a list (side_models), which cannot be a dict key as it is
        key = (repr(astuple(settings.engine)), astuple(settings.quality), astuple(settings.limits))
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._engines[key] = Engine(settings.engine, settings.quality, settings.limits)
            return engine
