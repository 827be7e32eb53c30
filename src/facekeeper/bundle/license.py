"""The offline license: what this deployment may do, checked on the premises with nothing phoning home.

A license is a small JSON file signed by the vendor: who it is for, the one deployment it binds to, when it
expires, which features it grants (``enroll``, ``verify``, ``identify``; ``detect`` needs none) and how many
subjects the gallery may hold. It cannot be edited (signature), moved to another deployment (deployment
id) or stretched by turning the clock back: the highest time this deployment has seen is recorded in the
gallery, and a clock more than ``CLOCK_TOLERANCE`` behind it is refused. An expired license keeps
working for ``GRACE`` so a late renewal does not stop a site overnight. Erasure and listing subjects are
never licensed features: a person's rights over their data do not depend on the vendor being paid.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from facekeeper.bundle import signing
from facekeeper.bundle.trust import EVALUATION_MAX_SUBJECTS, TrustedKey, license_keys
from facekeeper.errors import LicenseError

FORMAT = "facekeeper-license/1"
LICENSE_FILE = "license.json"
FEATURES = ("enroll", "verify", "identify")
GRACE = timedelta(days=14)
CLOCK_TOLERANCE = timedelta(hours=48)  # covers a mis-set time zone or a dead RTC battery, not a rollback
META_CLOCK = "license_clock_high"  # highest time seen (epoch seconds), in the gallery's meta table
META_ISSUED = "license_issued_at"  # issue time of the newest license installed
CLOCK_WRITE_STEP = 60.0  # seconds: the high-water mark is rewritten at most this often
INSTALL_HINT = "run 'facekeeper license install FILE' with the license the vendor sends"

log = logging.getLogger(__name__)


class MetaStore(Protocol):
    """Where the highest time seen is kept: the gallery store satisfies it."""

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...


def format_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return when.astimezone(UTC)


@dataclass(frozen=True)
class License:
    license_id: str
    licensee: str
    deployment_id: str
    issued_at: datetime
    expires_at: datetime
    features: tuple[str, ...]
    max_subjects: int
    key_id: str
    evaluation: bool  # signed by an evaluation key, not the vendor's: capped and marked

    @property
    def grace_ends(self) -> datetime:
        return self.expires_at + GRACE

    @property
    def subject_cap(self) -> int:
        return min(self.max_subjects, EVALUATION_MAX_SUBJECTS) if self.evaluation else self.max_subjects

    def to_dict(self) -> dict[str, Any]:
        return {"license_id": self.license_id, "licensee": self.licensee, "deployment_id": self.deployment_id,
                "issued_at": format_time(self.issued_at), "expires_at": format_time(self.expires_at),
                "grace_ends": format_time(self.grace_ends), "features": list(self.features),
                "max_subjects": self.subject_cap, "signed_by": self.key_id, "evaluation": self.evaluation}


def payload_from_terms(*, license_id: str, licensee: str, deployment_id: str, issued_at: datetime,
                       expires_at: datetime, features: Sequence[str], max_subjects: int) -> dict[str, Any]:
    """The signed part of a license file, validated the same way on both sides."""
    payload = {"format": FORMAT, "license_id": license_id, "licensee": licensee, "deployment_id": deployment_id,
               "issued_at": format_time(issued_at), "expires_at": format_time(expires_at),
               "features": sorted(set(features)), "max_subjects": max_subjects}
    _terms(payload)
    return payload


def _terms(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} license")
    for name in ("license_id", "licensee", "deployment_id", "issued_at", "expires_at"):
        if not isinstance(payload.get(name), str) or not payload[name].strip():
            raise ValueError(f"{name} must be a non-empty string")
    features = payload.get("features")
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise ValueError("features must be a list of names")
    cap = payload.get("max_subjects")
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise ValueError("max_subjects must be a positive integer")
    issued, expires = parse_time(payload["issued_at"]), parse_time(payload["expires_at"])
    if expires <= issued:
        raise ValueError("the license expires before it is issued")
    return {"license_id": payload["license_id"], "licensee": payload["licensee"],
            "deployment_id": payload["deployment_id"], "issued_at": issued, "expires_at": expires,
            "features": tuple(features), "max_subjects": cap}


def read_license(data: bytes, keys: Sequence[TrustedKey]) -> License:
    """Parse a license file and check its signature against ``keys``; refusals are ``LicenseError``."""
    try:
        doc = signing.strict_json(data)
        payload, signer, value = doc["license"], str(doc["key_id"]), str(doc["signature"])
    except (signing.SignatureError, KeyError, TypeError) as exc:
        raise LicenseError(f"this is not a facekeeper license file ({exc}): {INSTALL_HINT}") from None
    try:
        signed = signing.canonical_json(payload)
    except (TypeError, ValueError) as exc:
        raise LicenseError(f"the license file is malformed ({exc}): {INSTALL_HINT}") from None
    trusted = next((k for k in keys if signing.verify(k.key, signing.LICENSE_DOMAIN, signed, value)), None)
    if trusted is None:
        known = {k.key_id for k in keys}
        why = ("it was edited after the vendor signed it" if signer in known
               else f"it is signed by key {signer}, which this installation does not trust")
        raise LicenseError(f"the license signature does not verify: {why}. Install the file exactly as the"
                           " vendor sent it, or ask the vendor for a new one")
    try:
        terms = _terms(payload)
    except ValueError as exc:
        raise LicenseError(f"the license is malformed ({exc}): ask the vendor for a new one") from None
    return License(**terms, key_id=trusted.key_id, evaluation=trusted.evaluation)


@dataclass(frozen=True)
class LicenseStatus:
    """What ``facekeeper license show`` reports; ``problem`` is the refusal a licensed call would get."""

    state: str  # "valid", "grace", "missing" or "refused"
    deployment_id: str
    subjects: int
    license: License | None
    problem: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "deployment_id": self.deployment_id, "subjects": self.subjects,
                "license": self.license.to_dict() if self.license else None, "problem": self.problem}


class Licensing:
    """The license of one deployment, checked before every licensed operation.

    ``keys`` and ``clock`` (epoch seconds) are injectable for tests; by default the trusted vendor key
    (plus an evaluation key named by the environment) and ``time.time``.
    """

    def __init__(self, data_dir: Path, deployment_id: str, meta: MetaStore, *,
                 keys: Sequence[TrustedKey] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = data_dir / LICENSE_FILE
        self.deployment_id = deployment_id
        self.meta = meta
        self.keys = keys
        self.clock = clock

    def _keys(self) -> Sequence[TrustedKey]:
        return self.keys if self.keys is not None else license_keys()

    def current(self) -> License:
        """The installed license, signature checked (not yet its dates or deployment)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise LicenseError(f"no license is installed: only 'detect' works without one. Send the vendor this"
                               f" deployment id ({self.deployment_id}) and {INSTALL_HINT}") from None
        except OSError as exc:
            raise LicenseError(f"cannot read {self.path} ({exc.strerror}): check its permissions") from None
        return read_license(data, self._keys())

    def check(self) -> License:
        """The installed license if it is valid now (or within its grace period); ``LicenseError`` if not."""
        lic = self.current()
        self._check_deployment(lic)
        now = self._now(lic)
        if now > lic.grace_ends:
            raise LicenseError(f"the license expired on {format_time(lic.expires_at)} and its {GRACE.days}-day"
                               f" grace period ended on {format_time(lic.grace_ends)}: ask the vendor for a"
                               f" renewal and {INSTALL_HINT}")
        if now > lic.expires_at:
            log.warning("the license expired on %s: licensed features stop on %s; install a renewal",
                        format_time(lic.expires_at), format_time(lic.grace_ends))
        return lic

    def require(self, feature: str, subjects: int, new_subjects: int = 0) -> License:
        """Refuse ``feature`` unless licensed; ``new_subjects`` more than ``subjects`` must fit the cap."""
        lic = self.check()
        if feature not in lic.features:
            granted = ", ".join(lic.features) or "nothing"
            raise LicenseError(f"the license does not include '{feature}' (it grants: {granted}): ask the vendor"
                               " for a license with it", feature=feature)
        if new_subjects and subjects + new_subjects > lic.subject_cap:
            kind = "evaluation license" if lic.evaluation else "license"
            raise LicenseError(
                f"the {kind} allows {lic.subject_cap} subjects; the gallery holds {subjects} and this would add"
                f" {new_subjects}: erase subjects that are no longer needed, or ask the vendor for a higher cap",
                max_subjects=lic.subject_cap, subjects=subjects)
        return lic

    def status(self, subjects: int) -> LicenseStatus:
        """The license as ``license show`` reports it; never raises a ``LicenseError``."""
        try:
            lic = self.current()
        except LicenseError as exc:
            state = "missing" if not self.path.exists() else "refused"
            return LicenseStatus(state, self.deployment_id, subjects, None, exc.message)
        try:
            self.check()
        except LicenseError as exc:
            return LicenseStatus("refused", self.deployment_id, subjects, lic, exc.message)
        in_grace = datetime.fromtimestamp(self.clock(), UTC) > lic.expires_at
        return LicenseStatus("grace" if in_grace else "valid", self.deployment_id, subjects, lic, None)

    def install(self, content: bytes) -> License:
        """Check a license file as a licensed call would, then make it this deployment's license.

        A license issued later than the last one installed also resets the recorded highest time: it is
        how a site recovers from a clock that was once set far ahead.
        """
        lic = read_license(content, self._keys())
        self._check_deployment(lic)
        newer = lic.issued_at.timestamp() > float(self.meta.get_meta(META_ISSUED) or 0.0)
        now = self._now(lic, reset=newer)
        if now > lic.grace_ends:
            raise LicenseError(f"this license expired on {format_time(lic.expires_at)}: ask the vendor for a"
                               " current one")
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(content)
        os.replace(tmp, self.path)
        if newer:
            self.meta.set_meta(META_CLOCK, repr(now.timestamp()))
            self.meta.set_meta(META_ISSUED, repr(lic.issued_at.timestamp()))
        return lic

    def _check_deployment(self, lic: License) -> None:
        if lic.deployment_id != self.deployment_id:
            raise LicenseError(f"the license is for deployment {lic.deployment_id}, not this one"
                               f" ({self.deployment_id}): a license cannot move between deployments. Ask the"
                               f" vendor for a license for {self.deployment_id}")

    def _now(self, lic: License, *, reset: bool = False) -> datetime:
        """The current time, refused when the clock is behind what this deployment has already seen.

        ``reset`` (installing a newer license) ignores the recorded mark: only the issue date bounds it.
        """
        now = self.clock()
        tolerance = CLOCK_TOLERANCE.total_seconds()
        high = 0.0 if reset else float(self.meta.get_meta(META_CLOCK) or 0.0)
        floor = max(high, lic.issued_at.timestamp())
        if now < floor - tolerance:
            behind = (floor - now) / 3600
            raise LicenseError(
                f"the system clock ({format_time(datetime.fromtimestamp(now, UTC))}) is {behind:.0f} hours behind"
                f" the latest time this deployment has seen ({format_time(datetime.fromtimestamp(floor, UTC))}):"
                " set the clock right (e.g. NTP) and retry; if it was once set far ahead by mistake, a newly"
                " issued license resets this check")
        if not reset and now > high + CLOCK_WRITE_STEP:
            self.meta.set_meta(META_CLOCK, repr(now))
        return datetime.fromtimestamp(now, UTC)
