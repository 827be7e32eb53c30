"""``facekeeper serve``, ``facekeeper tenants`` and ``facekeeper keys``: the HTTP service and its access.

Registered on the main app by ``cli/main.py`` (merged at the top level); uses its ``--json`` state and
error handling (imported when a command runs, since ``main`` imports this module while it is being built).
Every command takes ``--root`` (env ``FACEKEEPER_SERVICE_ROOT``) and ``--key-root`` (env
``FACEKEEPER_SERVICE_KEY_ROOT``); see ``facekeeper.api.tenants`` for the layout. Only ``tenants create``
makes a root; every other command needs one that exists, so a typo or a missing variable is an error,
not a new empty ``./facekeeper-service``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from facekeeper.api.tenants import Layout

app = typer.Typer()
tenants_app = typer.Typer(help="Tenants of the HTTP service: each a separate deployment.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of the HTTP service: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")

RootOpt = Annotated[Path | None, typer.Option("--root", help="Service root [env FACEKEEPER_SERVICE_ROOT].")]
KeyRootOpt = Annotated[Path | None, typer.Option(
    "--key-root", help="Where tenants' key folders live [env FACEKEEPER_SERVICE_KEY_ROOT; default ROOT/keys].")]


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command()
def serve(
    root: RootOpt = None,
    key_root: KeyRootOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on; keep loopback behind a TLS proxy.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8740,
    workers: Annotated[int, typer.Option(help="Processes doing face work [one per core].")] = 0,
    in_process: Annotated[bool, typer.Option("--in-process", help="Do face work in threads of one process.")] = False,
    max_body: Annotated[int, typer.Option(help="Largest request body, bytes.")] = 16 * 1024 * 1024,
    rate: Annotated[float, typer.Option(help="Requests per second per API key, sustained.")] = 10.0,
    burst: Annotated[int, typer.Option(help="Requests a quiet key may send at once.")] = 30,
    allow_egress: Annotated[bool, typer.Option(
        "--allow-egress", help="Do not install the egress guard (outbound connections are refused by default).")
    ] = False,
    allow_net: Annotated[list[str] | None, typer.Option(
        help="A network (CIDR) outbound connections may reach, e.g. the site's PostgreSQL host; repeatable.")
    ] = None,
) -> None:
    """Run the HTTP API (/v1) for every tenant under the root, until stopped."""
    from facekeeper.api.app import ServerSettings
    from facekeeper.api.server import serve as run
    from facekeeper.cli import main as cli

    settings = ServerSettings(host=host, port=port, workers=workers, in_process=in_process, max_body_bytes=max_body,
                              rate=rate, burst=burst, deny_egress=not allow_egress, allow_nets=list(allow_net or []))
    with cli.handled():
        run(Layout.of(root, key_root).require_root(), settings)


@tenants_app.command("create")
def tenants_create(
    tenant: Annotated[str, typer.Argument(help="Lowercase letters, digits and '-'.")],
    root: RootOpt = None,
    key_root: KeyRootOpt = None,
) -> None:
    """Create a tenant: a deployment of its own (settings, deployment key, empty gallery)."""
    from facekeeper.cli import main as cli

    layout = Layout.of(root, key_root)
    with cli.handled():
        svc = layout.create(tenant)
        s = svc.settings
        svc.close()
    cli.emit({"tenant": tenant, "home": str(s.data_dir), "key_dir": str(s.key_dir), "deployment_id": s.deployment_id},
             lambda: cli.out.print(
                 f"Created tenant {tenant}: data {s.data_dir}, key {s.key_path} (back it up apart from the data)\n"
                 f"Next: fill in its privacy notice in {s.config_path}, install its license with"
                 f" 'facekeeper --home {s.data_dir} license install FILE', and create keys"))


@tenants_app.command("list")
def tenants_list(root: RootOpt = None, key_root: KeyRootOpt = None) -> None:
    """Tenants under the root."""
    from facekeeper.cli import main as cli

    with cli.handled():
        layout = Layout.of(root, key_root).require_root()
    names = layout.tenants()
    cli.emit([{"tenant": t, "home": str(layout.data_dir(t))} for t in names],
             lambda: cli.out.print("\n".join(names) if names else "no tenants"))


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the key belongs to.")],
    role: Annotated[str, typer.Option("--role", help="admin, operator, device or auditor.")],
    purpose: Annotated[str | None, typer.Option(help="The only purpose the key acts for (required for device).")
                       ] = None,
    label: Annotated[str | None, typer.Option(help="Which gate or team (never a person's name).")] = None,
    root: RootOpt = None,
    key_root: KeyRootOpt = None,
) -> None:
    """Create an API key. It is shown once; the service stores only a salted HMAC of its secret."""
    from facekeeper.api.keys import KeyStore, NewKey
    from facekeeper.cli import main as cli
    from facekeeper.service import Service

    layout = Layout.of(root, key_root)
    with cli.handled():
        layout.check_purpose(tenant, purpose)
        store = KeyStore(layout.api_keys_path)
        made: list[NewKey] = []

        def create() -> dict[str, str | None]:
            made.append(store.create(tenant, role, purpose, label))
            return made[0].key.audit_facts()

        try:
            with Service.open(layout.require(tenant)) as svc:  # the guard: admin only, audited in the tenant
                svc.manage_api_key("created", create)
        finally:
            store.close()
        new = made[0]
    cli.emit({**new.key.to_dict(), "api_key": new.token},
             lambda: cli.out.print(f"Created {role} key {new.key.id} for tenant {tenant}"
                                   f"{f' (purpose {purpose})' if purpose else ''}. Store it now; it is not shown"
                                   f" again:\n{new.token}", highlight=False))


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
    root: RootOpt = None,
    key_root: KeyRootOpt = None,
) -> None:
    """API keys (ids, tenants, roles, purposes; never a secret)."""
    from facekeeper.api.keys import ApiKey, KeyStore
    from facekeeper.cli import main as cli

    with cli.handled():
        layout = Layout.of(root, key_root).require_root()
        rows: list[ApiKey] = []
        if layout.api_keys_path.exists():  # no key made yet: nothing to list, and nothing to create
            store = KeyStore(layout.api_keys_path)
            try:
                rows = store.list_keys(tenant, include_revoked=revoked)
            finally:
                store.close()

    def human() -> None:
        table = Table("id", "tenant", "role", "purpose", "label", "created", "revoked")
        for k in rows:
            table.add_row(k.id, k.tenant, k.role, k.purpose or "", k.label or "", _when(k.created_at),
                          _when(k.revoked_at))
        cli.out.print(table)

    cli.emit([k.to_dict() for k in rows], human)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (ak_...), not the key itself.")],
    root: RootOpt = None,
    key_root: KeyRootOpt = None,
) -> None:
    """Revoke an API key; a running service refuses it from the next request."""
    from facekeeper.api.keys import ApiKey, KeyStore
    from facekeeper.cli import main as cli
    from facekeeper.errors import InvalidInput
    from facekeeper.service import Service

    with cli.handled():
        layout = Layout.of(root, key_root).require_root()
        if not layout.api_keys_path.exists():
            raise InvalidInput("no such API key")
        store = KeyStore(layout.api_keys_path)
        revoked: list[ApiKey] = []

        def revoke() -> dict[str, str | None]:
            revoked.append(store.revoke(key_id))
            return revoked[0].audit_facts()

        try:
            found = store.get(key_id)
            if found is None:
                raise InvalidInput("no such API key")
            with Service.open(layout.require(found.tenant)) as svc:
                svc.manage_api_key("revoked", revoke)
        finally:
            store.close()
        key = revoked[0]
    cli.emit(key.to_dict(), lambda: cli.out.print(f"Revoked {key.id} ({key.role}, tenant {key.tenant})"))
