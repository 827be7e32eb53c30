"""The deployment key: created once at ``init``, kept in a 0600 file or an environment variable, never
beside the data. Every other key is derived from it (HKDF) or wrapped by it, so one secret protects a site.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
import stat
from hashlib import sha256
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from facekeeper.errors import DeploymentKeyError

KEY_BYTES = 32
ENV_KEY = "FACEKEEPER_DEPLOYMENT_KEY"


class DeploymentKey:
    """A 32-byte secret with HKDF derivation; its repr never shows the bytes."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise DeploymentKeyError(f"the deployment key must be {KEY_BYTES} bytes")
        self._secret = secret

    def __repr__(self) -> str:
        return "DeploymentKey(<hidden>)"

    def derive(self, label: str, length: int = 32) -> bytes:
        """A sub-key for one use; different labels give independent keys."""
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                    info=b"facekeeper/" + label.encode()).derive(self._secret)

    def check_value(self, deployment_id: str) -> str:
        """A public fingerprint that tells whether a gallery was made with this key, revealing nothing."""
        return hmac.new(self.derive("key-check"), deployment_id.encode(), sha256).hexdigest()[:32]

    @classmethod
    def generate(cls) -> DeploymentKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    def encode(self) -> str:
        return base64.urlsafe_b64encode(self._secret).decode()

    @classmethod
    def decode(cls, text: str) -> DeploymentKey:
        try:
            raw = base64.urlsafe_b64decode(text.strip().encode())
        except (binascii.Error, ValueError):
            raise DeploymentKeyError("the deployment key is not valid base64") from None
        return cls(raw)


def write_key_file(path: Path, key: DeploymentKey) -> None:
    """Create the key file with mode 0600 from the start (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.encode() + "\n")


def load_key(path: Path) -> DeploymentKey:
    """The key from ``FACEKEEPER_DEPLOYMENT_KEY`` if set, else from the key file, which must be 0600."""
    env = os.environ.get(ENV_KEY)
    if env:
        return DeploymentKey.decode(env)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DeploymentKeyError(
            f"no deployment key at {path}: set {ENV_KEY} or restore the key file from its backup"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DeploymentKeyError(f"{path} is readable by others: run 'chmod 600 {path}'")
    return DeploymentKey.decode(path.read_text())
