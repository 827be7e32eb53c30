"""Liveness sessions: start one (a nonce and a challenge), answer it with the frames, then verify or identify
with the session's id (``liveness_session``) for a purpose that requires liveness."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from facekeeper.api import bodies, schemas
from facekeeper.api.app import API_PREFIX, allow, run
from facekeeper.api.auth import Caller
from facekeeper.liveness.frames import MAX_FRAMES
from facekeeper.service import Service

router = APIRouter(prefix=f"{API_PREFIX}/liveness", tags=["liveness"])
Authed = Annotated[Caller, Depends(allow())]
_MEDIA = ("frames", "video")


class SessionIn(schemas.Strict):
    purpose: str | None = schemas.purpose_field()
    subject_id: str | None = Field(None, max_length=200, description="the person, when the terminal knows who "
                                                                      "(a card read): attempts are then limited "
                                                                      "per person too")
    steps: Literal[2, 3] | None = Field(None, description="actions in the challenge [2 or 3, drawn at random]")


class SessionOut(BaseModel):
    session_id: str
    nonce: str = Field(description="send it back with the frames; kept by the service only as a keyed hash")
    purpose: str
    challenge: list[str] = Field(description="turn-left, turn-right, blink: in this order, the subject's own "
                                             "left and right, in unmirrored frames")
    step_seconds: float = Field(description="show action i at i x this many seconds after the first frame")
    expires_at: float = Field(description="answer before this time (seconds since the epoch)")
    live_for: float = Field(description="seconds a live result waits for the verify or identify that uses it")


class FramesIn(schemas.Strict):
    nonce: str = Field(max_length=100)
    frames: list[bytes] | None = Field(None, max_length=MAX_FRAMES,
                                       description="JPEG (or PNG, WebP) frames in capture order")
    times: list[float] | None = Field(None, max_length=MAX_FRAMES,
                                      description="each frame's capture time in seconds (any origin)")
    video: bytes | None = Field(None, description="or: the recording as one video (MP4/H.264, WebM, MJPEG)")


class LivenessOut(BaseModel):
    session_id: str
    purpose: str
    challenge: list[str]
    outcome: Literal["live", "spoof", "uncertain"]
    reasons: list[str] = Field(description="stable codes (see docs/liveness.md)")
    why: list[str]
    events: list[dict[str, Any]] = Field(description="the actions seen: action, start and end in seconds")
    frames: int
    fps: float
    duration: float
    timings_ms: dict[str, float]


@router.post("/sessions", response_model=SessionOut, status_code=201,
             openapi_extra=bodies.openapi_body(SessionIn, multipart=False))
async def start(request: Request, caller: Authed) -> SessionOut:
    """Open a liveness session for a purpose: an id, a nonce and 2-3 actions to make in order."""
    body = await bodies.parse_json(request, SessionIn)
    r = await run(request, caller, Service.liveness_start, body.subject_id, steps=body.steps,
                  purpose=caller.purpose(body.purpose))
    return SessionOut.model_validate(r.to_dict())


@router.post("/sessions/{session_id}/frames", response_model=LivenessOut,
             openapi_extra=bodies.openapi_body(FramesIn, _MEDIA, multipart=False))
async def submit(session_id: str, request: Request, caller: Authed) -> LivenessOut:
    """Answer a session with its frames (timestamped photos) or a short video: live, spoof or uncertain, with
    the reasons and timings. Frames are measured in memory and dropped; the audit keeps the decision."""
    body = await bodies.parse(request, FramesIn, _MEDIA)
    r = await run(request, caller, Service.liveness_submit, session_id, body.nonce, body.frames or [],
                  body.times or [], video=body.video)
    return LivenessOut.model_validate(r.to_dict())
