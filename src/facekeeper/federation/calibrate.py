"""Site self-calibration: thresholds measured on the site's own people (``facekeeper calibrate``).

A calibration table belongs to the population it was measured on; the shipped one comes from faces94, one
homogeneous group photographed alike. A site's gallery holds what it needs to measure its own: impostor
pairs across subjects and genuine pairs within them (``pairs``: each subject's share bounded). Only
subjects with a live consent for ``model-improvement`` take part.

``measure`` derives a threshold for each FMR the data can support, with a confidence interval, and shows it
beside the shipped table. The rule: an FMR ``f`` needs at least ``MIN_FALSE_MATCHES / f`` impostor pairs
(30 false matches at the threshold), otherwise it is refused with the numbers. The measurement is kept as a
proposal; ``adopt`` makes the service decide with it, ``revert`` returns to the signed table. Both are
audited, and the file holding proposals and adopted tables is MAC'd with a key derived from the deployment
key, so whoever can write the data folder cannot loosen the thresholds. Outputs are aggregates only:
counts, distances, rates; never a subject, a template or a pair.

Below the lowest FMR the pairs support, the site's own impostor tail is fitted (``facekeeper.tail``) when
there are enough pairs: the refused FMRs are shown with the tail's threshold and 95% interval, marked
extrapolated, and an adopted table carries the fit, so decisions past its points follow the purpose's
``beyond_table`` as with the signed one.
"""

from __future__ import annotations

import hmac
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

import numpy as np

from facekeeper.bundle import Bundle
from facekeeper.config import Settings
from facekeeper.errors import CalibrationRefused, ConfigError, InvalidInput, ModelMismatch
from facekeeper.evaluation import CALIBRATION_FMRS
from facekeeper.federation.pairs import Mode, PairDistances, PairPlan, plan_distances
from facekeeper.gallery.gallery import Gallery
from facekeeper.gallery.keys import DeploymentKey
from facekeeper.matching import CalibrationTable
from facekeeper.privacy import Actor, Privacy
from facekeeper.tail import METHOD as TAIL_METHOD
from facekeeper.tail import TailFit, fit_tail

PURPOSE = "model-improvement"
MIN_FALSE_MATCHES = 30  # an FMR f needs >= 30 / f impostor pairs
MIN_SUBJECTS = 10  # below this a distribution says too much about too few people
Z95 = 1.959964
FILE_NAME = "site-calibration.json"


@dataclass(frozen=True)
class Point:
    fmr: float
    threshold: float
    low: float  # 95% interval of the threshold (independent pairs assumed: a lower bound on the real width)
    high: float
    fnmr: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"fmr": self.fmr, "threshold": round(self.threshold, 4), "ci95": [round(self.low, 4),
                round(self.high, 4)], "fnmr": None if self.fnmr is None else round(self.fnmr, 5)}


@dataclass(frozen=True)
class ShippedCheck:
    """How the signed table's threshold for ``fmr`` behaves on this site's pairs."""

    fmr: float
    threshold: float
    site_fmr: float  # share of the site's impostor pairs at or below the shipped threshold
    site_fnmr: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"fmr": self.fmr, "threshold": round(self.threshold, 4),
                "site_fmr": float(f"{self.site_fmr:.3g}"),
                "site_fnmr": None if self.site_fnmr is None else round(self.site_fnmr, 5)}


@dataclass
class Measurement:
    mode: str
    table_key: str
    subjects: int
    impostor_pairs: int
    genuine_pairs: int
    plan: PairPlan
    points: list[Point]
    refused: list[dict[str, Any]]  # {"fmr", "needs", "have"} for each FMR the pairs cannot support
    shipped: list[ShippedCheck]
    measured_at: float
    table: CalibrationTable | None = field(default=None)
    tail: TailFit | None = None  # the site's impostor tail, when there were enough pairs to fit it

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "table": self.table_key, "subjects": self.subjects,
                "impostor_pairs": self.impostor_pairs, "genuine_pairs": self.genuine_pairs,
                "per_subject_cap": {"impostor": self.plan.impostor_cap, "genuine": self.plan.genuine},
                "rule": f"an FMR f needs at least {MIN_FALSE_MATCHES}/f impostor pairs",
                "points": [p.to_dict() for p in self.points], "refused": self.refused,
                "shipped": [s.to_dict() for s in self.shipped], "measured_at": iso(self.measured_at),
                "tail": self.tail_summary()}

    def tail_summary(self) -> dict[str, Any] | None:
        """The fit and, for each refused FMR, its extrapolated threshold and 95% interval (aggregates only)."""
        if self.tail is None:
            return None
        t = self.tail
        rows = []
        for r in self.refused:
            value, (low, high) = t.threshold(r["fmr"]), t.interval(r["fmr"])
            if self.table is not None and r["fmr"] < self.table.min_fmr:  # as the table answers: never looser
                th = self.table.threshold(r["fmr"])
                value, (low, high) = th.value, th.interval or (low, high)
            rows.append({"fmr": r["fmr"], "threshold": round(value, 4), "ci95": [round(low, 4), round(high, 4)]})
        return {"method": TAIL_METHOD, "exceedances": t.exceedances, "p_u": t.p_u, "xi": round(t.xi, 4),
                "extrapolated": rows}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def site_point(genuine: np.ndarray, impostor_sorted: np.ndarray, fmr: float) -> Point:
    """Threshold at ``fmr`` as ``evaluation.operating_point`` defines it, with a rank-based 95% interval."""
    n = len(impostor_sorted)
    allowed = math.floor(fmr * n + 1e-9)
    spread = Z95 * math.sqrt(max(allowed * (1 - fmr), 1.0))
    lo_rank = max(1, math.floor(allowed - spread))
    hi_rank = min(n, math.ceil(allowed + spread))
    threshold = float(impostor_sorted[allowed - 1])
    fnmr = float(np.mean(genuine > threshold)) if len(genuine) else None
    return Point(fmr, threshold, float(impostor_sorted[lo_rank - 1]), float(impostor_sorted[hi_rank - 1]), fnmr)


def measure_distances(d: PairDistances, mode: Mode, plan: PairPlan, fmrs: Sequence[float],
                      shipped: CalibrationTable | None, now: float) -> Measurement:
    """Points, refusals and the shipped table's behaviour from one mode's pair distances."""
    imp = np.sort(d.impostor)
    points, refused = [], []
    for f in sorted(fmrs, reverse=True):
        needs = math.ceil(MIN_FALSE_MATCHES / f)
        if len(imp) < needs or d.subjects < MIN_SUBJECTS:
            refused.append({"fmr": f, "needs_impostor_pairs": needs, "have": len(imp),
                            "needs_subjects": MIN_SUBJECTS, "subjects": d.subjects})
        else:
            points.append(site_point(d.genuine, imp, f))
    checks = []
    if shipped is not None and len(imp):
        for f, t in shipped.points:
            fnmr = float(np.mean(d.genuine > t)) if len(d.genuine) else None
            checks.append(ShippedCheck(f, t, float(np.searchsorted(imp, t, side="right")) / len(imp), fnmr))
    tail = fit_tail(imp) if d.subjects >= MIN_SUBJECTS else None
    m = Measurement(mode.name, mode.table_key, d.subjects, len(imp), len(d.genuine), plan, points, refused,
                    checks, now, tail=tail)
    if points:
        m.table = CalibrationTable(
            mode.table_key,
            f"site self-calibration {iso(now)[:10]}: {d.subjects} subjects, {len(imp)} impostor and"
            f" {len(d.genuine)} genuine pairs (at most {plan.impostor_cap} impostor pairs per subject)",
            len(imp), len(d.genuine), tuple(sorted((p.fmr, round(p.threshold, 4)) for p in points)), tail)
    return m


class SiteTables:
    """Proposed and adopted site tables in ``DATA_DIR/site-calibration.json``, MAC'd under the deployment key."""

    def __init__(self, settings: Settings, key: DeploymentKey) -> None:
        self.path = settings.data_dir / FILE_NAME
        self._deployment_id = settings.deployment_id
        self._key = key.derive("site-calibration/hmac-sha256")
        self._adopted: tuple[tuple[int, int], dict[str, CalibrationTable]] | None = None

    def _mac(self, body: dict[str, Any]) -> str:
        text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self._key, text, sha256).hexdigest()

    def read(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"deployment_id": self._deployment_id, "proposed": {}, "adopted": {}}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path} is unreadable ({exc}): 'facekeeper calibrate revert' resets it") from None
        mac = raw.pop("mac", "")
        if raw.get("deployment_id") != self._deployment_id or not hmac.compare_digest(self._mac(raw), str(mac)):
            raise ConfigError(f"{self.path} was altered or belongs to another deployment: thresholds from it are"
                              " refused ('facekeeper calibrate revert' resets it to the signed table)")
        return raw

    def write(self, body: dict[str, Any]) -> None:
        body = {**body, "deployment_id": self._deployment_id}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**body, "mac": self._mac(body)}, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)

    def adopted(self, table_key: str) -> CalibrationTable | None:
        """The adopted table for ``table_key``; re-read (and re-checked) only when the file changes, so
        a service picks up an adoption made by another process at its next decision."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if self._adopted is None or self._adopted[0] != stamp:
            tables = {k: CalibrationTable.from_dict(v["table"]) for k, v in self.read()["adopted"].items()}
            self._adopted = (stamp, tables)
        return self._adopted[1].get(table_key)


def table_digest(table: CalibrationTable) -> str:
    return sha256(json.dumps(table.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


class SiteCalibration:
    """Measure, adopt and revert the site's own tables; look up the adopted one for the service."""

    def __init__(self, settings: Settings, key: DeploymentKey, gallery: Gallery, privacy: Privacy,
                 bundle: Bundle, modes: Sequence[Mode]) -> None:
        self.settings = settings
        self.gallery = gallery
        self.privacy = privacy
        self.bundle = bundle
        self.modes = {m.name: m for m in modes}
        self.tables = SiteTables(settings, key)
        self._pair_key = key.derive("calibration/pairs")

    def mode(self, name: str | None) -> Mode:
        if name is None:
            return next(iter(self.modes.values()))
        if name not in self.modes:
            raise InvalidInput(f"unknown mode {name!r}: this installation calibrates {', '.join(self.modes)}")
        return self.modes[name]

    def participants(self, now: float) -> list[str]:
        """Subjects with templates and a live ``model-improvement`` consent: the only ones measured."""
        return self.privacy.ledger.allowed(PURPOSE, now)

    def templates(self, mode: Mode, now: float) -> dict[str, dict[str, np.ndarray]]:
        out: dict[str, dict[str, np.ndarray]] = {}
        for pseudonym in self.participants(now):
            per_source = {}
            for model_id in mode.sources:
                try:
                    per_source[model_id] = self.gallery.templates(pseudonym, model_id)
                except ModelMismatch:
                    continue
            out[pseudonym] = per_source
        return out

    def distances(self, mode: Mode, plan: PairPlan, now: float) -> PairDistances:
        return plan_distances(self._pair_key, mode, self.templates(mode, now), plan)

    def shipped(self, mode: Mode) -> CalibrationTable | None:
        return self.bundle.calibration.get(mode.table_key)

    def measure(self, actor: Actor, mode_name: str | None = None, fmrs: Sequence[float] = CALIBRATION_FMRS,
                plan: PairPlan | None = None) -> Measurement:
        """Measure one mode's table; refused (``CalibrationRefused``) when no requested FMR is supported."""
        if not fmrs or any(not 0 < f < 1 for f in fmrs):
            raise InvalidInput("each FMR must be between 0 and 1")
        plan = plan or PairPlan(self.settings.calibration.partners, self.settings.calibration.per_partner,
                                self.settings.calibration.genuine)
        mode = self.mode(mode_name)
        with self.privacy.operation(actor, "calibration.measure", PURPOSE) as op:
            m = measure_distances(self.distances(mode, plan, op.now), mode, plan, fmrs, self.shipped(mode), op.now)
            detail = {"mode": mode.name, "subjects": m.subjects, "impostor_pairs": m.impostor_pairs,
                      "genuine_pairs": m.genuine_pairs, "points": len(m.points), "refused": len(m.refused)}
            if m.table is None:
                f = min(fmrs)
                raise CalibrationRefused(
                    f"too few pairs to calibrate mode {mode.name}: an FMR f needs at least {MIN_FALSE_MATCHES}/f"
                    f" impostor pairs and {MIN_SUBJECTS} subjects with a live {PURPOSE} consent; this gallery gives"
                    f" {m.impostor_pairs} pairs from {m.subjects} subjects (FMR {max(fmrs):g} needs"
                    f" {math.ceil(MIN_FALSE_MATCHES / max(fmrs))}, {f:g} needs {math.ceil(MIN_FALSE_MATCHES / f)})",
                    **detail)
            body = self.tables.read()
            body["proposed"][mode.table_key] = {"table": m.table.to_dict(), "measured_at": op.now,
                                                "measurement": m.to_dict()}
            self.tables.write(body)
            self.privacy.record(op, "ok", detail={**detail, "table": table_digest(m.table)})
            return m

    def show(self) -> dict[str, Any]:
        body = self.tables.read()
        out = {}
        for mode in self.modes.values():
            shipped = self.shipped(mode)
            out[mode.name] = {
                "shipped": shipped.to_dict() if shipped else None,
                "proposed": body["proposed"].get(mode.table_key, {}).get("measurement"),
                "adopted": body["adopted"].get(mode.table_key, {}).get("table"),
                "adopted_at": iso(body["adopted"][mode.table_key]["adopted_at"])
                if mode.table_key in body["adopted"] else None,
            }
        return out

    def adopt(self, actor: Actor, mode_name: str | None = None) -> CalibrationTable:
        """Decide with the last measured site table for the mode, from now on."""
        mode = self.mode(mode_name)
        with self.privacy.operation(actor, "calibration.adopt", PURPOSE) as op:
            body = self.tables.read()
            proposal = body["proposed"].get(mode.table_key)
            if proposal is None:
                raise InvalidInput(f"no site table measured for mode {mode.name}: run 'facekeeper calibrate' first")
            table = CalibrationTable.from_dict(proposal["table"])
            body["adopted"][mode.table_key] = {"table": proposal["table"], "adopted_at": op.now,
                                               "measured_at": proposal["measured_at"]}
            self.tables.write(body)
            self.privacy.record(op, "ok", detail={"mode": mode.name, "table": table_digest(table),
                                                  "impostor_pairs": table.impostor_pairs,
                                                  "points": len(table.points)})
            return table

    def revert(self, actor: Actor, mode_name: str | None = None) -> CalibrationTable | None:
        """Back to the signed table for the mode; returns the signed table (None if the bundle has none)."""
        mode = self.mode(mode_name)
        with self.privacy.operation(actor, "calibration.revert", PURPOSE) as op:
            try:
                body = self.tables.read()
            except ConfigError:  # an altered file is what revert is for
                self.tables.reset()
                body = self.tables.read()
            was = body["adopted"].pop(mode.table_key, None)
            self.tables.write(body)
            self.privacy.record(op, "ok" if was else "nothing-adopted", detail={"mode": mode.name})
            return self.shipped(mode)

    def adopted(self, table_key: str) -> CalibrationTable | None:
        return self.tables.adopted(table_key)
