"""Prometheus metrics in the text exposition format, kept by hand (a few counters need no dependency).

Labels are chosen from a closed vocabulary: tenant name, the route *template* (``/v1/subjects/{subject_id}``,
never the path a caller sent, which would carry a subject id), HTTP method and status, and the
operation. No subject id, name, key id, template or image ever becomes a label. A key sees only its own
tenant's series; the egress counter is the process's and shown to all.

Gate mode runs in processes of its own (``facekeeper gate run``); each writes its counts to a status file in
the tenant's data folder, and ``gates`` reads them, so the tenant's gates show here too, labelled by door.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from facekeeper.gate.runner import GateMetrics

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


class Metrics:
    def __init__(self, egress_blocked: Callable[[], int] | None = None,
                 gates: Callable[[str], list[GateMetrics]] | None = None) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str, str], int] = {}
        self._latency: dict[tuple[str, str], _Histogram] = {}
        self._faces: dict[tuple[str, str], int] = {}
        self._limited: dict[str, int] = {}
        self._egress_blocked = egress_blocked or (lambda: 0)
        self._gates = gates or (lambda tenant: [])

    def request(self, tenant: str, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (tenant, route, method, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            self._latency.setdefault((tenant, route), _Histogram()).observe(seconds)

    def faces(self, tenant: str, operation: str, count: int) -> None:
        """Faces the engine processed for a request (detect: all found; enroll: templates made; 1 otherwise)."""
        if count <= 0:
            return
        with self._lock:
            self._faces[(tenant, operation)] = self._faces.get((tenant, operation), 0) + count

    def rate_limited(self, tenant: str) -> None:
        with self._lock:
            self._limited[tenant] = self._limited.get(tenant, 0) + 1

    def render(self, tenant: str) -> str:
        """The exposition text for one tenant's series (plus the process-wide egress counter)."""
        out: list[str] = []
        with self._lock:
            out += _header("facekeeper_requests_total", "counter", "HTTP requests answered, by route template and"
                                                                   " status.")
            for (t, route, method, status), n in sorted(self._requests.items()):
                if t == tenant:
                    labels = _labels(tenant=t, route=route, method=method, status=status)
                    out.append(f"facekeeper_requests_total{labels} {n}")
            out += _header("facekeeper_request_duration_seconds", "histogram", "Time to answer a request.")
            for (t, route), h in sorted(self._latency.items()):
                if t != tenant:
                    continue
                out += _histogram("facekeeper_request_duration_seconds", {"tenant": t, "route": route}, BUCKETS,
                                  h.counts, h.total, h.n)
            out += _header("facekeeper_faces_processed_total", "counter", "Faces the engine processed, by operation.")
            for (t, op), n in sorted(self._faces.items()):
                if t == tenant:
                    out.append(f"facekeeper_faces_processed_total{_labels(tenant=t, operation=op)} {n}")
            out += _header("facekeeper_rate_limited_total", "counter", "Requests refused by the per-key rate limit.")
            if tenant in self._limited:
                out.append(f"facekeeper_rate_limited_total{_labels(tenant=tenant)} {self._limited[tenant]}")
        out += _gate_lines(tenant, self._gates(tenant))
        out += _header("facekeeper_egress_blocked_total", "counter",
                       "Outbound connections the egress guard refused (should stay 0).")
        out.append(f"facekeeper_egress_blocked_total {self._egress_blocked()}")
        return "\n".join(out) + "\n"


_GATE_SERIES = (  # name, kind, help, the GateMetrics field
    ("facekeeper_gate_connected", "gauge", "1 while the gate's camera gives frames.", "connected"),
    ("facekeeper_gate_frames_per_second", "gauge", "Frames the gate processed per second (last interval).",
     "frames_per_second"),
    ("facekeeper_gate_frames_total", "counter", "Frames the gate processed.", "frames"),
    ("facekeeper_gate_decode_errors_total", "counter", "Frames the camera stream failed to give.", "decode_errors"),
    ("facekeeper_gate_reconnects_total", "counter", "Times the gate reconnected to a camera that dropped.",
     "reconnects"),
    ("facekeeper_gate_tracks_active", "gauge", "Faces followed now.", "tracks_active"),
    ("facekeeper_gate_tracks_total", "counter", "Passes (face tracks) started.", "tracks_started"),
    ("facekeeper_gate_tracks_without_match_total", "counter", "Passes that ended without an open.",
     "tracks_without_match"),
)


def _gate_lines(tenant: str, gates: list[GateMetrics]) -> list[str]:
    """The gates' series: counts and timings per door, never a face or who passed."""
    from facekeeper.gate.runner import LATENCY_BUCKETS

    out: list[str] = []
    for name, kind, text, attr in _GATE_SERIES:
        out += _header(name, kind, text)
        for g in gates:
            out.append(f"{name}{_labels(tenant=tenant, door=g.door)} {float(getattr(g, attr)):g}")
    out += _header("facekeeper_gate_decisions_total", "counter", "Door decisions, by outcome.")
    for g in gates:
        for outcome, n in sorted(g.decisions.items()):
            out.append(f"facekeeper_gate_decisions_total{_labels(tenant=tenant, door=g.door, outcome=outcome)} {n}")
    out += _header("facekeeper_gate_door_answers_total", "counter", "The door output's answers to opens.")
    for g in gates:
        for answer, n in sorted(g.door_answers.items()):
            out.append(f"facekeeper_gate_door_answers_total{_labels(tenant=tenant, door=g.door, answer=answer)} {n}")
    out += _header("facekeeper_gate_decision_latency_seconds", "histogram",
                   "From a face reaching a usable size to its door decision.")
    for g in gates:
        out += _histogram("facekeeper_gate_decision_latency_seconds", {"tenant": tenant, "door": g.door},
                          LATENCY_BUCKETS, g.latency_buckets, g.latency_sum, g.latency_count)
    return out


def _header(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _histogram(name: str, labels: dict[str, str], bounds: Sequence[float], counts: Sequence[int], total: float,
               n: int) -> list[str]:
    """A Prometheus histogram's lines: cumulative buckets (the last one +Inf), sum and count."""
    out, cumulative = [], 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        out.append(f"{name}_bucket{_labels(**labels, le=le)} {cumulative}")
    out.append(f"{name}_sum{_labels(**labels)} {total:.6f}")
    out.append(f"{name}_count{_labels(**labels)} {n}")
    return out


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


def gates_in(data_dir: Callable[[str], Path]) -> Callable[[str], list[GateMetrics]]:
    """``Metrics(gates=...)`` for a service root: a tenant's gates are the status files in its data folder."""

    def read(tenant: str) -> list[GateMetrics]:
        from facekeeper.gate.runner import read_statuses

        return read_statuses(data_dir(tenant))

    return read
