"""``facekeeper templates``: how far moving to a new model without photos has come."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

app = typer.Typer(help="Templates per model: who still lacks a new model's template.", no_args_is_help=True)


@app.command("coverage")
def coverage(
    purpose: Annotated[str | None, typer.Option("--purpose", help="One purpose [every declared purpose].")] = None,
    limit: Annotated[int | None, typer.Option(help="List at most this many people per model [all].")] = None,
) -> None:
    """Per purpose and model: how many people hold its templates, how many lack one, and who (subject ids for
    an admin, pseudonyms for an auditor). "update allowed": of those lacking, whose consent lets a later match
    add it ([purposes.NAME] template_update); the others need a new consent or a new photo."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        report = svc.template_coverage(purpose, limit)

    def human() -> None:
        table = Table("purpose", "update", "people", "model", "have", "lack", "update allowed", "lacking")
        for p in report.purposes:
            for m in p.models:
                more = m.lack - len(m.lacking)
                shown = ", ".join(m.lacking) + (f" (+{more} more)" if more > 0 else "")
                table.add_row(p.purpose, p.template_update, str(p.subjects), m.model_id, str(m.have), str(m.lack),
                              str(m.update_allowed), shown)
        cli.out.print(f"{report.enrolled} enrolled; people named by {report.identified_by.replace('_', ' ')}")
        cli.out.print(table)

    cli.emit(report.to_dict(), human)

