"""The vendor's Ed25519 key pair: generate, store, load, sign.

The private key signs every bundle and license, so it lives offline (an air-gapped machine or a hardware
token in production; ``~/vendor-keys`` during development) and never in a repository: ``generate``
refuses a directory inside a git work tree. Only the public half ships, as ``data/vendor_public.pem``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from facekeeper.bundle import signing
from facekeeper.errors import ConfigError

PRIVATE_NAME = "vendor_private.pem"
PUBLIC_NAME = "vendor_public.pem"


def _inside_git_tree(directory: Path) -> Path | None:
    for parent in (directory, *directory.parents):
        if (parent / ".git").exists():
            return parent
    return None


def generate(out_dir: Path, passphrase: bytes | None = None, *, throwaway: bool = False) -> tuple[Path, Path]:
    """Write a new key pair into ``out_dir`` (private 0600); returns (private, public) paths.

    ``throwaway`` (test and demo keys, which nothing trusts in production) may live inside a work tree.
    """
    out_dir = out_dir.resolve()
    repo = None if throwaway else _inside_git_tree(out_dir)
    if repo is not None:
        raise ConfigError(f"{out_dir} is inside the git work tree {repo}: keep the vendor private key out of"
                          " every repository (e.g. ~/vendor-keys, then offline)")
    private_path, public_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(f"{path} already exists: a vendor key is never overwritten; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path.write_bytes(signing.public_pem(key.public_key()))
    return private_path, public_path


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except OSError as exc:
        raise ConfigError(f"cannot read the vendor private key {path} ({exc.strerror})") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path} is not a usable private key ({exc}); is a passphrase needed"
                          " (--passphrase-env)?") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key")
    return key


def sign(key: Ed25519PrivateKey, domain: bytes, data: bytes) -> str:
    """Base64 signature of ``domain + data``: the form ``facekeeper.bundle.signing.verify`` checks."""
    return base64.b64encode(key.sign(domain + data)).decode("ascii")


def passphrase_from_env(name: str | None) -> bytes | None:
    """The key passphrase from an environment variable (never a command-line argument: it would be logged)."""
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"the environment variable {name} holding the key passphrase is not set")
    return value.encode()
