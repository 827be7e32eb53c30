"""``facekeeper-vendor federate``: run a federated calibration round and turn its sum into tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from facekeeper.errors import FacekeeperError, InvalidInput
from facekeeper.federation.flower import flower_bin
from facekeeper.federation.histogram import Layout
from facekeeper.publisher.federate import serve, tables_from_sum, write_calibration

app = typer.Typer(help="Federated calibration: a SuperLink, one SecAgg+ round, tables from the sum.",
                  no_args_is_help=True)


@app.command("serve")
def serve_round(
    sites: Annotated[int, typer.Option(help="Sites expected in the round (at least 2).")],
    work: Annotated[Path, typer.Option(help="Folder for the SuperLink's state, logs and aggregate.json.")],
    modes: Annotated[str, typer.Option(help="Modes the round carries, comma-separated.")] = "fast",
    host: Annotated[str, typer.Option(help="Address the SuperLink listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the SuperLink (Fleet and Control APIs).")] = 9092,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the round.")] = 600.0,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (with --tls-key, --tls-ca).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key.")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="CA certificate the sites verify the SuperLink with.")] = None,
    insecure: Annotated[bool, typer.Option(help="No TLS: loopback tests and demos only.")] = False,
    epsilon: Annotated[float, typer.Option(help="The per-site epsilon agreed for the round (provenance).")] = 1.0,
    sensitivity: Annotated[int, typer.Option(help="Per-person sensitivity the sites used (provenance).")] = 102,
    calibration: Annotated[Path | None, typer.Option(help="calibration.json to update with the new tables.")] = None,
    flower: Annotated[str, typer.Option(help="Folder with Flower's programs [env, then PATH].")] = "",
    node_keys: Annotated[Path | None, typer.Option(help="Folder of the sites' SuperNode public keys (*.pub):"
                                                        " only they may join (needs TLS).")] = None,
) -> None:
    """Run one round; write the sum, the tables and their provenance; optionally update calibration.json.

    Then sign them into the next bundle version: facekeeper-vendor bundle sign --key ... --calibration ...
    """
    try:
        tls = None
        if any((tls_cert, tls_key, tls_ca)):
            if not all((tls_cert, tls_key, tls_ca)):
                raise InvalidInput("TLS needs --tls-cert, --tls-key and --tls-ca together")
            tls = (tls_cert, tls_key, tls_ca)
        elif not insecure:
            raise InvalidInput("give --tls-cert/--tls-key/--tls-ca, or --insecure on a loopback test network")
        try:
            layout = Layout.parse(modes)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        keys = sorted(node_keys.glob("*.pub")) if node_keys is not None else []
        if node_keys is not None and not keys:
            raise InvalidInput(f"no *.pub SuperNode keys in {node_keys}")
        agg = serve(sites, layout, work, flower_bin(flower), host=host, port=port, timeout=timeout,
                    tls=tls, node_keys=keys)  # type: ignore[arg-type]
        tables, provenance = tables_from_sum(agg, epsilon=epsilon, sensitivity=sensitivity)
        (work / "tables.json").write_text(json.dumps({"tables": [t.to_dict() for t in tables.values()],
                                                      "provenance": provenance}, indent=2) + "\n")
        if calibration is not None:
            write_calibration(calibration, tables, provenance)
    except FacekeeperError as exc:
        typer.echo(f"error [{exc.code}]: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(json.dumps({"sites": agg.sites, "provenance": provenance,
                           "tables": {k: t.points for k, t in tables.items()}}, indent=2))
