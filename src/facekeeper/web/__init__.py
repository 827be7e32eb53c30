"""The web console: server-rendered pages for operators, auditors, admins and the people enrolled.

``register(app)`` mounts it on the API's FastAPI app under ``/console`` (accounts) and ``/me`` (a person's
self-service), with its static files under ``/console/static``. Every action calls ``Service`` through
``api.app.run`` as the signed-in person (``console:<name>`` with the account's role), so the contract's guard
checks role, purpose and consent and writes the audit entry exactly as for the CLI and the API. No page is in
the OpenAPI document: the console is not an API.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from facekeeper.web.accounts import AccountStore

HERE = Path(__file__).parent


def register(app: FastAPI) -> AccountStore:
    """Mount the console on ``app`` (whose ``state.ctx`` is the API's context); the caller closes the store.
    Imported lazily: the CLI reaches ``web.accounts`` without loading the web stack."""
    from fastapi.staticfiles import StaticFiles

    from facekeeper.web import common, console, person
    from facekeeper.web.accounts import AccountStore

    store = AccountStore.beside(app.state.ctx.layout.root)
    app.state.accounts = store
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    common.install(app)
    app.include_router(console.router)
    app.include_router(person.router)
    return store
