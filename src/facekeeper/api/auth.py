"""Who is calling: the API key becomes an ``Actor`` (id = key id, role, tenant) and, maybe, a purpose.

Roles are the privacy layer's (``privacy.policy.PERMISSIONS``). For every route that calls ``Service`` the
role check is the contract's guard (``facekeeper.contract``), so a refusal is audited in the tenant's chain
like any other; the API checks only what ``Service`` does not see: ``metrics.read`` (admin, auditor) and a
key's own purpose.

A key created with a purpose acts for that purpose only: a device key at the gate of purpose
``access-control`` cannot identify for ``payment``, and needs not say which purpose it serves.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from facekeeper.errors import AuthError, Forbidden, InvalidInput
from facekeeper.privacy.policy import Actor, may


def permitted(role: str, action: str) -> bool:
    """The privacy layer's one role table answers for the API's own actions too (``keys.manage``,
    ``metrics.read``), so no route has a rule of its own."""
    return may(role, action)


@dataclass(frozen=True)
class Caller:
    key_id: str
    tenant: str
    role: str
    key_purpose: str | None

    @property
    def actor(self) -> Actor:
        return Actor(self.key_id, self.role, self.tenant)

    def purpose(self, requested: str | None) -> str:
        """The purpose to act for: the key's own when it has one (a different one is refused), else the
        request's. Over HTTP every call says why; the configured default purpose is the local CLI's."""
        if self.key_purpose is None:
            if not requested:
                raise InvalidInput("say why: give 'purpose' (one of the tenant's declared purposes)")
            return requested
        if requested is not None and requested != self.key_purpose:
            raise Forbidden(f"this key acts for purpose {self.key_purpose} only", purpose=requested)
        return self.key_purpose

    def require(self, action: str) -> None:
        if not permitted(self.role, action):
            raise Forbidden(f"the {self.role} role may not {action}", action=action, role=self.role)


def token_of(request: Request) -> str:
    """The presented key: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    raise AuthError("no API key: send 'Authorization: Bearer <key>' (see 'facekeeper keys create')")
