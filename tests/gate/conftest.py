"""A deployment with a door and three enrolled volunteers, and a gate engine that shares the session's models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from facekeeper.config import DoorSettings
from facekeeper.engine import Engine
from facekeeper.gate.decision import GateDecision, Grant
from facekeeper.gate.runner import GateMetrics, GateRunner, status_path
from facekeeper.gate.source import Source
from facekeeper.privacy import Actor
from facekeeper.service import Service
from tests.conftest import london
from tests.publisher_fixtures import licensed_fixture  # noqa: F401

DEVICE = Actor("gate-1", "device")
ADMIN = Actor("setup", "admin")
ENROLLED = ("001", "002", "003")
STRANGER = "010"  # consented, never enrolled: to the gate, a stranger
DOOR = "main"


@dataclass
class Recorder:
    """A door output that remembers the grants it was given (and answers like a dry run)."""

    grants: list[Grant] = field(default_factory=list)
    kind: str = "recorder"

    def __call__(self, grant: Grant) -> str:
        self.grants.append(grant)
        return "logged"

    def close(self) -> None:
        return None


@pytest.fixture
def site(licensed: None, deployment: Service) -> Service:  # licensed first: it patches Service.init
    deployment.settings.doors[DOOR] = DoorSettings(anti_passback_seconds=120.0, min_presence_seconds=0.3)
    deployment.settings.save()
    for person in ENROLLED:
        deployment.enroll([london(person)], person, actor=ADMIN)
    return deployment


@pytest.fixture(scope="session")
def gate_engine(engine: Engine) -> Engine:
    """Detection at the gate's working size (no upsampling: a face too small to use is not looked for)."""
    return Engine(replace(engine.settings, upsample=0, quick_face=0.0), engine.quality_settings, engine.limits,
                  embedder=engine.embedder)


def decider(svc: Service, output: Callable[[Grant], str] | None) -> Callable[[list[np.ndarray], float],
                                                                               GateDecision]:
    return lambda descriptors, present: svc.gate_decide(descriptors, DOOR, present_for=present, open_door=output,
                                                        actor=DEVICE)


def run_gate(svc: Service, engine: Engine, source: Source | Path,
             output: Callable[[Grant], str] | None = None) -> tuple[GateMetrics, list[GateDecision]]:
    decisions: list[GateDecision] = []
    src = source if isinstance(source, Source) else Source(str(source))
    runner = GateRunner(src, engine, decider(svc, output), door=DOOR, settings=svc.settings.gate,
                        min_presence=svc.settings.doors[DOOR].min_presence_seconds,
                        status_file=status_path(svc.settings.data_dir, DOOR), on_decision=decisions.append)
    return runner.run(), decisions


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    yield Recorder()
