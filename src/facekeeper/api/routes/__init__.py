"""The ``/v1`` routers, one module per feature; each route only translates HTTP to ``Service`` and back."""

from __future__ import annotations

from fastapi import APIRouter

from facekeeper.api.routes import (
    audit,
    consents,
    credentials,
    faces,
    keys,
    liveness,
    privacy,
    subjects,
    system,
    templates,
)

ROUTERS: tuple[APIRouter, ...] = (system.router, faces.router, subjects.router, consents.router,
                                  credentials.router, audit.router, privacy.router, keys.router, liveness.router,
                                  templates.router)
