"""Which template pairs a calibration compares, with every person's share bounded.

A gallery holds the data a threshold needs: two templates of different subjects are an impostor pair, two
of the same subject a genuine pair. Comparing every pair would let a person with many photos, or a large
site, weigh on the table out of proportion, and would make a person's influence grow with the gallery. So:

- subjects sit on a ring, in the order of a keyed hash of their pseudonym (secret per deployment, stable);
- each subject is paired with its ``partners`` successors on the ring (``2 * partners`` others in all; the
  whole gallery when it is smaller), each such pair of subjects giving at most ``per_partner`` template
  pairs, chosen by keyed hash;
- each subject gives at most ``genuine`` pairs of its own templates.

Adding or removing one person then changes at most ``3 * partners * per_partner`` impostor pairs (the
person's own ``2 * partners`` partners, plus the ``partners`` predecessors that each swap one partner) and
``genuine`` genuine pairs, whatever the size of the gallery: ``PairPlan.sensitivity``, what the federated
round's noise is scaled to.

A mode compares pairs with one or more models (``Mode.sources``): the same template pairs are measured by
each source and the per-source distances are combined into the mode's distance (``Mode.combine``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256

import numpy as np

Combine = Callable[[Sequence[np.ndarray]], np.ndarray]
Prepare = Callable[[str, np.ndarray], np.ndarray]


def single(distances: Sequence[np.ndarray]) -> np.ndarray:
    """The combination of a one-model mode: its distance as it is."""
    (only,) = distances
    return only


def as_stored(model_id: str, vectors: np.ndarray) -> np.ndarray:
    return vectors


@dataclass(frozen=True)
class Mode:
    """A matching mode as calibration sees it: the table it decides with, and how its distance is made.

    ``table_key`` names the mode's calibration table in the signed bundle; ``sources`` are the model ids
    whose templates are compared (aligned: template ``i`` of a subject is the same photo in every source);
    ``prepare`` maps a source's templates before Euclidean distances are taken (e.g. centring), ``combine``
    turns the per-source distance arrays into the mode's score.
    """

    name: str
    table_key: str
    sources: tuple[str, ...]
    combine: Combine = single
    prepare: Prepare = as_stored


@dataclass(frozen=True)
class PairPlan:
    partners: int = 100
    per_partner: int = 16
    genuine: int = 32

    def __post_init__(self) -> None:
        if self.partners < 1 or self.per_partner < 1 or self.genuine < 0:
            raise ValueError("partners and per_partner must be >= 1, genuine >= 0")

    @property
    def impostor_cap(self) -> int:
        """Impostor pairs one subject takes part in, at most."""
        return 2 * self.partners * self.per_partner

    @property
    def sensitivity(self) -> int:
        """L1 change of one mode's (impostor + genuine) histogram when one person is added or removed."""
        return 3 * self.partners * self.per_partner + self.genuine


@dataclass
class PairDistances:
    """One mode's distances over the planned pairs (no subject, no template is named)."""

    mode: str
    impostor: np.ndarray
    genuine: np.ndarray
    subjects: int


def _rng(key: bytes, *parts: str) -> np.random.Generator:
    digest = hmac.new(key, "|".join(parts).encode(), sha256).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def ring_order(key: bytes, pseudonyms: Sequence[str]) -> list[str]:
    return sorted(pseudonyms, key=lambda p: hmac.new(key, b"ring|" + p.encode(), sha256).digest())


def subject_pairs(key: bytes, pseudonyms: Sequence[str], partners: int) -> list[tuple[str, str]]:
    """Each subject with its ``partners`` successors on the keyed ring; every unordered pair once."""
    ring = ring_order(key, pseudonyms)
    n = len(ring)
    seen: set[tuple[str, str]] = set()
    out = []
    for i, a in enumerate(ring):
        for step in range(1, min(partners, n - 1) + 1):
            b = ring[(i + step) % n]
            edge = (a, b) if a < b else (b, a)
            if edge not in seen:
                seen.add(edge)
                out.append(edge)
    return out


def _choose(rng: np.random.Generator, total: int, at_most: int) -> np.ndarray:
    if total <= at_most:
        return np.arange(total)
    return np.sort(rng.choice(total, at_most, replace=False))


def plan_distances(key: bytes, mode: Mode, templates: Mapping[str, Mapping[str, np.ndarray]],
                   plan: PairPlan) -> PairDistances:
    """The mode's impostor and genuine distances over the planned pairs.

    ``templates[pseudonym][model_id]`` is the (n, dim) array of a subject's protected templates for one
    source; subjects lacking a source of the mode take no part. ``key`` is secret to the deployment: it
    fixes the ring and the sampled pairs, so repeated runs measure the same pairs.
    Subjects whose sources hold different numbers of templates (photos enrolled for a one-model mode
    before others for a fused one) cannot be aligned and take no part either.
    """
    people = {p: [mode.prepare(m, np.asarray(t[m], np.float64)) for m in mode.sources]
              for p, t in templates.items()
              if all(m in t and len(t[m]) for m in mode.sources) and len({len(t[m]) for m in mode.sources}) == 1}
    counts = {p: len(vs[0]) for p, vs in people.items()}
    impostor: list[np.ndarray] = []
    for a, b in subject_pairs(key, list(people), plan.partners):
        na, nb = counts[a], counts[b]
        chosen = _choose(_rng(key, "impostor", a, b), na * nb, plan.per_partner)
        ia, ib = np.divmod(chosen, nb)
        impostor.append(mode.combine([np.linalg.norm(va[ia] - vb[ib], axis=1)
                                      for va, vb in zip(people[a], people[b], strict=True)]))
    genuine: list[np.ndarray] = []
    for p, vs in people.items():
        n = counts[p]
        if n < 2 or plan.genuine == 0:
            continue
        ii, jj = np.triu_indices(n, 1)
        chosen = _choose(_rng(key, "genuine", p), len(ii), plan.genuine)
        genuine.append(mode.combine([np.linalg.norm(v[ii[chosen]] - v[jj[chosen]], axis=1) for v in vs]))
    return PairDistances(mode.name, np.concatenate(impostor) if impostor else np.zeros(0),
                         np.concatenate(genuine) if genuine else np.zeros(0), len(people))
