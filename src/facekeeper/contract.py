"""The declared operations: every call an interface may make into ``Service``, and how it is guarded.

Each public ``Service`` operation is declared once, where it is defined, with ``@operation(...)``: the
audited action (which also names who may call it, ``privacy.policy.PERMISSIONS``), the purpose rule, the
cost class and how many audit entries it leaves. Its request and result types are the method's own
signature. The decorator is the one guard every call passes, CLI, HTTP or console alike:

    role → purpose → consent → one unit of work → exactly one audit entry

The role is checked here before any argument is looked at (a refusal is audited); purpose and consent are
checked by ``Privacy.operation`` inside the unit of work, before any photo is decoded; and the guard counts
the entries the work wrote, adding the one entry an operation that audits nothing itself would lack.
Interfaces hold typed handles (``Service.identify``), never method-name strings: ``of(handle)`` gives the
declaration, and the HTTP runner sends a call to a worker process or a thread by its ``cost``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar

from facekeeper.errors import FacekeeperError, InvalidInput
from facekeeper.privacy.audit import counting
from facekeeper.privacy.policy import ROLES, Actor, may

if TYPE_CHECKING:
    from facekeeper.service import Service

log = logging.getLogger("facekeeper.contract")

Cost = Literal["photo", "light"]  # photo: decodes images (seconds of CPU); light: milliseconds
PurposeRule = Literal["none", "default", "required"]  # acts for no purpose / the default one / must be named
AuditRule = Literal["one", "per-subject"]  # one entry per call / one per person a bulk call touches


@dataclass(frozen=True)
class Operation:
    """One declared operation. ``name`` is the ``Service`` method; ``action`` is what the audit records."""

    name: str
    action: str
    purpose: PurposeRule
    cost: Cost
    audit: AuditRule
    summary: str

    @property
    def roles(self) -> frozenset[str]:
        """Who may call it: the roles whose permissions include the action."""
        return frozenset(role for role in ROLES if may(role, self.action))


OPERATIONS: dict[str, Operation] = {}

S = TypeVar("S", bound="Service")
P = ParamSpec("P")
R = TypeVar("R")

def operation(action: str, *, purpose: PurposeRule = "none", cost: Cost = "light",
              audit: AuditRule = "one") -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """Declare a ``Service`` method an operation and run every call of it through the guard."""

    def declare(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        op = Operation(method.__name__, action, purpose, cost, audit, _first_sentence(method.__doc__))
        if op.name in OPERATIONS:
            raise RuntimeError(f"operation {op.name} declared twice")
        OPERATIONS[op.name] = op

        @functools.wraps(method)
        def guarded(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
            actor: Actor = kwargs.pop("actor", None) or self.actor  # type: ignore[assignment]
            with counting() as entries:
                try:
                    if not may(actor.role, op.action):
                        self.privacy.refuse_role(actor, op.action)
                    result = method(self, *args, actor=actor, **kwargs)  # type: ignore[arg-type]
                except FacekeeperError as exc:
                    if not entries:
                        self.privacy.audit_outcome(actor, op.action, exc)
                    raise
                if not entries:
                    self.privacy.audit_outcome(actor, op.action, None)
                elif op.audit == "one" and entries.count(op.action) != 1:
                    log.error("operation %s wrote %d entries of %s, declared one", op.name,
                              entries.count(op.action), op.action)
            return result

        guarded.operation = op  # type: ignore[attr-defined]
        return guarded

    return declare


def _first_sentence(doc: str | None) -> str:
    paragraph = " ".join((doc or "").strip().split("\n\n", 1)[0].split())
    return paragraph.split(". ", 1)[0].rstrip(".")


def of(handle: Callable[..., Any] | str) -> Operation:
    """The declaration behind a typed handle (``Service.identify``) or, at a process boundary, its name."""
    op = OPERATIONS.get(handle) if isinstance(handle, str) else getattr(handle, "operation", None)
    if not isinstance(op, Operation):
        raise InvalidInput(f"not a declared operation: {getattr(handle, '__name__', handle)}")
    return op


def table() -> list[Operation]:
    """Every declared operation, for the docs and the table-driven test (imports ``Service`` to fill it)."""
    import facekeeper.service  # noqa: F401  (declaring happens when the module is imported)

    return sorted(OPERATIONS.values(), key=lambda op: op.name)


def markdown() -> str:
    """The table ``docs/operations.md`` holds (a test keeps the two equal)."""
    rows = ["| operation | audited action | roles | purpose | cost | audit | what it does |",
            "|---|---|---|---|---|---|---|"]
    for op in table():
        roles = ", ".join(r for r in ROLES if r in op.roles)
        rows.append(f"| `{op.name}` | `{op.action}` | {roles} | {op.purpose} | {op.cost} | {op.audit} | {op.summary} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # run as a script this file is __main__, apart from the module Service declares into
    from facekeeper import contract

    print(contract.markdown(), end="")
