"""Liveness sessions counted by outcome over a period, for the console's status page: counts only, from the
session table (``sessions.SCHEMA``), never a session's id, device, person or reasons."""

from __future__ import annotations

from typing import Any

from facekeeper.db.database import Connection

# what a session's state says once it is counted (an open session past its deadline was never answered)
OUTCOMES = {"live": "live, not yet used", "consumed": "live, used by a decision", "spoof": "spoof",
            "uncertain": "uncertain", "open": "waiting for frames", "expired": "never answered"}


def outcomes(db: Connection, since: float, now: float) -> dict[str, Any]:
    """Sessions started in [``since``, ``now``] by outcome (every key of ``OUTCOMES``, zero when none)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for state, lapsed, n in db.execute(
            "SELECT state, CASE WHEN state = 'open' AND expires_at < ? THEN 1 ELSE 0 END, COUNT(*)"
            " FROM liveness_sessions WHERE created_at >= ? AND created_at <= ? GROUP BY 1, 2", (now, since, now)):
        key = "expired" if lapsed else str(state)
        if key in counts:
            counts[key] += int(n)
    return {"since": since, "until": now, "by_outcome": counts, "total": sum(counts.values())}
