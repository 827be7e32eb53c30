"""A search for a purpose only ever sees subjects with a live consent for that purpose."""

from __future__ import annotations

import numpy as np

from tests.privacy.conftest import ADMIN, DAY, Site, people

PURPOSES = ("access-control", "payment", "attendance")


def test_search_never_returns_a_subject_without_live_consent_for_the_purpose(site: Site) -> None:
    data = people(120, seed=3)
    rng = np.random.default_rng(5)
    granted: dict[str, set[str]] = {}
    for i, (sid, vecs) in enumerate(data.items()):
        chosen = {p for p in PURPOSES if rng.random() < 0.5} or {PURPOSES[i % 3]}
        granted[sid] = chosen
        for p in sorted(chosen):
            expiry = site.clock() + (10 if i % 7 == 0 else 900) * DAY  # every 7th expires soon
            site.privacy.grant(ADMIN, sid, p, method="checkbox", evidence=f"kiosk {i}", expires_at=expiry)
        site.enroll(sid, vecs, sorted(chosen)[0])

    def check() -> None:
        for purpose in PURPOSES:
            allowed = {sid for sid, ps in granted.items() if purpose in ps}
            assert len(site.privacy.allowed(purpose, site.clock())) == len(allowed)
            for sid, vecs in data.items():
                found = site.search(vecs[0], purpose, k=5)
                assert set(found) <= allowed, (purpose, sid)
                if sid in allowed:
                    assert found[0] == sid
                else:
                    assert sid not in found

    check()
    for sid in list(data)[::5]:  # withdraw one purpose of every fifth subject
        purpose = sorted(granted[sid])[0]
        site.privacy.withdraw(ADMIN, sid, purpose)
        granted[sid].discard(purpose)
    check()
    site.clock.advance(11)  # every seventh subject's consents expire
    for i, sid in enumerate(data):
        if i % 7 == 0:
            granted[sid] = set()
    check()


def test_a_payment_subject_is_never_returned_by_the_access_control_gate(site: Site) -> None:
    data = people(30, seed=8)
    for sid, vecs in data.items():
        purpose = "payment" if sid == "p0004" else "access-control"
        site.consent(sid, purpose)
        site.enroll(sid, vecs, purpose)
    assert "p0004" not in site.search(data["p0004"][0], "access-control", k=30)
    assert site.search(data["p0004"][0], "payment", k=30) == ["p0004"]


def test_the_allowed_set_cache_follows_grants_withdrawals_and_the_clock(site: Site) -> None:
    data = people(3)
    site.privacy.grant(ADMIN, "p0000", "payment", method="paper", evidence="f", expires_at=site.clock() + DAY)
    site.enroll("p0000", data["p0000"], "payment")
    assert len(site.privacy.allowed("payment", site.clock())) == 1
    site.consent("p0001", "payment")
    site.enroll("p0001", data["p0001"], "payment")
    assert len(site.privacy.allowed("payment", site.clock())) == 2
    other = site.reopen()  # a change made by another process is seen too
    other.privacy.withdraw(ADMIN, "p0001", "payment")
    other.close()
    assert len(site.privacy.allowed("payment", site.clock())) == 1
    site.clock.advance(2)
    assert site.privacy.allowed("payment", site.clock()) == []
