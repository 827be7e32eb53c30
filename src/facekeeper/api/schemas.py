"""The JSON shapes of the API: request bodies and answers. Field names match the CLI's ``--json`` output."""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from facekeeper.api.bodies import Bounds
from facekeeper.api.keys import ApiKey
from facekeeper.errors import InvalidInput
from facekeeper.privacy.consent import MAX_CONSENT_YEARS, check_expiry


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """RFC 9457 problem details; ``code`` is the stable ``facekeeper.errors`` code (extra members may follow)."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="urn:facekeeper:problem:<code>")
    title: str
    status: int
    detail: str = Field(description="what went wrong and what to do; never an image, template, key or name")
    code: str


class Health(BaseModel):
    status: str
    version: str


# -- keys ------------------------------------------------------------------------------------------
class KeyCreate(Strict):
    role: str = Field(description="admin, operator, device or auditor")
    purpose: str | None = Field(None, description="the only purpose the key may act for (required for device)")
    label: str | None = Field(None, max_length=100, description="which gate or team: never a person's name")


class ApiKeyInfo(BaseModel):
    id: str
    tenant: str
    role: str
    purpose: str | None
    label: str | None
    created_at: float
    revoked_at: float | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyInfo:
        return cls(**key.to_dict())


class NewApiKey(BaseModel):
    key: ApiKeyInfo
    api_key: str = Field(description="shown once: store it on the client; the service keeps only a hash")


# -- images and templates --------------------------------------------------------------------------
MAX_IMAGES = 10


def purpose_field() -> Any:
    return Field(None, description="why: a declared purpose (required unless the key has its own)")


class DetectIn(Strict):
    image: bytes
    landmarks: Literal[5, 68] = Field(68, description="5 or 68 landmark points")

    @field_validator("landmarks", mode="before")
    @classmethod
    def _form_number(cls, value: Any) -> Any:
        """A multipart form sends every field as text: "5" is 5 (anything else still meets the literal)."""
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value


class EnrollIn(Strict):
    images: list[bytes] = Field(min_length=1, max_length=MAX_IMAGES, description="photos of one person")
    subject_id: str = Field(description="the operator's id for the person (not a name)")
    name: str | None = Field(None, description="display name, stored sealed")
    purpose: str | None = purpose_field()


class VerifyIn(Strict):
    image: bytes | None = Field(None, description="the probe photo (or send template)")
    template: list[float] | None = Field(None, description="edge mode: the probe's descriptor, made on the terminal")
    model_id: str | None = Field(None, description="edge mode: the model that made the descriptor")
    reference: bytes | None = Field(None, description="a second photo to compare with (or give subject_id)")
    subject_id: str | None = None
    purpose: str | None = purpose_field()
    fmr: float | None = Field(None, gt=0, lt=1, description="target false-match rate [the purpose's]")
    liveness_session: str | None = Field(None, max_length=40, description="a live liveness session's id, for a "
                                         "purpose that requires liveness (payment, withdrawal)")


class IdentifyIn(Strict):
    image: bytes | None = Field(None, description="the probe photo (or send template)")
    template: list[float] | None = Field(None, description="edge mode: the probe's descriptor, made on the terminal")
    model_id: str | None = Field(None, description="edge mode: the model that made the descriptor")
    purpose: str | None = purpose_field()
    k: int | None = Field(None, ge=1, le=50, description="candidates to return")
    fpir: float | None = Field(None, gt=0, lt=1, description="target false-positive identification rate")
    liveness_session: str | None = Field(None, max_length=40, description="a live liveness session's id, for a "
                                         "purpose that requires liveness (payment, withdrawal)")


class Box(BaseModel):
    left: int
    top: int
    right: int
    bottom: int


class Quality(BaseModel):
    """The quality gate's measures of one face (docs/quality.md)."""

    eye_distance: float = Field(description="pixels between the eye centres in the photo")
    sharpness: float = Field(description="variance of the Laplacian of the aligned chip")
    yaw: float = Field(description="how far the head is turned, 0 frontal, 1 profile")
    yaw_from: Literal["jaw", "eyes-nose"] = Field(
        description="jaw: the 68-point jaw line; eyes-nose: the 5-point estimate of a clearly frontal face")
    roll_degrees: float


class DetectedFace(BaseModel):
    box: Box
    score: float
    landmarks: list[list[float]]
    quality: Quality


class Detected(BaseModel):
    faces: list[DetectedFace]


class Enrolled(BaseModel):
    subject_id: str
    pseudonym: str
    templates_added: int
    quality: list[Quality]


# "measured": the threshold rests on measured impostor pairs; "extrapolated": on the impostor tail's fit below
# them; "beyond": below them and not extrapolated (the purpose's beyond_table, or no fit), so nobody matched
Calibration = Literal["measured", "extrapolated", "beyond"]


class DecisionOut(BaseModel):
    """A decision with its scores, for admin and operator keys: scores to 2 decimals, ``estimated_fmr`` as its
    power of ten (exact scores rebuild templates; docs/deployment.md, "What each role sees")."""

    match: bool
    mode: str  # "fast" (dlib) or "accurate" (dlib + FaceNet fused): which models decided
    distance: float
    similarity: float
    threshold: float
    target_fmr: float
    estimated_fmr: float
    within_calibration: bool  # kept for compatibility; ``calibration`` says more
    calibration: Calibration = "measured"
    calibration_note: str | None = None  # why the threshold is extrapolated, or why nobody matched


class Verified(DecisionOut):
    against: str
    note: str | None = None  # why the mode is not the purpose's (e.g. the subject has no FaceNet template)
    templates_added: list[str] = Field(default_factory=list, description="models whose template this match"
                                       " added from the photo ([purposes.NAME] template_update)")
    faces_in_photo: int = Field(1, description="faces found in the probe photo; more than one: the one"
                                " [engine] face_choice picks was used")


class DeviceVerified(BaseModel):
    """What a device key is told of 1:1: the decision, never a score."""

    model_config = ConfigDict(extra="forbid")
    match: bool
    mode: str
    target_fmr: float
    against: str
    note: str | None = None
    calibration: Calibration = "measured"
    calibration_note: str | None = None


class Candidate(DecisionOut):
    subject_id: str
    name: str | None
    pseudonym: str


class Identified(BaseModel):
    """1:N for admin and operator keys: the match and the ``candidates`` that came closest (the top k, with
    names and quantised scores: a test page's view)."""

    match: Candidate | None
    unknown: bool
    mode: str
    searched_subjects: int
    target_fpir: float
    target_fmr: float  # per comparison: target_fpir / searched_subjects
    note: str | None = None
    calibration: Calibration = "measured"  # the deciding candidate's
    calibration_note: str | None = None
    candidates: list[Candidate]
    templates_added: list[str] = Field(default_factory=list, description="models whose template the match added"
                                       " from the photo ([purposes.NAME] template_update)")
    faces_in_photo: int = Field(1, description="faces found in the probe photo; more than one: the one"
                                " [engine] face_choice picks was used")


class DeviceMatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject_id: str


class DeviceIdentified(BaseModel):
    """What a device key is told of 1:N: the matched subject's id, or ``unknown``; no score, name, candidate
    or count of who was searched."""

    model_config = ConfigDict(extra="forbid")
    match: DeviceMatch | None
    unknown: bool
    mode: str
    target_fpir: float
    note: str | None = None
    calibration: Calibration = "measured"
    calibration_note: str | None = None  # in words only: no rate that would tell how many were searched


VerifyAnswer = Verified | DeviceVerified
IdentifyAnswer = Identified | DeviceIdentified
VERIFY_ANSWER: TypeAdapter[VerifyAnswer] = TypeAdapter(VerifyAnswer)
IDENTIFY_ANSWER: TypeAdapter[IdentifyAnswer] = TypeAdapter(IdentifyAnswer)


# -- subjects --------------------------------------------------------------------------------------
class Subject(BaseModel):
    subject_id: str
    name: str | None
    pseudonym: str
    templates: int
    created_at: float
    template_dates: list[float]


class Erased(BaseModel):
    subject_id: str
    pseudonym: str
    templates_erased: int
    erased_at: float
    receipt: dict[str, Any] = Field(description="the signed erasure receipt")


# -- consents --------------------------------------------------------------------------------------
class GuardianIn(Strict):
    relationship: str
    reference: str
    name: str | None = None


def _within_years(expires_at: float | None) -> float | None:
    """Checked before the call, so a refused expiry registers nobody (the rule is the consent ledger's)."""
    if expires_at is not None:
        try:
            check_expiry(expires_at, time.time())
        except InvalidInput:
            raise ValueError(f"give a time after now and within {MAX_CONSENT_YEARS} years") from None
    return expires_at


class ConsentIn(Strict):
    subject_id: str
    purpose: str | None = purpose_field()
    method: str = Field(description="signature, checkbox or paper")
    evidence: str = Field(description="a reference to the form or record, not a copy")
    expires_at: float | None = Field(None, description="epoch seconds, within 100 years [the purpose's"
                                                       " maximum retention]")
    minor: bool = False
    age: int | None = Field(None, ge=0, le=150, description="stated age in years: under the site's guardian age"
                                                          " needs a guardian (not stored)")
    guardian: GuardianIn | None = None
    collected_by: str | None = Field(None, description="who collected it [this key]")
    template_updates: bool = Field(False, description="the person allows a new model's template to be added"
                                                      " from a later match (no new photo)")

    @field_validator("expires_at")
    @classmethod
    def _expiry(cls, value: float | None) -> float | None:
        return _within_years(value)


class ConsentOut(BaseModel):
    id: str
    pseudonym: str
    purpose: str
    notice_version: str
    collected_by: str
    method: str
    granted_at: float
    expires_at: float
    minor: bool
    ended_at: float | None
    end_reason: str | None
    ended_by: str | None
    status: str
    template_updates: bool = False  # a new model's template may be added from a later match


class Withdrawn(BaseModel):
    withdrawn: ConsentOut | None
    remaining_purposes: list[str]
    templates_erased: bool
    receipt: dict[str, Any] | None


# -- credentials -----------------------------------------------------------------------------------
class CredentialIn(Strict):
    subject_id: str
    purpose: str | None = purpose_field()
    kind: str = Field("pin", description="pin (6 digits) or token (for a QR code)")
    expires_at: float | None = Field(None, description="epoch seconds, within 100 years [never]")

    @field_validator("expires_at")
    @classmethod
    def _expiry(cls, value: float | None) -> float | None:
        return _within_years(value)


class CredentialIssued(BaseModel):
    credential_id: str
    kind: str
    purpose: str
    secret: str = Field(description="shown once: only a hash is kept")
    expires_at: float | None


class CredentialCheckIn(Strict):
    purpose: str | None = purpose_field()
    token: str | None = None
    subject_id: str | None = None
    pin: str | None = None


class CredentialAccepted(BaseModel):
    accepted: bool
    subject_id: str
    credential_id: str
    purpose: str


class CredentialRevoked(BaseModel):
    revoked: str


# -- audit, compliance, receipts, sweep, notice ------------------------------------------------------
class ChainReportOut(BaseModel):
    ok: bool
    entries: int
    head_seq: int
    first_bad: int | None
    problem: str | None
    anchored_seq: int | None
    seconds: float


class ReceiptCheckIn(Strict):
    # a signed audit export holds one object per entry: up to the body limit's worth (~50 000 entries)
    json_bounds: ClassVar[Bounds] = Bounds(values=1_000_000, depth=32, keys=1_000, items=200_000)
    document: dict[str, Any] = Field(description="an erasure receipt or a signed audit export")
    public_key: str | None = Field(None, description="the signer's public key [this tenant's]")


class ReceiptChecked(BaseModel):
    valid: bool
    type: str | None


class PublicKey(BaseModel):
    public_key: str


# -- templates per model (moving to a new model without photos) ---------------------------------------
class ModelCoverageOut(BaseModel):
    model_id: str
    have: int
    lack: int
    update_allowed: int = Field(description="of those lacking, whose consent lets a later match add it")
    lacking: list[str] = Field(description="subject ids (admin) or pseudonyms (auditor), cut at 'limit'")


class PurposeCoverageOut(BaseModel):
    purpose: str
    template_update: str = Field(description="the purpose's setting: off or on-match")
    subjects: int = Field(description="enrolled people with a live consent for the purpose")
    models: list[ModelCoverageOut]


class TemplateCoverage(BaseModel):
    """Per purpose and model, who holds its templates and who still lacks one; never a template."""

    identified_by: Literal["subject_id", "pseudonym"]
    enrolled: int
    purposes: list[PurposeCoverageOut]


class NoticeIn(Strict):
    version: str | None = None
    controller: str | None = None
    contact: str | None = None
    retention: str | None = None
    rights: str | None = None


def plain(data: Any) -> Any:
    """Service results as JSON-ready values (dataclasses with ``to_dict``, dicts, lists)."""
    if hasattr(data, "to_dict"):
        return data.to_dict()
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [plain(v) for v in data]
    return data
