"""The errors facekeeper raises on purpose.

Each class has a stable machine ``code`` (used as the HTTP problem type and in ``--json`` output) and a
distinct CLI ``exit_code``, so scripts can react to the class of failure without parsing text. Messages
say what went wrong and what to do; they never carry pixels, templates, keys or names.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FacekeeperError(Exception):
    """Base class: something the caller can fix, reported in one line."""

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        # The audit's outcome when it must say more than the caller is told (a refusal masked as "unknown").
        self.audited_as: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class ConfigError(FacekeeperError):
    code = "config-error"
    exit_code = 3
    http_status = 500


class BadImage(FacekeeperError):
    """Unreadable, truncated, too large, or not an image at all."""

    code = "bad-image"
    exit_code = 10
    http_status = 422


class ImageTooLarge(BadImage):
    """Over the byte or pixel limit: refused before decoding (decompression bombs)."""

    code = "image-too-large"
    exit_code = 11
    http_status = 413


class NoFace(FacekeeperError):
    code = "no-face"
    exit_code = 12
    http_status = 422


class MultipleFaces(FacekeeperError):
    code = "multiple-faces"
    exit_code = 13
    http_status = 422


class QualityRejected(FacekeeperError):
    """The face is there but not good enough to enroll; ``details`` names the reason and value."""

    code = "quality-rejected"
    exit_code = 14
    http_status = 422


class UnknownSubject(FacekeeperError):
    code = "unknown-subject"
    exit_code = 20
    http_status = 404


class SubjectExists(FacekeeperError):
    code = "subject-exists"
    exit_code = 21
    http_status = 409


class DeploymentKeyError(FacekeeperError):
    """The deployment key is missing, malformed, or does not open this gallery."""

    code = "key-error"
    exit_code = 30
    http_status = 500


class GalleryError(FacekeeperError):
    """The gallery file is missing, corrupted, or from an incompatible version."""

    code = "gallery-error"
    exit_code = 31
    http_status = 500


class StoreUnavailable(FacekeeperError):
    """The database (or a shard of the cluster index) cannot answer now: retry, nothing was decided."""

    code = "store-unavailable"
    exit_code = 35
    http_status = 503

    def __init__(self, message: str, **details: Any) -> None:
        details.setdefault("retry_after", 5)  # seconds: a restarted database or shard is back in about that
        super().__init__(message, **details)


class ModelMismatch(FacekeeperError):
    """Templates made by another model cannot be compared; the subject must be re-enrolled."""

    code = "model-mismatch"
    exit_code = 32
    http_status = 409


class BundleError(FacekeeperError):
    """A model file or bundle failed its integrity or signature check."""

    code = "bundle-error"
    exit_code = 33
    http_status = 500


class LicenseError(FacekeeperError):
    code = "license-error"
    exit_code = 34
    http_status = 403


class ConsentRequired(FacekeeperError):
    code = "consent-required"
    exit_code = 40
    http_status = 403


class PurposeError(FacekeeperError):
    """An unknown purpose, or an operation the purpose does not allow."""

    code = "purpose-error"
    exit_code = 41
    http_status = 403


class NoticeIncomplete(FacekeeperError):
    code = "notice-incomplete"
    exit_code = 42
    http_status = 409


class AuditError(FacekeeperError):
    code = "audit-broken"
    exit_code = 43
    http_status = 500


class ReceiptInvalid(FacekeeperError):
    """An erasure receipt or signed export whose signature does not hold: altered, or not ours."""

    code = "receipt-invalid"
    exit_code = 45
    http_status = 422


class CredentialError(FacekeeperError):
    code = "credential-error"
    exit_code = 44
    http_status = 403


class CalibrationRefused(FacekeeperError):
    """Too few subjects or pairs to support the requested false-match rate: the rule is in the message."""

    code = "calibration-refused"
    exit_code = 46
    http_status = 409


class PrivacyBudgetSpent(FacekeeperError):
    """A federated round would spend more privacy loss (epsilon) than the yearly budget has left."""

    code = "privacy-budget-spent"
    exit_code = 47
    http_status = 409


class FederationError(FacekeeperError):
    """A federated round did not complete (Flower missing, SuperLink unreachable, round halted)."""

    code = "federation-failed"
    exit_code = 48
    http_status = 502


class AuthError(FacekeeperError):
    code = "unauthorized"
    exit_code = 50
    http_status = 401


class Forbidden(FacekeeperError):
    code = "forbidden"
    exit_code = 51
    http_status = 403


class RateLimited(FacekeeperError):
    code = "rate-limited"
    exit_code = 52
    http_status = 429


class ProbeRefused(Forbidden):
    """An outside descriptor that is no face's (zero, unit, sparse, off the face manifold): a probe."""

    code = "probe-suspicious"
    exit_code = 56


class ProbeLockout(Forbidden):
    """A key that kept sending probes or unknown faces, locked for a while (``retry_after`` seconds)."""

    code = "probe-lockout"
    exit_code = 57


class RequestTooLarge(FacekeeperError):
    """An HTTP request body over the service's limit: refused before it is read in full."""

    code = "request-too-large"
    exit_code = 53
    http_status = 413


class UnsupportedMediaType(FacekeeperError):
    """An HTTP request body in a content type the route does not take."""

    code = "unsupported-media-type"
    exit_code = 54
    http_status = 415


class ServiceUnavailable(FacekeeperError):
    """The HTTP service could not run the call now (a worker process stopped): retrying is safe."""

    code = "service-unavailable"
    exit_code = 55
    http_status = 503


class LivenessRequired(FacekeeperError):
    """The purpose needs a fresh ``live`` liveness session whose frames show the probe's face, and there is
    none: not given, not live, expired, already used, another purpose's, or another face's."""

    code = "liveness-required"
    exit_code = 58
    http_status = 403


class LivenessAttempts(FacekeeperError):
    """Too many liveness attempts that were not ``live``, from this device or for this person: wait."""

    code = "liveness-attempts"
    exit_code = 59
    http_status = 429


class InvalidInput(FacekeeperError):
    """A malformed argument that is not an image problem (bad id, bad number, bad template)."""

    code = "invalid-input"
    exit_code = 2
    http_status = 422


ALL_ERRORS: tuple[type[FacekeeperError], ...] = tuple(
    cls for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, FacekeeperError)
)
