"""Metrics: Prometheus text, route templates as labels, one tenant's series per key, no personal data."""

from __future__ import annotations

from facekeeper.api.metrics import Metrics


def test_render_is_prometheus_text_with_a_tenants_own_series_only() -> None:
    m = Metrics(egress_blocked=lambda: 0)
    m.request("acme", "/v1/subjects/{subject_id}", "GET", 200, 0.03)
    m.request("acme", "/v1/identify", "POST", 200, 0.2)
    m.request("globex", "/v1/identify", "POST", 403, 0.001)
    m.faces("acme", "identify", 1)
    text = m.render("acme")
    assert 'facekeeper_requests_total{tenant="acme",route="/v1/subjects/{subject_id}",method="GET",status="200"} 1' \
        in text
    assert 'facekeeper_request_duration_seconds_bucket{tenant="acme",route="/v1/identify",le="0.25"} 1' in text
    assert 'facekeeper_request_duration_seconds_bucket{tenant="acme",route="/v1/identify",le="+Inf"} 1' in text
    assert 'facekeeper_faces_processed_total{tenant="acme",operation="identify"} 1' in text
    assert "globex" not in text
    assert "facekeeper_egress_blocked_total 0" in text
    for line in text.splitlines():
        assert line.startswith("#") or line.split(" ")[-1].replace(".", "").isdigit()


def test_label_values_are_escaped() -> None:
    m = Metrics()
    m.request('we"ird', "/v1/x\n", "GET", 200, 0.1)
    assert 'tenant="we\\"ird",route="/v1/x\\n"' in m.render('we"ird')
