"""``facekeeper federate``: take part in the vendor's federated calibration round; see the privacy budget.

``join`` is the only facekeeper command that connects outside the site, and only to the SuperLink the
operator names. Registered on the main app by ``cli/main.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facekeeper.errors import InvalidInput
from facekeeper.federation.flower import node_keypair
from facekeeper.federation.histogram import Layout
from facekeeper.federation.join import Federation

app = typer.Typer(help="Federated calibration: send DP-noised histograms, summed under SecAgg+.",
                  no_args_is_help=True)


def _federation(svc) -> Federation:
    return Federation(svc.settings, svc.privacy, svc.calibration)


@app.command("join")
def join(
    superlink: Annotated[str, typer.Option(help="The vendor's SuperLink, HOST:PORT.")],
    modes: Annotated[str, typer.Option(help="Modes the vendor's round carries, comma-separated.")] = "fast",
    root_certificates: Annotated[Path | None, typer.Option(help="CA certificate of the SuperLink (TLS).")] = None,
    insecure: Annotated[bool, typer.Option(help="No TLS: loopback tests and demos only.")] = False,
    auth_key: Annotated[Path | None, typer.Option(help="This SuperNode's private key, if the SuperLink"
                                                       " authenticates nodes.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the round.")] = 600.0,
) -> None:
    """Take part in one round: consent and budget checked, release noised and audited, then sent masked."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        try:
            layout = Layout.parse(modes)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        result = _federation(svc).join(svc.actor, superlink, layout, insecure=insecure,
                                       root_certificates=root_certificates, auth_key=auth_key, timeout=timeout)
        budget = _federation(svc).budget(svc.clock())
    data = {**result.to_dict(), "budget": budget}
    cli.emit(data, lambda: cli.out.print(
        f"Round completed in {result.seconds:.0f} s: sent {data['sent']['counts']} noisy counts"
        f" ({data['sent']['bytes']} bytes, sha256 {data['sent']['sha256'][:16]}...), masked by SecAgg+;"
        f" epsilon {result.release.epsilon:g}, delta 0. Budget: {budget['spent_last_365_days']:g} of"
        f" {budget['yearly_epsilon']:g} spent in the last 365 days."))


@app.command("budget")
def budget() -> None:
    """Epsilon spent by federated rounds in the last 365 days, against the yearly budget."""
    from facekeeper.cli import main as cli

    with cli.service() as svc:
        data = _federation(svc).budget(svc.clock())
    cli.emit(data, lambda: cli.out.print(
        f"Spent {data['spent_last_365_days']:g} of {data['yearly_epsilon']:g} in the last 365 days; a round costs"
        f" {data['round_epsilon']:g}."))


@app.command("keygen")
def keygen(out: Annotated[Path, typer.Option(help="Folder for supernode.key (0600) and supernode.pub.")]) -> None:
    """A key pair for SuperNode authentication: send supernode.pub to the vendor, keep supernode.key here."""
    from facekeeper.cli import main as cli

    with cli.handled():
        private, public = node_keypair(out)
    cli.emit({"private": str(private), "public": str(public)}, lambda: cli.out.print(
        f"private key: {private} (stays on this site; join --auth-key)\npublic key:  {public} (for the vendor)"))

