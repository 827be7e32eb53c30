"""Which vendor keys this installation trusts.

Model bundles are only ever trusted under the vendor key shipped with facekeeper
(``data/vendor_public.pem``). Licenses are too, with one deliberate exception for tests and demos: the
environment variable ``FACEKEEPER_EVALUATION_VENDOR_KEY`` may name one more public key whose licenses
are accepted as *evaluation* licenses — marked as such everywhere and capped at
``EVALUATION_MAX_SUBJECTS`` subjects whatever they claim. Anyone who can run facekeeper can point that
variable at a key of their own; the cap is what keeps that from being a free production license.
See docs/vendor.md for the trade-off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from facekeeper.bundle.signing import SignatureError, key_id, load_public_key_file
from facekeeper.errors import BundleError, LicenseError

ENV_EVALUATION_KEY = "FACEKEEPER_EVALUATION_VENDOR_KEY"
EVALUATION_MAX_SUBJECTS = 200
VENDOR_KEY_RESOURCE = "data/vendor_public.pem"


@dataclass(frozen=True)
class TrustedKey:
    """A vendor public key, and whether what it signs is only an evaluation license."""

    key: Ed25519PublicKey
    evaluation: bool = False

    @property
    def key_id(self) -> str:
        return key_id(self.key)


def vendor_key_path() -> Path:
    return Path(str(resources.files("facekeeper").joinpath(VENDOR_KEY_RESOURCE)))


def vendor_key() -> Ed25519PublicKey:
    """The vendor key shipped with this installation: the only one that can sign a model bundle."""
    try:
        return load_public_key_file(vendor_key_path())
    except SignatureError as exc:
        raise BundleError(f"the trusted vendor key ({VENDOR_KEY_RESOURCE}) is missing or unreadable ({exc}):"
                          " reinstall facekeeper") from None


def license_keys() -> tuple[TrustedKey, ...]:
    """Keys whose licenses are accepted: the vendor's, plus an evaluation key if the environment names one."""
    keys = [TrustedKey(vendor_key())]
    path = os.environ.get(ENV_EVALUATION_KEY)
    if path:
        try:
            keys.append(TrustedKey(load_public_key_file(Path(path)), evaluation=True))
        except SignatureError as exc:
            raise LicenseError(f"{ENV_EVALUATION_KEY} names an unusable key ({exc}): fix or unset it") from None
    return tuple(keys)
