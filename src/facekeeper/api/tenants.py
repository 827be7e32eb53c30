"""Tenants: each one a whole deployment of its own under the service's root.

::

    ROOT/                       the service root (--root, env FACEKEEPER_SERVICE_ROOT)
      api-keys.db               hashed API keys of every tenant (0600)
      tenants/<tenant>/         that tenant's data folder (facekeeper.toml, gallery.db, index.snapshot)
    KEY_ROOT/                   --key-root (default ROOT/keys); back it up apart from ROOT
      <tenant>/                 that tenant's key folder (deployment.key, keystore.db, audit.anchor)

Every folder is 0700 and every file 0600, whatever the umask: tenants are created under a private umask
and the service runs under one. Commands that only read (``tenants list``, ``keys list``) never create
the root: without ``--root`` or the environment they say so rather than make ``./facekeeper-service``.

Isolation is structural, not a filter: a tenant has its own deployment key, gallery file, key store,
audit chain and license, so an API key of tenant A reaches A's ``Service`` and nothing else; there is no
query that could name B's data.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from facekeeper import config
from facekeeper.errors import ConfigError, InvalidInput
from facekeeper.service import Service

ENV_ROOT = "FACEKEEPER_SERVICE_ROOT"
ENV_KEY_ROOT = "FACEKEEPER_SERVICE_KEY_ROOT"
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def check_tenant(name: str) -> str:
    if not TENANT_RE.match(name or ""):
        raise InvalidInput("a tenant name is 1-40 lowercase letters, digits or '-', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class Layout:
    """Where a service keeps its tenants and their keys."""

    root: Path
    key_root: Path

    @classmethod
    def of(cls, root: Path | None = None, key_root: Path | None = None) -> Layout:
        base = root or Path(os.environ.get(ENV_ROOT, "facekeeper-service"))
        keys = key_root or (Path(os.environ[ENV_KEY_ROOT]) if os.environ.get(ENV_KEY_ROOT) else base / "keys")
        return cls(base, keys)

    @property
    def api_keys_path(self) -> Path:
        return self.root / "api-keys.db"

    def data_dir(self, tenant: str) -> Path:
        return self.root / "tenants" / check_tenant(tenant)

    def key_dir(self, tenant: str) -> Path:
        return self.key_root / check_tenant(tenant)

    def exists(self, tenant: str) -> bool:
        return (self.data_dir(tenant) / config.CONFIG_NAME).is_file()

    def tenants(self) -> list[str]:
        base = self.root / "tenants"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if TENANT_RE.match(p.name) and (p / config.CONFIG_NAME).is_file())

    def create(self, tenant: str) -> Service:
        """A new deployment for ``tenant`` (settings, deployment key, empty gallery); the caller closes it."""
        if self.exists(tenant):
            raise ConfigError(f"tenant {tenant} already exists")
        refuse_shared_key()
        with config.private_files():
            for folder in (self.root, self.root / "tenants", self.key_root):
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                folder.chmod(0o700)
            service = Service.init(self.data_dir(tenant), self.key_dir(tenant))
        for folder in (self.data_dir(tenant), self.key_dir(tenant)):
            config.make_private(folder)
        return service

    def require_root(self) -> Layout:
        """This layout, if its root exists: commands that only read must not create one."""
        if not self.root.is_dir():
            raise ConfigError(f"no service root at {self.root}: give --root or set {ENV_ROOT} (a root is made by"
                              " 'facekeeper tenants create NAME')")
        return self

    def check_purpose(self, tenant: str, purpose: str | None) -> None:
        """The tenant must exist, and a key's purpose be one it declared (checked when the key is made)."""
        data_dir = self.require(tenant)
        if purpose is None:
            return
        declared = config.load(data_dir).purposes
        if purpose not in declared:
            raise InvalidInput(f"tenant {tenant} has no purpose {purpose!r}: declared are"
                               f" {', '.join(sorted(declared))}")

    def require(self, tenant: str) -> Path:
        if not self.exists(tenant):
            raise ConfigError(f"no tenant {tenant} in this service: run 'facekeeper tenants create {tenant}'")
        return self.data_dir(tenant)


def refuse_shared_key() -> None:
    """One deployment key in the environment would open (and link) every tenant: each needs its own file."""
    if os.environ.get(config.ENV_KEY):
        raise ConfigError(f"unset {config.ENV_KEY}: in a multi-tenant service every tenant has its own key file")
