"""``facekeeper eval``: measure accuracy on the customer's own labelled photos, offline.

Registered on the main app by ``cli/main.py``; uses its ``--json``/``--backend`` state and error handling
(imported when the command runs, since ``main`` imports this module while it is being built).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from facekeeper import evaluation


def run(
    data: Annotated[Path, typer.Argument(help="A folder with one sub-folder per person, or a pairs file "
                                              "(LFW pairs.txt, or CSV a,b,same).")],
    out: Annotated[Path, typer.Option(help="Markdown report to write; the PNG goes beside it.")] = Path(
        "accuracy-report.md"),
    images: Annotated[Path | None, typer.Option(help="Root of the photos a pairs file names [its folder].")] = None,
    groups: Annotated[Path | None, typer.Option(help="CSV of attributes per person (first column = folder "
                                                     "name), for a per-group breakdown.")] = None,
    name: Annotated[str | None, typer.Option(help="How the report names the data [folder or file name].")] = None,
    detector: Annotated[str | None, typer.Option(help="yunet, hog or cnn [the engine's default: yunet, as the"
                                                     " product detects].")] = None,
    quick_face: Annotated[float | None, typer.Option(help="Quick detection pass for faces of at least this "
                                                          "fraction of the shorter side; 0 = thorough only "
                                                          "[engine default].")] = None,
    calibration_out: Annotated[Path | None, typer.Option(help="Also write a calibration table (the "
                                                              "data/calibration.json structure).")] = None,
    plot: Annotated[bool, typer.Option(help="Draw the DET curve and distributions (needs matplotlib).")] = True,
    modes: Annotated[str, typer.Option("--modes", help="fast, or both: fast and accurate (dlib and the side "
                                                       "model fused) side by side on the same pairs.")] = "both",
    deployment: Annotated[bool, typer.Option("--deployment", help="Also keep the summary and DET curve "
                                             "(aggregates only) as the last eval of the --home deployment, where "
                                             "the console's auditor sees them.")] = False,
) -> None:
    """Accuracy on labelled photos: FTE, distance distributions, FNMR at FMR, EER, DET curve (Markdown + PNG)."""
    from facekeeper.cli import main as cli

    with cli.handled():
        columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=cli.err, disable=cli.state.json) as bar:
            task = bar.add_task("eval", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            ev = evaluation.measure(data, images=images, groups=groups, dataset=name, detector=detector,
                                    quick_face=quick_face, backend=cli.state.backend, modes=modes,
                                    progress=progress)
        written = evaluation.write_report(ev, out, with_plot=plot)
        if calibration_out:
            table = evaluation.calibration_table(ev.model_id, f"{ev.dataset}: {ev.people or '?'} people,"
                                                 f" {ev.images - len(ev.not_acquired)} photos (facekeeper eval)",
                                                 ev.genuine, ev.impostor)
            calibration_out.write_text(json.dumps({"tables": [table.to_dict()]}, indent=2) + "\n")
            written.append(calibration_out)
        if deployment:
            written.append(_record(cli.state.home, ev))
    summary = ev.summary()
    cli.emit({**summary, "written": [str(p) for p in written]}, lambda: _human(cli.out, summary, written))


def _record(home: Path, ev: evaluation.Evaluation) -> Path:
    """The run's summary and DET curve(s) as the deployment's last eval (``facekeeper.provenance``)."""
    from facekeeper.provenance import record_eval

    curves = {}
    for mode, e in (("fast", ev), ("accurate", ev.accurate)):
        if e is not None and len(e.genuine) and len(e.impostor):
            fmr, fnmr = evaluation.det_points(e.genuine, e.impostor)
            curves[mode] = list(zip(fmr.tolist(), fnmr.tolist(), strict=True))
    return record_eval(home, ev.summary(), curves)


def _human(out: Console, s: dict[str, Any], written: list[Path]) -> None:
    out.print(f"{s['dataset']}: {s['images']} photos, FTE {100 * s['failure_to_enrol']['rate']:.2f}%,"
              f" {s['genuine_pairs']:,} genuine / {s['impostor_pairs']:,} impostor comparisons")
    if s["several_faces"]["count"]:
        several = s["several_faces"]
        out.print(f"  {several['count']} photos with several faces: compared with the {several['face_choice']} one")
    for p in s["fnmr_at_fmr"]:
        if p["threshold"] is None:
            out.print(f"  FMR {p['target_fmr']:g}: not measurable with {p['impostor_pairs']:,} impostor pairs")
        else:
            out.print(f"  FMR {p['target_fmr']:g}: threshold {p['threshold']:.4f}, FNMR {100 * p['fnmr']:.2f}%"
                      f" (generalized {100 * p['generalized_fnmr']:.2f}%)")
    if s["eer"]["rate"] is not None:
        out.print(f"  EER {100 * s['eer']['rate']:.2f}%, best-threshold accuracy"
                  f" {100 * s['best_accuracy']['accuracy']:.3f}%")
    g = s["generalized"]
    out.print(f"  generalized rates: {g['unusable_genuine_pairs']:,} genuine and {g['unusable_impostor_pairs']:,}"
              f" impostor pairs could not be compared ({g['rule']})")
    _ten_fold(out, s, "  ")
    if "accurate" in s:
        out.print("  accurate mode (fused), same pairs:")
        for p in s["accurate"]["fnmr_at_fmr"]:
            if p["fnmr"] is not None:
                out.print(f"    FMR {p['target_fmr']:g}: FNMR {100 * p['fnmr']:.2f}% (generalized"
                          f" {100 * p['generalized_fnmr']:.2f}%)")
        if s["accurate"]["eer"]["rate"] is not None:
            out.print(f"    EER {100 * s['accurate']['eer']['rate']:.2f}%")
        _ten_fold(out, s["accurate"], "    ")
    out.print("wrote " + ", ".join(str(p) for p in written))


def _ten_fold(out: Console, s: dict[str, Any], indent: str) -> None:
    if "ten_fold" in s:
        t = s["ten_fold"]
        out.print(f"{indent}10-fold accuracy {100 * t['accuracy_mean']:.2f}% ± {100 * t['accuracy_std']:.2f}%"
                  f" (generalized {100 * t['generalized_accuracy_mean']:.2f}%"
                  f" ± {100 * t['generalized_accuracy_std']:.2f}%)")
