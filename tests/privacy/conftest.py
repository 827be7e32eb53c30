"""A real gallery and privacy layer in a temporary deployment, with a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from facekeeper.config import Settings
from facekeeper.gallery.gallery import Gallery
from facekeeper.gallery.keys import DeploymentKey, write_key_file
from facekeeper.privacy import Actor, Privacy

MODEL = "dlib-resnet-v1"
T0 = 1_800_000_000.0  # 2027-01-15
DAY = 86_400.0
ADMIN = Actor("alice", "admin")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, days: float) -> None:
        self.now += days * DAY


@dataclass
class Site:
    settings: Settings
    key: DeploymentKey
    gallery: Gallery
    privacy: Privacy
    clock: Clock

    def reopen(self) -> Site:
        """A second process on the same files."""
        gallery = Gallery.open(self.settings, self.key)
        return Site(self.settings, self.key, gallery, Privacy(self.settings, self.key, gallery, self.clock), self.clock)

    def close(self) -> None:
        self.privacy.close()
        self.gallery.close()

    def consent(self, subject_id: str, purpose: str = "access-control", **kw: object) -> None:
        self.privacy.grant(ADMIN, subject_id, purpose, method=str(kw.pop("method", "paper")),
                           evidence=str(kw.pop("evidence", "form 2027-001")), **kw)  # type: ignore[arg-type]

    def enroll(self, subject_id: str, vectors: np.ndarray, purpose: str = "access-control",
               actor: Actor = ADMIN) -> str:
        """What Service.enroll does around the gallery, without a face engine."""
        with self.privacy.operation(actor, "enroll", purpose, operation="enroll") as op:
            pseudonym = self.privacy.prepare_enroll(op, subject_id)
            return self.gallery.enroll(subject_id, vectors, MODEL, pseudonym=pseudonym,
                                       within=self.privacy.enroll_hook(op))

    def search(self, probe: np.ndarray, purpose: str, k: int = 5) -> list[str]:
        """Subject ids a purpose-bound search returns."""
        allowed = self.privacy.allowed(purpose, self.clock())
        return [self.gallery.identity(c.pseudonym)[0] for c in self.gallery.search(probe, MODEL, k, allowed=allowed)]


def fill_notice(settings: Settings) -> None:
    n = settings.notice
    n.version, n.controller, n.contact = "2027-01", "Example Site Ltd", "privacy@example.test"
    n.retention = "Until you withdraw, 3 years without use, or 3 years at most."
    n.rights = "Access, withdrawal, erasure, a PIN instead of your face, a complaint to the authority."


def make_site(root: Path, notice: bool = True) -> Site:
    settings = Settings(data_dir=root / "data", key_dir=root / "keys")
    settings.data_dir.mkdir(parents=True)
    if notice:
        fill_notice(settings)
    key = DeploymentKey.generate()
    write_key_file(settings.key_path, key)
    settings.save()
    gallery = Gallery.create(settings, key)
    clock = Clock()
    return Site(settings, key, gallery, Privacy(settings, key, gallery, clock), clock)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = make_site(tmp_path)
    yield s
    s.close()


def people(n: int, per: int = 2, seed: int = 1) -> dict[str, np.ndarray]:
    """Synthetic descriptors shaped like dlib's: identities ~0.9 apart, samples ~0.35 from each other."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 0.08, (n, 128))
    return {f"p{i:04d}": (centres[i] + rng.normal(0, 0.018, (per, 128))).astype(np.float32) for i in range(n)}
