"""``facekeeper license``: install the vendor's license file and show what it allows.

Registered on the main app by ``cli/main.py``; uses its ``--home``/``--json`` state and error handling
(imported when a command runs, since ``main`` imports this module while it is being built).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from facekeeper.errors import LicenseError

app = typer.Typer(help="Install and show the offline license (only 'detect' works without one).",
                  no_args_is_help=True)


@app.command("install")
def install(path: Annotated[Path, typer.Argument(help="The license file the vendor sent.")]) -> None:
    """Check a license file (signature, deployment, dates) and make it this deployment's license."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise LicenseError(f"cannot read {path} ({exc.strerror})") from None
        status = svc.install_license(content)
    lic = status.license
    assert lic is not None
    cli.emit(status.to_dict(), lambda: cli.out.print(
        f"Installed license {lic.license_id} for {lic.licensee}: {', '.join(lic.features)}; up to"
        f" {lic.subject_cap} subjects; expires {lic.to_dict()['expires_at']}"
        + (" [yellow](evaluation license, not signed by the vendor)[/yellow]" if lic.evaluation else "")))


@app.command("show")
def show() -> None:
    """This deployment's id (what the vendor needs to issue a license) and the installed license, if any."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        status = svc.license_status()
    data = status.to_dict()
    cli.emit(data, lambda: _human(cli.out, data))


def _human(out: Any, data: dict[str, Any]) -> None:
    out.print(f"deployment id: {data['deployment_id']}")
    lic = data["license"]
    if lic:
        kind = "evaluation license (not signed by the vendor)" if lic["evaluation"] else "license"
        out.print(f"{kind} {lic['license_id']} for {lic['licensee']}, signed by key {lic['signed_by']}\n"
                  f"features: {', '.join(lic['features'])} (detect needs no license)\n"
                  f"subjects: {data['subjects']} of {lic['max_subjects']}\n"
                  f"issued {lic['issued_at']}, expires {lic['expires_at']}, grace until {lic['grace_ends']}")
    state = {"valid": "[green]valid[/green]", "grace": "[yellow]expired, in its grace period[/yellow]",
             "missing": "[red]no license installed[/red]", "refused": "[red]refused[/red]"}[data["state"]]
    out.print(f"status: {state}")
    if data["problem"]:
        out.print(data["problem"], markup=False)
