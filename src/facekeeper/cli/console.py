"""``facekeeper console``: the first admin of a tenant's web console, one-time logins, and ``open`` (serve and
say where to sign in).

Accounts live beside the API keys (``ROOT/console.db``, 0600); see ``facekeeper.web.accounts``. Whoever runs
these commands holds the service root, as for ``facekeeper keys create``; the account made is recorded in the
tenant's audit chain through the same admin-only operation as an API key (``keys.manage``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from facekeeper.api.tenants import Layout
from facekeeper.cli.server import KeyRootOpt, RootOpt
from facekeeper.web.accounts import CONSOLE_ROLES, AccountStore, check_username

app = typer.Typer(help="The web console (/console): accounts and one-time sign-in links.", no_args_is_help=True)
admin_app = typer.Typer(help="The first admin of a tenant's console.", no_args_is_help=True)
account_app = typer.Typer(help="Console accounts (admin, operator, auditor) of a tenant.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(account_app, name="account")

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant the account belongs to.")]
HostOpt = Annotated[str, typer.Option(help="Host the link names (the address people open).")]


def _link(host: str, port: int, token: str) -> str:
    return f"http://{host}:{port}/console/once/{token}"


def _create(layout: Layout, tenant: str, username: str, role: str) -> str:
    """The account, recorded in the tenant's chain, and its one-time login token."""
    from facekeeper.privacy import Actor
    from facekeeper.service import Service, default_actor

    check_username(username)
    svc = Service.open(layout.require(tenant))
    store = AccountStore.beside(layout.root)
    tokens: list[str] = []
    try:
        def create() -> dict[str, str | None]:
            account = store.create(tenant, username, role)
            tokens.append(store.one_time_login(tenant, username))
            return account.audit_facts()

        actor = Actor(default_actor().id, "admin", tenant)
        svc.manage_api_key("created", create, actor=actor)
    finally:
        svc.close()
        store.close()
    return tokens[0]


@admin_app.command("create")
def admin_create(
    tenant: TenantOpt,
    name: Annotated[str, typer.Option("--name", help="The admin's sign-in name.")] = "admin",
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of 'facekeeper serve'.")] = 8740,
    root: RootOpt = None,
    key_root: KeyRootOpt = None,
) -> None:
    """Create an admin account and print a one-time sign-in link (valid one hour, shown once)."""
    _create_and_show(tenant, name, "admin", host, port, root, key_root,
                     lambda link: f"Admin {name} of {tenant} created. Sign in once (within an hour) at:\n{link}\n"
                                  "then choose a password; turn on two-step sign-in under Password.")


@account_app.command("create")
def account_create(
    tenant: TenantOpt,
    name: Annotated[str, typer.Option("--name", help="Sign-in name (lowercase letters, digits, . _ -).")],
    role: Annotated[str, typer.Option("--role", help=", ".join(CONSOLE_ROLES))],
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of 'facekeeper serve'.")] = 8740,
    root: RootOpt = None,
    key_root: KeyRootOpt = None,
) -> None:
    """Create a console account with a one-time sign-in link."""
    _create_and_show(tenant, name, role, host, port, root, key_root,
                     lambda link: f"{role.capitalize()} {name} of {tenant} created. One-time sign-in link:\n{link}")


def _create_and_show(tenant: str, name: str, role: str, host: str, port: int, root: Path | None,
                     key_root: Path | None, say: Callable[[str], str]) -> None:
    """Create the account, then print its one-time sign-in link (JSON with ``--json``)."""
    from facekeeper.cli import main as cli

    with cli.handled():
        layout = Layout.of(root, key_root).require_root()
        token = _create(layout, tenant, name, role)
    link = _link(host, port, token)
    cli.emit({"tenant": tenant, "username": name, "role": role, "one_time_login": link},
             lambda: cli.out.print(say(link)))


@account_app.command("login")
def account_login(
    tenant: TenantOpt,
    name: Annotated[str, typer.Option("--name", help="The account's sign-in name.")],
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of 'facekeeper serve'.")] = 8740,
    root: RootOpt = None,
    key_root: KeyRootOpt = None,
) -> None:
    """A new one-time sign-in link for an existing account (a forgotten password)."""
    from facekeeper.cli import main as cli

    with cli.handled():
        store = AccountStore.beside(Layout.of(root, key_root).require_root().root)
        try:
            token = store.one_time_login(tenant, name)
        finally:
            store.close()
    link = _link(host, port, token)
    cli.emit({"tenant": tenant, "username": name, "one_time_login": link}, lambda: cli.out.print(link))


@app.command("open")
def open_console(
    tenant: TenantOpt,
    name: Annotated[str, typer.Option("--name", help="The admin account to sign in as (made if missing).")] = "admin",
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 8740,
    root: RootOpt = None,
    key_root: KeyRootOpt = None,
) -> None:
    """Print the console's address and a one-time admin sign-in link, then serve (127.0.0.1) until stopped."""
    from facekeeper.api.app import ServerSettings
    from facekeeper.api.server import serve
    from facekeeper.cli import main as cli

    with cli.handled():
        layout = Layout.of(root, key_root).require_root()
        store = AccountStore.beside(layout.root)
        try:
            exists = store.get(tenant, name) is not None
            token = store.one_time_login(tenant, name) if exists else None
        finally:
            store.close()
        if token is None:
            token = _create(layout, tenant, name, "admin")
        cli.out.print(f"Console: http://127.0.0.1:{port}/console/login?tenant={tenant}\n"
                      f"One-time admin sign-in (valid one hour): {_link('127.0.0.1', port, token)}\n"
                      "A person's own page: http://127.0.0.1:{port}/me — stop with Ctrl-C".replace("{port}", str(port)))
        serve(layout, ServerSettings(port=port, workers=1))
