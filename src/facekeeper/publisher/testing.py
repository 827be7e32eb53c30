"""Licenses for tests and demos, without the vendor's private key.

A throwaway key pair signs the licenses; pointing ``FACEKEEPER_EVALUATION_VENDOR_KEY`` at its public half
makes facekeeper accept them as *evaluation* licenses (capped at ``EVALUATION_MAX_SUBJECTS`` subjects and
marked as such). The real vendor key is never involved, so none of this works as a production license.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from facekeeper.bundle.license import FEATURES, License
from facekeeper.bundle.trust import ENV_EVALUATION_KEY, EVALUATION_MAX_SUBJECTS, TrustedKey
from facekeeper.publisher import keys
from facekeeper.publisher.license import issue_license


class _Installer(Protocol):
    def install(self, content: bytes) -> License: ...


class LicensedService(Protocol):
    """What ``install_test_license`` needs of a ``facekeeper.service.Service`` (not imported: the wall)."""

    settings: Any
    license: _Installer


class EvaluationVendor:
    """A throwaway vendor: its key pair lives in ``directory`` (``vendor_private.pem``, ``vendor_public.pem``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.private_path = directory / keys.PRIVATE_NAME
        self.public_path = directory / keys.PUBLIC_NAME
        if not self.private_path.exists():
            keys.generate(directory, throwaway=True)
        self.key = keys.load_private_key(self.private_path)

    @property
    def env(self) -> dict[str, str]:
        """The environment a facekeeper process needs to accept this vendor's licenses."""
        return {ENV_EVALUATION_KEY: str(self.public_path)}

    def trust(self) -> None:
        """Make this process (and the processes it starts) accept this vendor's licenses."""
        os.environ.update(self.env)

    def trusted_key(self, *, evaluation: bool = True) -> TrustedKey:
        """For ``Licensing(keys=[...])``: ``evaluation=False`` makes it stand in for the real vendor key."""
        return TrustedKey(self.key.public_key(), evaluation=evaluation)

    def issue(self, deployment_id: str, *, licensee: str = "Test licensee", features: Sequence[str] = FEATURES,
              max_subjects: int = EVALUATION_MAX_SUBJECTS, expires_at: datetime | None = None,
              issued_at: datetime | None = None) -> bytes:
        issued_at = issued_at or datetime.now(UTC)
        return issue_license(self.key, licensee=licensee, deployment_id=deployment_id,
                             expires_at=expires_at or issued_at + timedelta(days=30), features=features,
                             max_subjects=max_subjects, issued_at=issued_at)


_shared: EvaluationVendor | None = None


def shared_vendor() -> EvaluationVendor:
    """One evaluation vendor per process, in a fresh temporary directory."""
    global _shared
    if _shared is None:
        directory = Path(tempfile.mkdtemp(prefix="facekeeper-eval-vendor-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        _shared = EvaluationVendor(directory)
    return _shared


def install_test_license(service: LicensedService, *, vendor: EvaluationVendor | None = None,
                         **terms: Any) -> License:
    """Trust an evaluation vendor in this process and install its license (all features by default)."""
    vendor = vendor or shared_vendor()
    vendor.trust()
    return service.license.install(vendor.issue(service.settings.deployment_id, **terms))


def install_demo_license(service: LicensedService, vendor_dir: Path, *, licensee: str = "facekeeper demo",
                         days: int = 30) -> License:
    """What ``make demo`` calls: a demo vendor key in ``vendor_dir``, trusted by this process, and its license.

    From a shell the same is: ``facekeeper-vendor keygen --throwaway --out DIR``, ``facekeeper-vendor license
    issue --key DIR/vendor_private.pem ...``, then ``facekeeper license install FILE`` with
    ``FACEKEEPER_EVALUATION_VENDOR_KEY=DIR/vendor_public.pem`` exported.
    """
    vendor = EvaluationVendor(vendor_dir)
    now = datetime.now(UTC)
    return install_test_license(service, vendor=vendor, licensee=licensee, issued_at=now,
                                expires_at=now + timedelta(days=days))
