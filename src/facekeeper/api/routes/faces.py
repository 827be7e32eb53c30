"""Detect, enroll, verify, identify: the face operations. Images in, decisions out; edge terminals send
a descriptor instead of a photo (``template`` + ``model_id``)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request

from facekeeper.api import bodies, schemas
from facekeeper.api.app import API_PREFIX, allow, context, run
from facekeeper.api.auth import Caller
from facekeeper.errors import InvalidInput
from facekeeper.service import Service

router = APIRouter(prefix=API_PREFIX, tags=["faces"])
Authed = Annotated[Caller, Depends(allow())]
_EDGE = ("template", "model_id")


def _probe(image: bytes | None, template: list[float] | None, model_id: str | None) -> None:
    if (image is None) == (template is None):
        raise InvalidInput("send exactly one of: 'image' (a photo) or 'template' (a descriptor, edge mode)")
    if template is not None and not model_id:
        raise InvalidInput("a template comes with the 'model_id' of the model that made it")


def _template(values: list[float]) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.asarray(values, dtype=np.float32)


@router.post("/detect", response_model=schemas.Detected,
             openapi_extra=bodies.openapi_body(schemas.DetectIn, ("image",)))
async def detect(request: Request, caller: Authed) -> schemas.Detected:
    """Faces in a photo: boxes, landmarks and quality. Nothing is stored."""
    body = await bodies.parse(request, schemas.DetectIn, ("image",))
    faces = await run(request, caller, Service.detect, body.image, body.landmarks)
    context(request).metrics.faces(caller.tenant, "detect", len(faces))
    return schemas.Detected.model_validate({"faces": faces})


@router.post("/enroll", response_model=schemas.Enrolled, status_code=201,
             openapi_extra=bodies.openapi_body(schemas.EnrollIn, ("images",)))
async def enroll(request: Request, caller: Authed) -> schemas.Enrolled:
    """Enroll photos of one person for a purpose; the person needs a live consent for it."""
    body = await bodies.parse(request, schemas.EnrollIn, ("images",))
    r = await run(request, caller, Service.enroll, body.images, body.subject_id, body.name,
                  purpose=caller.purpose(body.purpose))
    context(request).metrics.faces(caller.tenant, "enroll", r.templates_added)
    return schemas.Enrolled(subject_id=r.subject_id, pseudonym=r.pseudonym, templates_added=r.templates_added,
                            quality=r.quality)


@router.post("/verify", response_model=schemas.VerifyAnswer,
             openapi_extra=bodies.openapi_body(schemas.VerifyIn, ("image", "reference"), _EDGE))
async def verify(request: Request, caller: Authed) -> schemas.VerifyAnswer:
    """1:1: the probe (photo or edge template) against a second photo or an enrolled subject.

    Admin and operator keys get ``Verified`` (scores quantised); a device key gets ``DeviceVerified``, the
    decision without any score. A subject without live consent for the purpose is, to a device, an unknown
    subject (404, the same problem)."""
    body = await bodies.parse(request, schemas.VerifyIn, ("image", "reference"))
    _probe(body.image, body.template, body.model_id)
    purpose = caller.purpose(body.purpose)
    if body.template is not None:
        if body.subject_id is None or body.reference is not None:
            raise InvalidInput("a template is verified against an enrolled subject: give 'subject_id'")
        r = await run(request, caller, Service.verify_descriptor, _template(body.template), body.subject_id,
                      model_id=body.model_id, fmr=body.fmr, purpose=purpose)
    else:
        r = await run(request, caller, Service.verify, body.image, body.reference, subject_id=body.subject_id,
                      fmr=body.fmr, purpose=purpose, liveness_session=body.liveness_session)
        context(request).metrics.faces(caller.tenant, "verify", 1 + (body.reference is not None))
    return schemas.VERIFY_ANSWER.validate_python(r.to_dict())


@router.post("/identify", response_model=schemas.IdentifyAnswer,
             openapi_extra=bodies.openapi_body(schemas.IdentifyIn, ("image",), _EDGE))
async def identify(request: Request, caller: Authed) -> schemas.IdentifyAnswer:
    """1:N among the subjects with a live consent for the purpose; answers ``unknown`` rather than guess.

    Admin and operator keys get ``Identified``: the match and the closest candidates with names and quantised
    scores. A device key gets ``DeviceIdentified``: the matched subject's id or ``unknown``, nothing else.
    Edge descriptors that are no face's are refused (403 ``probe-suspicious``); a key that keeps sending
    them, or keeps getting ``unknown``, is locked for a while (403 ``probe-lockout``)."""
    body = await bodies.parse(request, schemas.IdentifyIn, ("image",))
    _probe(body.image, body.template, body.model_id)
    purpose = caller.purpose(body.purpose)
    if body.template is not None:
        r = await run(request, caller, Service.identify_descriptor, _template(body.template), body.k, body.fpir,
                      model_id=body.model_id, purpose=purpose)
    else:
        r = await run(request, caller, Service.identify, body.image, body.k, body.fpir, purpose=purpose,
                      liveness_session=body.liveness_session)
        context(request).metrics.faces(caller.tenant, "identify", 1)
    return schemas.IDENTIFY_ANSWER.validate_python(r.to_dict())
