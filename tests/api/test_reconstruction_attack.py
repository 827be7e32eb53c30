"""Issue 17's reconstruction attack, run over HTTP with a stolen device key, and shown to fail.

The keyed rotation preserves distances, so exact distances rebuild a template: with ``d0`` the distance
from the zero vector and ``d_i`` from the unit vector ``e_i``, ``|x - e_i|^2 = |x|^2 - 2 x_i + 1`` gives
``x_i = (d0^2 + 1 - d_i^2) / 2``: 129 calls for every enrolled person at once. A smarter attacker stays near
real faces and trilaterates from many distances. Both need scores; a device gets decisions, off-manifold
probes are refused, and a key that keeps probing is locked. The premise test runs the same arithmetic on
the distances the gallery computes inside the service, so the attack fails below because of what the
service shows, not because the attack is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from facekeeper.api.app import ServerSettings, create_app
from facekeeper.api.keys import KeyStore
from facekeeper.api.runner import ThreadRunner
from facekeeper.engine import Engine
from facekeeper.privacy import ConsentForm, probes
from facekeeper.service import Service
from tests.api.conftest import PURPOSE, Root, make_root
from tests.conftest import london

DIM = 128
ENROLLED = ("001", "002", "003", "004", "005")
SCORE_KEYS = {"distance", "similarity", "threshold", "estimated_fmr", "within_calibration", "candidates", "name",
              "pseudonym", "searched_subjects", "target_fmr_per_comparison"}
DESCRIPTORS = Path(__file__).resolve().parents[1] / "data" / "descriptors" / "london.npz"


@dataclass
class Attacked:
    root: Root
    http: TestClient
    svc: Service
    model_id: str
    truth: dict[str, np.ndarray]  # subject id -> the raw descriptor enrolled (what the attacker wants)

    def key(self, role: str = "device") -> dict[str, str]:
        """A fresh key of ``role``: each attack starts unlocked."""
        store = KeyStore(self.root.layout.api_keys_path)
        new = store.create("acme", role, PURPOSE if role == "device" else None, f"stolen {role}")
        store.close()
        return {"Authorization": f"Bearer {new.token}"}

    def identify(self, headers: dict[str, str], vec: np.ndarray) -> Any:
        return self.http.post("/v1/identify", headers=headers, json={
            "template": [float(v) for v in vec], "model_id": self.model_id, "k": 50, "purpose": PURPOSE})

    def verify(self, headers: dict[str, str], vec: np.ndarray, subject_id: str) -> Any:
        return self.http.post("/v1/verify", headers=headers, json={
            "template": [float(v) for v in vec], "model_id": self.model_id, "subject_id": subject_id,
            "purpose": PURPOSE})


@pytest.fixture
def attacked(tmp_path: Path, licensed: None, engine: Engine) -> Iterator[Attacked]:
    root = make_root(tmp_path, people=tuple(f"r-{p}" for p in ENROLLED))
    svc = Service.open(root.layout.data_dir("acme"), engine=engine)
    truth = {}
    for person in ENROLLED:
        svc.enroll([london(person)], f"r-{person}", purpose=PURPOSE)
        truth[f"r-{person}"] = engine.template(london(person))[0]
    runner = ThreadRunner(root.layout, 2, engines=lambda _settings: engine)
    settings = ServerSettings(in_process=True, deny_egress=False, rate=1000.0, burst=1000)
    with TestClient(create_app(root.layout, settings, runner=runner)) as http:
        yield Attacked(root, http, svc, engine.model_id, truth)
    svc.close()


def shown_distances(answer: dict[str, Any]) -> dict[str, float]:
    """Subject id -> distance, from whatever an identify answer shows."""
    shown = [answer.get("match") or {}, *answer.get("candidates", [])]
    return {c["subject_id"]: float(c["distance"]) for c in shown if "subject_id" in c and "distance" in c}


def rebuild(zero: dict[str, float], units: list[dict[str, float]]) -> dict[str, np.ndarray]:
    """Every template the zero and unit-vector answers give all 128 components of."""
    return {sid: np.array([(d0 ** 2 + 1 - u[sid] ** 2) / 2 for u in units])
            for sid, d0 in zero.items() if all(sid in u for u in units)}


def score_keys(data: Any) -> set[str]:
    """Every key anywhere in an answer that carries a score or another person's data."""
    if isinstance(data, dict):
        return (set(data) & SCORE_KEYS) | {k for v in data.values() for k in score_keys(v)}
    if isinstance(data, list):
        return {k for v in data for k in score_keys(v)}
    return set()


def test_premise_exact_distances_rebuild_every_template_and_the_rebuilt_one_verifies(attacked: Attacked) -> None:
    svc = attacked.svc

    def oracle(vec: np.ndarray) -> dict[str, float]:
        hits = svc.gallery.search(vec.astype(np.float32), attacked.model_id, 50)
        return {svc.gallery.identity(h.pseudonym)[0]: h.distance for h in hits}

    rebuilt = rebuild(oracle(np.zeros(DIM)), [oracle(e) for e in np.eye(DIM)])
    assert set(rebuilt) == set(attacked.truth)
    for sid, vec in rebuilt.items():
        assert np.abs(vec - attacked.truth[sid]).max() < 1e-3
        assert svc.verify_descriptor(vec, sid, purpose=PURPOSE).decision.match  # it would pass as the person


def test_a_device_key_learns_no_distance_and_rebuilds_nothing(attacked: Attacked) -> None:
    gate = attacked.key()
    answers = [attacked.identify(gate, v) for v in (np.zeros(DIM), *np.eye(DIM))]
    bodies = [a.json() for a in answers]
    assert rebuild(shown_distances(bodies[0]), [shown_distances(b) for b in bodies[1:]]) == {}
    assert not any(score_keys(b) for b, a in zip(bodies, answers, strict=True) if a.status_code == 200)
    codes = [b.get("code") for b in bodies]
    assert codes[:probes.SUSPICIOUS_LIMIT] == ["probe-suspicious"] * probes.SUSPICIOUS_LIMIT
    assert set(codes[probes.SUSPICIOUS_LIMIT:]) == {"probe-lockout"}  # the key stays locked
    assert {a.status_code for a in answers} == {403}
    entries = [e for e in attacked.svc.privacy.audit.entries() if e.role == "device" and e.action == "identify"]
    outcomes = [e.outcome for e in entries]
    assert outcomes.count("refused:probe-suspicious") == probes.SUSPICIOUS_LIMIT
    assert outcomes.count("refused:probe-lockout") == DIM + 1 - probes.SUSPICIOUS_LIMIT
    locked = attacked.verify(gate, attacked.truth["r-001"], "r-001")  # even a real face, while locked
    assert locked.status_code == 403 and locked.json()["code"] == "probe-lockout"


def test_an_attacker_near_real_faces_gets_decisions_only_then_is_locked(attacked: Attacked) -> None:
    """Probes a terminal could send (real strangers' descriptors, slightly moved) pass the screen; the answers
    hold no distance to trilaterate from, and a key that keeps getting 'unknown' is locked."""
    gate = attacked.key()
    data = np.load(DESCRIPTORS)
    strangers = data["dlib"][~np.isin(data["labels"], ENROLLED)]
    rng = np.random.default_rng(17)
    sent: list[np.ndarray] = []
    bodies = []
    for i in range(2 * probes.UNKNOWN_LIMIT):
        vec = strangers[i % len(strangers)] + rng.normal(0.0, 1e-4, DIM)
        answer = attacked.identify(gate, vec) if i % 2 else attacked.verify(gate, vec, "r-002")
        if answer.status_code != 200:
            break
        sent.append(vec)
        bodies.append(answer.json())
    assert answer.status_code == 403 and answer.json()["code"] == "probe-lockout"
    assert sum(b["match"] in (None, False) for b in bodies) == probes.UNKNOWN_LIMIT  # the last one locked it
    assert not any(score_keys(b) for b in bodies)
    assert all(set(b) <= {"match", "unknown", "mode", "target_fmr", "target_fpir", "note", "against", "calibration",
                          "calibration_note"} for b in bodies)
    assert all(set(b["match"]) == {"subject_id"} for b in bodies if isinstance(b["match"], dict))
    guess = np.mean(sent, axis=0)  # with no distances, the attacker's best estimate of anyone is the crowd
    assert not attacked.svc.verify_descriptor(guess, "r-002", purpose=PURPOSE).decision.match
    outcomes = [e.outcome for e in attacked.svc.privacy.audit.entries() if e.role == "device"]
    assert outcomes[-1] == "refused:probe-lockout"
    assert outcomes.count("unknown") + outcomes.count("no-match") == probes.UNKNOWN_LIMIT  # each one audited


def test_operators_see_quantised_scores_and_their_unit_vectors_are_refused_too(attacked: Attacked) -> None:
    op = attacked.key("operator")
    found = attacked.identify(op, attacked.truth["r-003"] + 1e-4).json()
    assert found["match"]["subject_id"] == "r-003" and found["candidates"]
    for c in found["candidates"]:
        assert c["distance"] == round(c["distance"], 2) and c["similarity"] == round(c["similarity"], 2)
        assert np.log10(c["estimated_fmr"]) == round(np.log10(c["estimated_fmr"]))  # a power of ten
    refused = attacked.identify(op, np.eye(DIM)[7])
    assert refused.status_code == 403 and refused.json()["code"] == "probe-suspicious"


def test_a_subject_enrolled_for_another_purpose_looks_unknown_to_a_device(attacked: Attacked) -> None:
    svc = attacked.svc
    svc.grant_consent("r-pay", "payment", ConsentForm("checkbox", "till 2"))
    svc.enroll([london("006")], "r-pay", purpose="payment")
    gate = attacked.key()
    probe = attacked.truth["r-001"]
    other_purpose = attacked.verify(gate, probe, "r-pay")
    nobody = attacked.verify(gate, probe, "r-nobody")
    assert other_purpose.status_code == nobody.status_code == 404
    strip = {"instance", "detail"}
    assert {k: v for k, v in other_purpose.json().items() if k not in strip} == \
        {k: v for k, v in nobody.json().items() if k not in strip}
    assert other_purpose.json()["detail"].replace("r-pay", "X") == nobody.json()["detail"].replace("r-nobody", "X")
    outcomes = [(e.action, e.outcome) for e in svc.privacy.audit.entries() if e.role == "device"]
    # both audited, and the auditor reads the true reason of the masked one
    assert outcomes[-2:] == [("verify", "refused:consent-required"), ("verify", "failed:unknown-subject")]
