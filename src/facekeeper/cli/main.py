"""The ``facekeeper`` command line: human output by default, ``--json`` for scripts.

Every command opens the deployment through ``Service`` and only formats what it returns. Errors are one
line saying what to do, with an exit code per error class (see ``facekeeper.errors``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from facekeeper import config
from facekeeper.cli import calibrate as calibrate_cli
from facekeeper.cli import console as console_cli
from facekeeper.cli import db as db_cli
from facekeeper.cli import evaluate
from facekeeper.cli import federate as federate_cli
from facekeeper.cli import gate as gate_cli
from facekeeper.cli import license as license_cli
from facekeeper.cli import liveness as liveness_cli
from facekeeper.cli import privacy as privacy_cli
from facekeeper.cli import server as server_cli
from facekeeper.cli import templates as templates_cli
from facekeeper.errors import FacekeeperError, InvalidInput
from facekeeper.privacy import Actor
from facekeeper.service import Service, default_actor

app = typer.Typer(help="On-premises face recognition where the faces never leave.", no_args_is_help=True,
                  rich_markup_mode=None,
                  pretty_exceptions_enable=False, add_completion=False)
subjects_app = typer.Typer(help="List, show and delete enrolled subjects.", no_args_is_help=True)
app.add_typer(subjects_app, name="subjects")
app.add_typer(license_cli.app, name="license")
app.command("eval")(evaluate.run)
app.add_typer(privacy_cli.consent_app, name="consent")
app.add_typer(privacy_cli.audit_app, name="audit")
app.add_typer(privacy_cli.subject_app, name="subject")
app.add_typer(privacy_cli.credential_app, name="credential")
app.add_typer(privacy_cli.compliance_app, name="compliance")
app.add_typer(privacy_cli.receipt_app, name="receipt")
app.add_typer(privacy_cli.notice_app, name="notice")
app.command("sweep")(privacy_cli.sweep)
subjects_app.command("export")(privacy_cli.subject_export)
app.add_typer(server_cli.app)  # serve, tenants, keys: the HTTP service
app.add_typer(calibrate_cli.app, name="calibrate")
app.add_typer(federate_cli.app, name="federate")
app.add_typer(db_cli.app, name="db")
app.add_typer(liveness_cli.app, name="liveness")
app.add_typer(gate_cli.app, name="gate")
app.add_typer(console_cli.app, name="console")
app.add_typer(templates_cli.app, name="templates")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class State:
    home: Path = Path("facekeeper-data")
    json: bool = False
    backend: str | None = None
    actor: str | None = None
    role: str = "admin"


state = State()

HomeOpt = Annotated[Path | None, typer.Option("--home", help="Deployment data directory [env FACEKEEPER_HOME].")]


@app.callback()
def main(
    home: HomeOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    backend: Annotated[str | None, typer.Option(help="Embedder runtime: onnx or dlib (overrides config).")] = None,
    actor: Annotated[str | None, typer.Option(help="Who is acting, for the audit log [the OS user].")] = None,
    role: Annotated[str, typer.Option(help="admin, operator, device or auditor.")] = "admin",
) -> None:
    state.home = config.home_from_env(home)
    state.json = json_out
    state.backend = backend
    state.actor = actor
    state.role = role


def emit(data: Any, human: Callable[[], None]) -> None:
    if state.json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        human()


def several_faces(faces: int) -> str:
    """The line a probe with several faces adds: which one was compared (``[engine] face_choice``)."""
    return "" if faces <= 1 else (f"\n{faces} faces in the photo: the one [engine] face_choice picks was compared"
                                  " (largest, or nearest the centre)")


@contextmanager
def handled() -> Iterator[None]:
    """Turn facekeeper errors into one line and a distinct exit code; never a traceback."""
    try:
        yield
    except FacekeeperError as exc:
        if state.json:
            sys.stdout.write(json.dumps({"error": exc.to_dict()}) + "\n")
        else:
            err.print(f"[red]error[/red] {escape(f'[{exc.code}]')}: {escape(exc.message)}", highlight=False)
        raise typer.Exit(exc.exit_code) from None


@contextmanager
def service() -> Iterator[Service]:
    with handled():
        svc = Service.open(state.home, backend=state.backend)
        svc.actor = Actor(state.actor or default_actor().id, state.role)
        try:
            yield svc
        finally:
            svc.close()


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command()
def init(
    key_dir: Annotated[Path | None, typer.Option(help="Where the deployment key goes (never inside --home).")] = None,
    database: Annotated[str | None, typer.Option(
        help="Keep the gallery in PostgreSQL at this URL (migrated first) instead of a SQLite file; the"
             f" password is kept in the key directory. Default: ${config.ENV_DATABASE_URL} if set.")] = None,
    keystore_url: Annotated[str | None, typer.Option(
        help="Keep subject keys in this PostgreSQL database (several hosts); default: the key directory.")
    ] = None,
    index: Annotated[str | None, typer.Option(help="1:N index: faiss (in-process), pgvector or ray.")] = None,
) -> None:
    """Create a deployment: settings, a new deployment key (0600) and an empty gallery."""
    with handled():
        svc = Service.init(state.home, key_dir, backend=state.backend,
                           database_url=database or os.environ.get(config.ENV_DATABASE_URL),
                           keystore_url=keystore_url, index_backend=index)
        s = svc.settings
        svc.close()
    where = "PostgreSQL" if s.gallery.backend == "postgres" else str(s.gallery_path)
    emit({"home": str(s.data_dir), "key_dir": str(s.key_dir), "deployment_id": s.deployment_id,
          "gallery": s.gallery.backend, "index": s.index.backend},
         lambda: out.print(f"Created deployment {s.deployment_id} in {s.data_dir} (gallery: {where},"
                           f" index: {s.index.backend})\n"
                           f"Deployment key: {s.key_path} (back it up apart from the data; without it the"
                           " gallery cannot be read)"))


@app.command("migrate-store")
def migrate_store(
    to: Annotated[str | None, typer.Option(
        "--to", help=f"The PostgreSQL URL to move to [${config.ENV_DATABASE_URL}].")] = None,
    source: Annotated[str | None, typer.Option(
        "--from", help="sqlite:HOME, the deployment to move [the --home deployment].")] = None,
    keystore_url: Annotated[str | None, typer.Option(help="Move subject keys to this PostgreSQL too.")] = None,
    index: Annotated[str | None, typer.Option(help="Index backend afterwards: faiss, pgvector or ray.")] = None,
) -> None:
    """Move a site from its SQLite file to PostgreSQL: rows copied sealed, counts and the audit chain
    verified, then the settings switched. The SQLite file is left untouched (remove it once backed up)."""
    with handled():
        home = state.home
        if source:
            if not source.startswith("sqlite:"):
                raise InvalidInput("--from takes sqlite:HOME (a deployment on SQLite)")
            home = Path(source.removeprefix("sqlite:"))
        url = to or os.environ.get(config.ENV_DATABASE_URL)
        if not url:
            raise InvalidInput(f"give --to postgresql://... or set {config.ENV_DATABASE_URL}")
        r = Service.move_to_postgres(home, url, keystore_url=keystore_url, index_backend=index)
    emit(r, lambda: out.print(
        f"Moved {r['subjects']} subjects ({r['copied'].get('templates', 0)} templates, {r['audit_entries']} audit"
        f" entries) to PostgreSQL; counts equal, audit chain verified. Keys: "
        + ("moved to PostgreSQL" if r["keys_moved"] else "left in the key directory")
        + (f"; {r['vectors_indexed']} vectors indexed" if r["vectors_indexed"] is not None else "")
        + f". The SQLite file {r['left_behind']} is untouched: remove it once your backups hold the move."))


@app.command()
def enroll(
    paths: Annotated[list[Path], typer.Argument(help="One or more photos of the same person.")],
    subject: Annotated[str, typer.Option("--subject", help="The operator's id for this person.")],
    name: Annotated[str | None, typer.Option(help="Display name (stored encrypted).")] = None,
    purpose: privacy_cli.PurposeOpt = None,
    consent: Annotated[str | None, typer.Option(help="Record the consent now: METHOD:REFERENCE.")] = None,
) -> None:
    """Enroll photos of one person for a purpose they consented to. All photos pass the gate, or none is kept."""
    with service() as svc:
        r = svc.enroll(list(paths), subject, name, purpose=purpose,
                       consent=privacy_cli.consent_form(consent) if consent else None)
    emit({"subject_id": r.subject_id, "pseudonym": r.pseudonym, "templates_added": r.templates_added,
          "quality": r.quality},
         lambda: out.print(f"Enrolled {r.subject_id} ({r.pseudonym}): {r.templates_added} template(s) stored,"
                           " photos discarded"))


@app.command("enroll-dir")
def enroll_dir(
    root: Annotated[Path, typer.Argument(help="A folder with one sub-folder per person.")],
    workers: Annotated[int | None, typer.Option(help="Processes preparing photos [one per core].")] = None,
    purpose: privacy_cli.PurposeOpt = None,
    consent: Annotated[str | None, typer.Option(help="Record this consent for everyone: METHOD:REFERENCE.")] = None,
    cluster: Annotated[str | None, typer.Option(
        help="Prepare and embed on a Ray cluster: its address (host:port or ray://host:port), or 'local'"
             " for a one-machine head on 127.0.0.1. Consent, storage and audit stay here.")] = None,
) -> None:
    """Enroll a folder of people (sub-folder name = subject id); bad photos and people without consent are
    skipped with a reason."""
    columns = (TextColumn("enrolling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with service() as svc, Progress(*columns, console=err, disable=state.json) as bar:
        task = bar.add_task("enroll", total=None)
        form = privacy_cli.consent_form(consent) if consent else None
        summary = svc.enroll_dir(root, lambda done, total: bar.update(task, completed=done, total=total), workers,
                                 purpose=purpose, consent=form, cluster=cluster)

    def human() -> None:
        d = summary.to_dict()
        out.print(f"Enrolled {d['subjects']} subject(s), {d['templates']} template(s); "
                  f"skipped {len(summary.skipped)} photo(s)")
        if summary.skipped:
            table = Table("file", "reason")
            for f, _code, msg in summary.skipped:
                table.add_row(f, msg)
            out.print(table)

    emit(summary.to_dict(), human)


@app.command()
def verify(
    probe: Annotated[Path, typer.Argument(help="Photo to check.")],
    reference: Annotated[Path | None, typer.Argument(help="Second photo (or use --subject).")] = None,
    subject: Annotated[str | None, typer.Option(help="Compare against this enrolled subject.")] = None,
    fmr: Annotated[float | None, typer.Option(help="Target false-match rate, e.g. 1e-4.")] = None,
    purpose: privacy_cli.PurposeOpt = None,
) -> None:
    """1:1: is this the same person as the other photo, or as the enrolled subject?"""
    with service() as svc:
        r = svc.verify(probe, reference, subject_id=subject, fmr=fmr, purpose=purpose)
    d = r.decision
    score = "distance" if d.mode == "fast" else "fused score"
    emit(r.to_dict(), lambda: out.print(
        f"{'MATCH' if d.match else 'NO MATCH'} ({d.mode} mode): {score} {d.distance:.3f} (threshold "
        f"{d.threshold:.3f} for FMR {d.target_fmr:g}); a stranger gets this close about {d.estimated_fmr:.2g} of"
        f" the time" + (f"\n{r.note}" if r.note else "")
        + (f"\n{d.calibration_note}" if d.calibration_note else "")
        + "".join(f"\ntemplate of {m} added from this photo (template_update)" for m in r.templates_added)
        + several_faces(r.faces_in_photo)))


@app.command()
def identify(
    probe: Annotated[Path, typer.Argument(help="Photo to identify.")],
    k: Annotated[int | None, typer.Option("-k", help="How many candidates to show.")] = None,
    fpir: Annotated[float | None, typer.Option(help="Target false-positive identification rate.")] = None,
    purpose: privacy_cli.PurposeOpt = None,
) -> None:
    """1:N among the people consented for the purpose: who is this? Answers "unknown" rather than guess."""
    with service() as svc:
        r = svc.identify(probe, k, fpir, purpose=purpose)

    def human() -> None:
        if r.match:
            m = r.match
            out.print(f"Identified {m.subject_id}{f' ({m.name})' if m.name else ''} ({m.decision.mode} mode): "
                      f"score {m.decision.distance:.3f} <= {m.decision.threshold:.3f} at FPIR {r.target_fpir:g}"
                      f" (FMR {r.target_fmr:.2g} per comparison)")
        else:
            out.print(f"unknown ({r.mode} mode): nobody among {r.searched_subjects} subject(s) is within the"
                      f" threshold for FPIR {r.target_fpir:g} (FMR {r.target_fmr:.2g} per comparison)")
        if r.note:
            out.print(r.note)
        calibration_note = r.candidates[0].decision.calibration_note if r.candidates else r.calibration_note
        if calibration_note:  # the threshold was extrapolated, or there was none to decide with
            out.print(calibration_note)
        for model in r.templates_added:
            out.print(f"template of {model} added from this photo (template_update)")
        if r.faces_in_photo > 1:
            out.print(several_faces(r.faces_in_photo).strip())
        table = Table("subject", "distance", "threshold", "match")
        for c in r.candidates:
            table.add_row(c.subject_id, f"{c.decision.distance:.3f}", f"{c.decision.threshold:.3f}",
                          "yes" if c.decision.match else "no")
        out.print(table)

    emit(r.to_dict(), human)


@app.command()
def detect(
    image: Annotated[Path, typer.Argument(help="Photo to analyse.")],
    landmarks: Annotated[int, typer.Option(help="5 or 68 landmark points.")] = 68,
) -> None:
    """Faces in a photo: boxes, landmarks and quality as JSON. Nothing is stored."""
    with service() as svc:
        faces = svc.detect(image, landmarks)
    sys.stdout.write(json.dumps({"faces": faces}, indent=None if state.json else 2) + "\n")


@subjects_app.command("list")
def subjects_list() -> None:
    """Enrolled subjects with their template counts."""
    with service() as svc:
        rows = svc.subjects()
    emit([{"subject_id": s.subject_id, "name": s.name, "pseudonym": s.pseudonym, "templates": s.templates,
           "created_at": when(s.created_at)} for s in rows], lambda: _subjects_table(rows))


def _subjects_table(rows: list[Any]) -> None:
    table = Table("subject", "name", "pseudonym", "templates", "enrolled")
    for s in rows:
        table.add_row(s.subject_id, s.name or "", s.pseudonym, str(s.templates), when(s.created_at))
    out.print(table)
    out.print(f"{len(rows)} subject(s)")


@subjects_app.command("show")
def subjects_show(subject_id: Annotated[str, typer.Argument()]) -> None:
    """One subject: pseudonym, name, templates and their dates (never the templates)."""
    with service() as svc:
        s = svc.subject(subject_id)
    data = {"subject_id": s.subject_id, "name": s.name, "pseudonym": s.pseudonym, "templates": s.templates,
            "created_at": when(s.created_at), "template_dates": [when(t) for t in s.template_dates]}
    emit(data, lambda: out.print_json(json.dumps(data)))


@subjects_app.command("delete")
def subjects_delete(
    subject_id: Annotated[str, typer.Argument()],
    receipt: Annotated[Path | None, typer.Option(help="Write the signed erasure receipt to this file.")] = None,
) -> None:
    """Erase a subject: its data key is destroyed, so its templates are unreadable even in backups; the
    person's consents, credentials and key go too. Prints a signed erasure receipt."""
    with service() as svc:
        r = svc.delete(subject_id)
    if receipt is not None:
        receipt.write_text(json.dumps(r["receipt"], indent=2) + "\n", encoding="utf-8")
    emit(r, lambda: out.print(f"Erased {subject_id} ({r['pseudonym']}): {r['templates_erased']} template(s);"
                              f" its key is destroyed; receipt: audit #{r['receipt']['audit_seq']}"
                              + (f", written to {receipt}" if receipt else "")))


if __name__ == "__main__":
    app()
