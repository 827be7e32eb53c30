"""The calibration in force and where it came from, for an auditor: the signed bundle's tables (model, FMR →
threshold, what they were measured on, bundle version, signer), the site's own table when one was adopted,
and the last ``facekeeper eval`` run recorded in the deployment.

``facekeeper eval --deployment`` keeps its summary and DET curve in ``DATA_DIR/evals/last.json`` (0600,
replaced atomically): aggregate numbers only (counts, rates, thresholds, the curve's points), never a photo,
a path, a template or a score of one pair. The console draws the curve from it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facekeeper.bundle import Bundle
from facekeeper.config import CONFIG_NAME
from facekeeper.errors import ConfigError
from facekeeper.federation.calibrate import SiteCalibration, iso
from facekeeper.matching import CalibrationTable

LAST_EVAL = Path("evals") / "last.json"
EVAL_FORMAT = "facekeeper.eval-summary/1"


def table_summary(table: CalibrationTable) -> dict[str, Any]:
    """A table as an auditor reads it: FMR → threshold and what it was measured on (the tail fit without its
    bootstrap replicates)."""
    out: dict[str, Any] = {"model_id": table.model_id, "source": table.source,
                           "impostor_pairs": table.impostor_pairs, "genuine_pairs": table.genuine_pairs,
                           "points": [{"fmr": f, "threshold": t} for f, t in sorted(table.points, reverse=True)],
                           "tail": None}
    if table.tail is not None:
        t = table.tail
        out["tail"] = {"exceedances": t.exceedances, "impostor_pairs": t.impostor_pairs, "xi": round(t.xi, 4)}
    return out


def calibration_status(bundle: Bundle, model_id: str, site: SiteCalibration, data_dir: Path) -> dict[str, Any]:
    """What decides now and its provenance (see the module's docstring)."""
    signed = [{**table_summary(t), "kind": "single model"} for t in bundle.calibration.values()]
    if bundle.fusion is not None:
        signed.append({**table_summary(bundle.fusion.table), "kind": "accurate mode: dlib fused with its side"
                                                                     " model(s), as the id names them"})
    try:
        shown: dict[str, Any] = site.show()
        site_error = None
    except ConfigError as exc:  # an altered site file: decisions refuse it too, so say so rather than fail
        shown, site_error = {}, exc.message
    in_force = []
    for name, mode in site.modes.items():
        d = shown.get(name) or {}
        adopted = d.get("adopted")
        in_force.append({"mode": name, "model_id": mode.table_key,
                         "table": "site" if adopted else "signed",
                         "adopted_at": d.get("adopted_at"),
                         "site_table": table_summary(CalibrationTable.from_dict(adopted)) if adopted else None,
                         "measured": _measured(d.get("proposed"))})
    return {"engine_model": model_id,
            "bundle": {"version": bundle.version, "created_at": bundle.created_at, "signed_by": bundle.key_id,
                       "models": bundle.summary()["models"]},
            "signed_tables": signed, "in_force": in_force, "site_error": site_error,
            "last_eval": last_eval(data_dir)}


def _measured(proposal: dict[str, Any] | None) -> dict[str, Any] | None:
    """The last site measurement of a mode, in brief (``facekeeper calibrate show`` has it all)."""
    if not proposal:
        return None
    return {k: proposal.get(k) for k in ("measured_at", "subjects", "impostor_pairs", "genuine_pairs", "points",
                                         "refused")}


def record_eval(data_dir: Path, summary: dict[str, Any], curves: dict[str, Sequence[tuple[float, float]]],
                now: float | None = None) -> Path:
    """Keep an eval run's summary and DET curves (mode → (FMR, FNMR) points) as the deployment's last eval."""
    if not (data_dir / CONFIG_NAME).is_file():
        raise ConfigError(f"no deployment at {data_dir}: give --home (or FACEKEEPER_HOME) of an initialised"
                          " deployment to record the eval in")
    doc = {"format": EVAL_FORMAT, "recorded_at": iso(time.time() if now is None else now), "summary": summary,
           "det": {mode: [[float(f"{fmr:.4g}"), float(f"{fnmr:.4g}")] for fmr, fnmr in points]
                   for mode, points in curves.items()}}
    path = data_dir / LAST_EVAL
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    os.replace(tmp, path)
    return path


def last_eval(data_dir: Path) -> dict[str, Any] | None:
    """The last recorded eval, or None; an unreadable file is reported in the result, not raised."""
    path = data_dir / LAST_EVAL
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"error": f"{LAST_EVAL} is unreadable ({exc.__class__.__name__}): run the eval again"}
    if not isinstance(doc, dict) or doc.get("format") != EVAL_FORMAT:
        return {"error": f"{LAST_EVAL} is not an eval summary facekeeper wrote: run the eval again"}
    return doc

