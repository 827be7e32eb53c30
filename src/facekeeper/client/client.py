"""``Client``: one method per ``/v1`` route, over httpx, answers parsed into the API's own models.

Errors come back as the ``facekeeper.errors`` class the service raised, with its message and details, so
code written against ``Service`` in-process handles the remote one the same way.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
from pydantic import BaseModel, TypeAdapter

from facekeeper.api import schemas
from facekeeper.api.routes.liveness import LivenessOut, SessionOut
from facekeeper.errors import ALL_ERRORS, FacekeeperError

M = TypeVar("M", bound=BaseModel)
A = TypeVar("A")
ImageInput = str | Path | bytes
_BY_CODE = {cls.code: cls for cls in ALL_ERRORS}
_PROBLEM_FIELDS = {"type", "title", "status", "detail", "code", "instance"}


def error_from(response: httpx.Response) -> FacekeeperError:
    """The exception a problem+json answer stands for (``FacekeeperError`` for a code this SDK lacks)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code", "error"))
    detail = str(body.get("detail") or f"HTTP {response.status_code}")
    extras = {k: v for k, v in body.items() if k not in _PROBLEM_FIELDS}
    cls = _BY_CODE.get(code, FacekeeperError)
    err = cls(detail, **extras)
    if cls is FacekeeperError:
        err.code = code  # type: ignore[misc]
        err.http_status = response.status_code  # type: ignore[misc]
    return err


def image_bytes(image: ImageInput) -> bytes:
    return image if isinstance(image, bytes) else Path(image).read_bytes()


def _segment(value: str) -> str:
    """A path segment: everything percent-encoded, dots too (so '..' cannot climb the path)."""
    return quote(value, safe="").replace(".", "%2E")


def _floats(template: Sequence[float]) -> list[float]:
    """A descriptor as the shortest decimals that give back the same float32 values (half the bytes)."""
    return [float(str(np.float32(x))) for x in template]


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


class Client:
    """A connection to one facekeeper service with one API key.

    ``verify`` is httpx's TLS setting: True (system CAs) or an ``ssl.SSLContext``, e.g.
    ``ssl.create_default_context(cafile=<the site's CA>)``, with ``load_cert_chain`` for mutual TLS.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0, verify: Any = True,
                 upload: str = "multipart", transport: httpx.BaseTransport | None = None) -> None:
        if upload not in ("multipart", "json"):
            raise ValueError("upload is 'multipart' or 'json' (base64)")
        self.upload = upload
        self._http = httpx.Client(base_url=base_url.rstrip("/") + "/v1", timeout=timeout, verify=verify,
                                  transport=transport, headers={"Authorization": f"Bearer {api_key}"},
                                  trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call; a problem answer is raised as its ``FacekeeperError``."""
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise error_from(response)
        return response

    def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self.request(method, path, **kwargs).json())

    def _answer(self, adapter: TypeAdapter[A], method: str, path: str, **kwargs: Any) -> A:
        """An answer whose shape depends on the key's role (a device gets decisions without scores)."""
        return adapter.validate_python(self.request(method, path, **kwargs).json())

    def _models(self, model: type[M], method: str, path: str, **kwargs: Any) -> list[M]:
        return [model.model_validate(item) for item in self.request(method, path, **kwargs).json()]

    def _images(self, fields: dict[str, Any], images: dict[str, ImageInput | list[ImageInput] | None]
                ) -> dict[str, Any]:
        """Request arguments carrying photos as multipart files or base64 JSON, per ``upload``."""
        present = {k: v for k, v in fields.items() if v is not None}
        if self.upload == "json":
            for name, value in images.items():
                if isinstance(value, list):
                    present[name] = [base64.b64encode(image_bytes(v)).decode() for v in value]
                elif value is not None:
                    present[name] = base64.b64encode(image_bytes(value)).decode()
            return {"json": present}
        files = []
        for name, value in images.items():
            for item in value if isinstance(value, list) else [value]:
                if item is not None:
                    files.append((name, ("image", image_bytes(item), "application/octet-stream")))
        return {"data": {k: str(v) for k, v in present.items()}, "files": files}

    # -- faces ----------------------------------------------------------------------------------
    def detect(self, image: ImageInput, landmarks: int = 68) -> schemas.Detected:
        return self._model(schemas.Detected, "POST", "/detect",
                           **self._images({"landmarks": landmarks}, {"image": image}))

    def enroll(self, images: list[ImageInput], subject_id: str, name: str | None = None, *,
               purpose: str | None = None) -> schemas.Enrolled:
        return self._model(schemas.Enrolled, "POST", "/enroll", **self._images(
            {"subject_id": subject_id, "name": name, "purpose": purpose}, {"images": list(images)}))

    def verify(self, image: ImageInput, reference: ImageInput | None = None, *, subject_id: str | None = None,
               purpose: str | None = None, fmr: float | None = None,
               liveness_session: str | None = None) -> schemas.VerifyAnswer:
        """1:1; a device key gets ``DeviceVerified`` (no score), others ``Verified``. A purpose that requires
        liveness needs ``liveness_session``: a live session's id (``liveness_start``, ``liveness_submit``)."""
        return self._answer(schemas.VERIFY_ANSWER, "POST", "/verify", **self._images(
            {"subject_id": subject_id, "purpose": purpose, "fmr": fmr, "liveness_session": liveness_session},
            {"image": image, "reference": reference}))

    def identify(self, image: ImageInput, *, purpose: str | None = None, k: int | None = None,
                 fpir: float | None = None, liveness_session: str | None = None) -> schemas.IdentifyAnswer:
        """1:N; a device key gets ``DeviceIdentified`` (the match's id only), others ``Identified``."""
        return self._answer(schemas.IDENTIFY_ANSWER, "POST", "/identify", **self._images(
            {"purpose": purpose, "k": k, "fpir": fpir, "liveness_session": liveness_session}, {"image": image}))

    # -- liveness -------------------------------------------------------------------------------
    def liveness_start(self, *, purpose: str | None = None, subject_id: str | None = None,
                       steps: int | None = None) -> SessionOut:
        """A challenge: show each action ``step_seconds`` apart, record, and send the frames before ``expires_at``."""
        return self._model(SessionOut, "POST", "/liveness/sessions", json=_drop_none(
            {"purpose": purpose, "subject_id": subject_id, "steps": steps}))

    def liveness_submit(self, session_id: str, nonce: str, frames: Sequence[ImageInput] = (),
                        times: Sequence[float] = (), *, video: ImageInput | None = None) -> LivenessOut:
        """The session's frames (photos with capture times in seconds) or one video: live, spoof or uncertain."""
        body: dict[str, Any] = {"nonce": nonce}
        if video is not None:
            body["video"] = base64.b64encode(image_bytes(video)).decode()
        else:
            body["frames"] = [base64.b64encode(image_bytes(f)).decode() for f in frames]
            body["times"] = [float(t) for t in times]
        return self._model(LivenessOut, "POST", f"/liveness/sessions/{_segment(session_id)}/frames", json=body)

    def verify_template(self, template: Sequence[float], model_id: str, subject_id: str, *,
                        purpose: str | None = None, fmr: float | None = None) -> schemas.VerifyAnswer:
        """Edge mode: a descriptor made on the terminal, against an enrolled subject."""
        return self._answer(schemas.VERIFY_ANSWER, "POST", "/verify", json=_drop_none({
            "template": _floats(template), "model_id": model_id, "subject_id": subject_id,
            "purpose": purpose, "fmr": fmr}))

    def identify_template(self, template: Sequence[float], model_id: str, *, purpose: str | None = None,
                          k: int | None = None, fpir: float | None = None) -> schemas.IdentifyAnswer:
        """Edge mode: 1:N for a descriptor made on the terminal."""
        return self._answer(schemas.IDENTIFY_ANSWER, "POST", "/identify", json=_drop_none({
            "template": _floats(template), "model_id": model_id, "purpose": purpose, "k": k,
            "fpir": fpir}))

    # -- subjects -------------------------------------------------------------------------------
    def subjects(self) -> list[schemas.Subject]:
        return self._models(schemas.Subject, "GET", "/subjects")

    def subject(self, subject_id: str) -> schemas.Subject:
        return self._model(schemas.Subject, "GET", f"/subjects/{_segment(subject_id)}")

    def erase(self, subject_id: str) -> schemas.Erased:
        """Erase a subject; the answer holds the signed erasure receipt."""
        return self._model(schemas.Erased, "DELETE", f"/subjects/{_segment(subject_id)}")

    def export_subject(self, subject_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.request("GET", f"/subject-access/{_segment(subject_id)}").json()
        return data

    # -- consents -------------------------------------------------------------------------------
    def grant_consent(self, subject_id: str, purpose: str | None, method: str, evidence: str, *,
                      expires_at: float | None = None, minor: bool = False,
                      guardian: dict[str, str] | None = None, collected_by: str | None = None,
                      template_updates: bool = False) -> schemas.ConsentOut:
        """``template_updates``: the person allows a new model's template to be added from a later match."""
        return self._model(schemas.ConsentOut, "POST", "/consents", json=_drop_none({
            "subject_id": subject_id, "purpose": purpose, "method": method, "evidence": evidence,
            "expires_at": expires_at, "minor": minor, "guardian": guardian, "collected_by": collected_by,
            "template_updates": template_updates}))

    def consents(self, subject_id: str) -> list[schemas.ConsentOut]:
        return self._models(schemas.ConsentOut, "GET", f"/consents/{_segment(subject_id)}")

    def withdraw_consent(self, subject_id: str, purpose: str) -> schemas.Withdrawn:
        return self._model(schemas.Withdrawn, "DELETE", f"/consents/{_segment(purpose)}/{_segment(subject_id)}")

    # -- credentials ----------------------------------------------------------------------------
    def issue_credential(self, subject_id: str, purpose: str | None = None, kind: str = "pin", *,
                         expires_at: float | None = None) -> schemas.CredentialIssued:
        return self._model(schemas.CredentialIssued, "POST", "/credentials", json=_drop_none({
            "subject_id": subject_id, "purpose": purpose, "kind": kind, "expires_at": expires_at}))

    def check_credential(self, purpose: str | None = None, *, token: str | None = None,
                         subject_id: str | None = None, pin: str | None = None) -> schemas.CredentialAccepted:
        return self._model(schemas.CredentialAccepted, "POST", "/credentials/check", json=_drop_none({
            "purpose": purpose, "token": token, "subject_id": subject_id, "pin": pin}))

    def revoke_credential(self, credential_id: str) -> schemas.CredentialRevoked:
        return self._model(schemas.CredentialRevoked, "DELETE", f"/credentials/{_segment(credential_id)}")

    # -- audit, compliance, receipts, sweep, notice -----------------------------------------------
    def verify_audit(self) -> schemas.ChainReportOut:
        return self._model(schemas.ChainReportOut, "GET", "/audit/verify")

    def export_audit(self, since: float | None = None) -> dict[str, Any]:
        data: dict[str, Any] = self.request("GET", "/audit/export", params=_drop_none({"since": since})).json()
        return data

    def compliance(self) -> dict[str, Any]:
        data: dict[str, Any] = self.request("GET", "/compliance").json()
        return data

    def template_coverage(self, purpose: str | None = None, limit: int | None = None) -> schemas.TemplateCoverage:
        """Per purpose and model, who holds its templates and who still lacks one (admin and auditor keys)."""
        return self._model(schemas.TemplateCoverage, "GET", "/templates/coverage",
                           params=_drop_none({"purpose": purpose, "limit": limit}))

    def verify_receipt(self, document: dict[str, Any], public_key: str | None = None) -> schemas.ReceiptChecked:
        return self._model(schemas.ReceiptChecked, "POST", "/receipts/verify",
                           json=_drop_none({"document": document, "public_key": public_key}))

    def sweep(self, *, dry_run: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = self.request("POST", "/sweep", params={"dry_run": dry_run}).json()
        return data

    def set_notice(self, **fields: str) -> None:
        self.request("PUT", "/notice", json=fields)

    # -- system ---------------------------------------------------------------------------------
    def health(self) -> schemas.Health:
        return self._model(schemas.Health, "GET", "/health")

    def metrics(self) -> str:
        """Prometheus text of this key's tenant (admin and auditor keys)."""
        return self.request("GET", "/metrics").text

    # -- keys (admin) ---------------------------------------------------------------------------
    def keys(self) -> list[schemas.ApiKeyInfo]:
        return self._models(schemas.ApiKeyInfo, "GET", "/keys")

    def create_key(self, role: str, purpose: str | None = None, label: str | None = None) -> schemas.NewApiKey:
        return self._model(schemas.NewApiKey, "POST", "/keys",
                           json={"role": role, "purpose": purpose, "label": label})

    def revoke_key(self, key_id: str) -> schemas.ApiKeyInfo:
        return self._model(schemas.ApiKeyInfo, "DELETE", f"/keys/{key_id}")
