"""``facekeeper calibrate``: measure the site's own thresholds, show them beside the signed ones, adopt, revert.

Registered on the main app by ``cli/main.py`` (imported lazily inside commands, as ``cli/privacy.py`` does).
Output is aggregates only: pair counts, distances, rates.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from facekeeper.errors import InvalidInput
from facekeeper.evaluation import CALIBRATION_FMRS
from facekeeper.federation.calibrate import Measurement
from facekeeper.federation.pairs import PairPlan

app = typer.Typer(help="The site's own thresholds, measured on its consenting people (model-improvement).",
                  invoke_without_command=True)

ModeOpt = Annotated[str | None, typer.Option("--mode", help="Matching mode [fast].")]


def parse_fmrs(text: str) -> list[float]:
    try:
        fmrs = [float(f) for f in text.split(",") if f.strip()]
    except ValueError:
        raise InvalidInput(f"--fmr takes comma-separated rates, e.g. 1e-2,1e-3 (got {text!r})") from None
    if not fmrs:
        raise InvalidInput("--fmr needs at least one rate")
    return fmrs


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_measurement(m: dict[str, Any]) -> None:
    from facekeeper.cli import main as cli

    cli.out.print(f"Mode {m['mode']}: {m['subjects']} subjects with model-improvement consent, "
                  f"{m['impostor_pairs']} impostor and {m['genuine_pairs']} genuine pairs "
                  f"(at most {m['per_subject_cap']['impostor']} impostor and {m['per_subject_cap']['genuine']}"
                  f" genuine pairs per subject), measured {m['measured_at']}")
    shipped = {s["fmr"]: s for s in m["shipped"]}
    site = {p["fmr"]: p for p in m["points"]}
    table = Table("FMR", "shipped", "site", "site 95% CI", "FNMR site", "FMR of shipped here", "FNMR shipped")
    refused = {r["fmr"] for r in m["refused"]}
    tail = {e["fmr"]: e for e in (m.get("tail") or {}).get("extrapolated", [])}
    for f in sorted(set(shipped) | set(site) | refused, reverse=True):
        s, p, e = shipped.get(f), site.get(f), tail.get(f)
        here = "-"
        if s:  # none of the pairs got through: say how small a rate they could have shown
            here = f"{s['site_fmr']:.2g}" if s["site_fmr"] else f"<{1 / max(m['impostor_pairs'], 1):.1g}"
        measured = _fmt(p["threshold"]) if p else ("refused" if f in refused else "-")
        interval = f"{p['ci95'][0]:.4f}-{p['ci95'][1]:.4f}" if p else "-"
        if e:
            measured, interval = f"{e['threshold']:.4f} extrapolated", f"{e['ci95'][0]:.4f}-{e['ci95'][1]:.4f}"
        table.add_row(f"{f:g}", _fmt(s["threshold"] if s else None), measured, interval,
                      _fmt(p["fnmr"] if p else None), here, _fmt(s["site_fnmr"] if s else None))
    cli.out.print(table)
    for r in m["refused"]:
        cli.out.print(f"FMR {r['fmr']:g} refused as a measurement: {m['rule']} and {r['needs_subjects']} subjects;"
                      f" this gallery gives {r['have']} pairs from {r['subjects']} subjects"
                      f" (needs {r['needs_impostor_pairs']})")
    if tail:
        cli.out.print(f"Below the measured rates the thresholds are extrapolated from the site's impostor tail"
                      f" ({m['tail']['method']}, {m['tail']['exceedances']} lowest pairs); an adopted table carries"
                      " the fit, and each purpose's beyond_table decides whether it is used.")
    cli.out.print("The interval assumes independent pairs; pairs sharing a subject are not, so the real one is"
                  " wider. 'facekeeper calibrate adopt' decides with the site table from now on.")


@app.callback()
def measure(
    ctx: typer.Context,
    mode: ModeOpt = None,
    fmr: Annotated[str, typer.Option(help="Target FMRs, comma-separated.")] = ",".join(
        f"{f:g}" for f in CALIBRATION_FMRS),
    partners: Annotated[int | None, typer.Option(help="Ring partners per subject [config calibration].")] = None,
    per_partner: Annotated[int | None, typer.Option(help="Template pairs per pair of subjects.")] = None,
    genuine: Annotated[int | None, typer.Option(help="Genuine pairs per subject, at most.")] = None,
) -> None:
    """Measure the site table on subjects with a live model-improvement consent, beside the shipped one."""
    if ctx.invoked_subcommand is not None:
        return
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        c = svc.settings.calibration
        try:
            plan = PairPlan(partners or c.partners, per_partner or c.per_partner,
                            c.genuine if genuine is None else genuine)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        m: Measurement = svc.calibration.measure(svc.actor, mode, parse_fmrs(fmr), plan)
    data = m.to_dict()
    cli.emit(data, lambda: print_measurement(data))


@app.command("show")
def show() -> None:
    """The shipped, last measured and adopted tables of each mode."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        data = svc.calibration.show()

    def human() -> None:
        for mode, d in data.items():
            adopted = d["adopted"]
            cli.out.print(f"Mode {mode}: deciding with the {'site' if adopted else 'shipped'} table"
                          + (f" (adopted {d['adopted_at']})" if adopted else ""))
            if d["proposed"]:
                print_measurement(d["proposed"])
            elif d["shipped"]:
                cli.out.print("  shipped: " + ", ".join(f"{f:g} -> {t:.4f}" for f, t in d["shipped"]["points"]))

    cli.emit(data, human)


@app.command("adopt")
def adopt(mode: ModeOpt = None) -> None:
    """Decide with the last measured site table from now on (audited)."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        table = svc.calibration.adopt(svc.actor, mode)
    cli.emit({"adopted": table.to_dict()}, lambda: cli.out.print(
        "Adopted the site table: " + ", ".join(f"FMR {f:g} -> {t:.4f}" for f, t in table.points)))


@app.command("revert")
def revert(mode: ModeOpt = None) -> None:
    """Decide with the signed table again (audited)."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        table = svc.calibration.revert(svc.actor, mode)
    cli.emit({"reverted_to": table.to_dict() if table else None}, lambda: cli.out.print(
        "Deciding with the signed table again" + (": " + ", ".join(f"FMR {f:g} -> {t:.4f}" for f, t in table.points)
                                                   if table else "")))
