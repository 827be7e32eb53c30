"""The probe screen and the per-key memory: real faces pass, probes do not, and probing keys are locked."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from facekeeper.engine import Engine
from facekeeper.errors import FacekeeperError, ProbeLockout
from facekeeper.privacy import probes
from tests.conftest import DATA

DIM = 128
DESCRIPTORS = Path(__file__).resolve().parents[1] / "data" / "descriptors" / "london.npz"


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return np.load(DESCRIPTORS)["dlib"].astype(np.float64)


def test_no_real_descriptor_is_refused(real: np.ndarray, engine: Engine) -> None:
    screen = probes.screen("dlib-resnet-v1")
    assert len(real) == 204 and [screen.problem(v) for v in real] == [None] * len(real)
    photos = [p for folder in ("london", "people", "edge") for p in sorted((DATA / folder).rglob("*"))
              if p.suffix.lower() in {".jpg", ".jpeg", ".png"}]
    made = []
    for photo in photos:  # the committed test photos (600x600 copies, other resolutions), by this engine now
        try:
            made.append(engine.template(photo)[0])
        except FacekeeperError:
            continue
    assert len(made) >= 40 and [screen.problem(v) for v in made] == [None] * len(made)


def test_probes_outside_the_face_manifold_are_refused(real: np.ndarray) -> None:
    screen = probes.screen("dlib-resnet-v1")
    rng = np.random.default_rng(3)
    face = real[0]
    typical = float(np.linalg.norm(face))
    sparse = face.copy()
    sparse[np.argsort(np.abs(face))[:60]] = 0.0
    moved = face + screen.outside[:, 0] * 0.2  # a real face pushed where no face goes
    cases = {
        "zero": (np.zeros(DIM), "norm"),
        "unit": (np.eye(DIM)[5], "norm"),
        "scaled one-hot": (np.eye(DIM)[5] * typical, "peak"),
        "tiny": (face * 0.01, "norm"),
        "huge": (face * 3, "norm"),
        "sparse": (sparse * typical / np.linalg.norm(sparse), "sparse"),
        "random": (rng.standard_normal(DIM) / np.sqrt(DIM) * typical, "far-from-faces"),
        "off the manifold": (moved, "off-manifold"),
        "negated face": (-face, "far-from-faces"),
    }
    assert {name: screen.problem(vec) for name, (vec, _) in cases.items()} == {
        name: reason for name, (_, reason) in cases.items()}
    assert all(screen.problem(e * s) is not None for e in np.eye(DIM) for s in (1.0, typical, -typical))


def test_the_shipped_statistics_say_where_they_come_from_and_fit_the_bounds() -> None:
    doc = json.loads(resources.files("facekeeper").joinpath("data/probe_screen.json").read_text())
    measured = doc["provenance"]["measured"]
    assert doc["provenance"]["descriptors"] >= 3000 and doc["outside_shape"] == [DIM, DIM - probes.FACE_DIMENSIONS]
    assert probes.NORM_MIN < measured["norm"][0] < measured["norm"][1] < probes.NORM_MAX
    assert measured["peak_share_max"] < probes.PEAK_SHARE_MAX
    assert measured["near_zero_components_max"] < probes.NEAR_ZERO_MAX
    assert measured["distance_to_mean_max"] < probes.DISTANCE_TO_MEAN_MAX
    assert measured["residual_max"] * 10 < probes.RESIDUAL_MAX


def test_another_model_has_no_screen_so_its_descriptors_are_refused() -> None:
    with pytest.raises(FacekeeperError):
        probes.screen("facenet-20180408-102900")


def test_refused_probes_lock_the_key_for_a_while_and_only_that_key() -> None:
    memory = probes.ProbeMemory(window=60, suspicious_limit=3, unknown_limit=100, lockout=300)
    for t in (0.0, 1.0):
        memory.refused("gate-1", t)
    memory.check("gate-1", 2.0)  # two strikes: still answered
    memory.refused("gate-1", 2.0)
    with pytest.raises(ProbeLockout) as info:
        memory.check("gate-1", 3.0)
    assert info.value.code == "probe-lockout" and info.value.details["retry_after"] == 300
    memory.check("gate-2", 3.0)  # another key is not touched
    with pytest.raises(ProbeLockout):
        memory.check("gate-1", 301.0)
    memory.check("gate-1", 303.0)  # served its time


def test_strikes_spread_wider_than_the_window_do_not_lock() -> None:
    memory = probes.ProbeMemory(window=60, suspicious_limit=3, unknown_limit=100, lockout=300)
    for t in (0.0, 50.0, 100.0, 150.0, 200.0):
        memory.refused("gate-1", t)
        memory.check("gate-1", t)


def test_many_unknown_answers_lock_the_key_and_matches_do_not_count() -> None:
    memory = probes.ProbeMemory(window=60, suspicious_limit=3, unknown_limit=4, lockout=300)
    for t in range(10):
        memory.answered("gate-1", float(t), unknown=False)
    for t in range(3):
        memory.answered("gate-1", 10.0 + t, unknown=True)
    memory.check("gate-1", 13.0)
    memory.answered("gate-1", 13.0, unknown=True)
    with pytest.raises(ProbeLockout):
        memory.check("gate-1", 14.0)
