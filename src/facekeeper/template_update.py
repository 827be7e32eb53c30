"""Moving to a new model without photos: when may a match add a model's template from its probe.

A site that enrolled with dlib alone holds no photos to enroll again with a new model (SFace, FaceNet). With
``[purposes.NAME] template_update = "on-match"`` a *photo* probe that dlib matched, at a false-match rate
stricter than the decision's own, adds the templates of ``[engine] side_models`` the subject lacks, computed
from that probe: only when the person's consent allows it, only from a photo that enrollment would accept
(one face, the enrollment quality gate), one template per model, sealed under the subject's key and audited.
The rules are the pure functions here; ``Service`` applies them (docs/accuracy.md, "Moving to a new model
without photos").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from facekeeper.matching import CalibrationTable, Decision, decide

DEFAULT_FMR = 1e-5
# The re-described probe must be the face that matched: the pipeline is deterministic, so a larger difference
# means the photo behind the probe changed between the two reads.
SAME_FACE = 1e-4


def strict_fmr(table: CalibrationTable, setting: float, decision_fmr: float, searched: int = 1) -> float:
    """The per-comparison FMR dlib must match at for a template to be added.

    ``setting`` (0: ``DEFAULT_FMR``, or the strictest FMR the table measures when it stops above that) bounds
    the chance that one stranger's probe adds a template to anybody: a 1:N search compares the probe with
    ``searched`` people, so each comparison gets ``setting / searched``. Never looser than the decision's own
    ``decision_fmr``.
    """
    base = setting or max(DEFAULT_FMR, table.min_fmr)
    return min(base / max(searched, 1), decision_fmr)


def strict_match(table: CalibrationTable, decision: Decision, setting: float, *, searched: int = 1,
                 beyond: str = "refuse") -> Decision | None:
    """dlib's decision at the strict FMR when it matches; None otherwise.

    Only a fast decision qualifies: its ``distance`` is dlib's (an accurate one is a fused score, and a subject
    decided accurately lacks nothing). Below the measured table the purpose's ``beyond`` policy applies as it
    does to its matches: ``refuse`` adds nothing there, ``extrapolate`` decides at the strict end of the tail
    fit's 95% interval.
    """
    if not decision.match or decision.mode != "fast":
        return None
    strict = decide(table, decision.distance, strict_fmr(table, setting, decision.target_fmr, searched),
                    beyond=beyond)
    return strict if strict.match else None


def lacking(held: Iterable[str], wanted: Sequence[str]) -> list[str]:
    """The models of ``wanted`` (in order) that a subject holding ``held`` has no template of."""
    have = set(held)
    return [m for m in wanted if m not in have]
