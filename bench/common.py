"""Helpers shared by the benchmark scripts: machine description, latency statistics, synthetic templates.

Benchmarks on a shared 2-core box are noisy, so every script compares against a peer in the same run and
reports ratios; the helpers here keep that bookkeeping out of the scripts.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_FACES = ROOT.parent / "shared" / "faces"

# Synthetic dlib-like descriptors. Real dlib ResNet descriptors share a large common component (mean norm
# ~1.34, descriptor norm ~1.45 on faces94); identities spread around it, samples around their identity.
# With these constants the synthetic set has within-identity distances ~0.32-0.39 and between-identity
# ~0.74-1.15 (median ~0.89), like dlib on photos taken in the wild. The identity spread decays over the
# dimensions (power -0.5), because real descriptors are not isotropic: some strangers are close.
DIM = 128
MEAN_NORM = 1.3
IDENTITY_SPREAD = 0.6
SAMPLE_NOISE = 0.0219  # per dimension; sqrt(2 * 128) * 0.0219 ~ 0.35 between two samples of one person


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays one clean Markdown document."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def machine() -> str:
    """One line: CPU model, cores, RAM, OS and Python, read from /proc and ``platform``."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
        mem = f"{mem_kb / 2**20:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        mem = "RAM unknown"
    return (f"{model}, {os.cpu_count()} cores, {mem}, no accelerator; {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def today() -> str:
    return dt.date.today().isoformat()


@dataclass(frozen=True)
class Latency:
    """Per-call latencies in seconds."""

    samples: np.ndarray

    def pct(self, q: float) -> float:
        return float(np.percentile(self.samples, q))

    def ms(self) -> str:
        """``p50 / p99 ms`` (p99 of a few dozen samples is close to the maximum: ``n`` says how many)."""
        return f"{fmt_ms(self.pct(50))} / {fmt_ms(self.pct(99))}"

    @property
    def n(self) -> int:
        return len(self.samples)


def print_footer(notes: Sequence[str], started: float) -> None:
    """What every bench prints under its tables: its notes as a list, then how long the run took."""
    if notes:
        print()
        for note in notes:
            print(f"- {note}")
    print(f"\nTotal run time {time.perf_counter() - started:.0f} s.")


def parse_sizes(text: str) -> list[int]:
    """``"1k,10k,1M"`` -> ``[1000, 10000, 1000000]``."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        out.append(int(float(part.rstrip("km")) * scale))
    return out


def human(n: int) -> str:
    """``1000000`` -> ``"1M"``, ``10000`` -> ``"10k"``; other counts as they are."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms:.3f} ms"


def time_calls(fn: Callable[[int], object], n: int, warmup: int = 3) -> Latency:
    """Call ``fn(i)`` for i in range(n) after ``warmup`` untimed calls; each call timed on its own."""
    for i in range(warmup):
        fn(i)
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out[i] = time.perf_counter() - t0
    return Latency(out)


def speedup(peer: float | None, ours: float | None, *, higher_is_better: bool) -> str:
    """How many times better facekeeper is than the peer, as ``2.3x``."""
    if peer is None or ours is None or peer <= 0 or ours <= 0:
        return "-"
    ratio = ours / peer if higher_is_better else peer / ours
    if ratio < 0.1:
        return f"{ratio:.2f}x"
    return f"{ratio:.1f}x" if ratio < 100 else f"{ratio:.0f}x"


class Table:
    """A Markdown table built row by row."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.rows: list[list[str]] = []

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table has {len(self.columns)} columns")
        self.rows.append([str(c).replace("|", "/") for c in cells])

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


@dataclass(frozen=True)
class Synthetic:
    """``vectors[i]`` belongs to identity ``labels[i]``; ``centres`` lets one draw fresh probes."""

    vectors: np.ndarray  # (N, 128) float32
    labels: np.ndarray  # (N,) int64
    centres: np.ndarray  # (identities, 128) float32
    mean: np.ndarray
    spread: np.ndarray

    def probes(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """New samples of enrolled identities: (n, 128) float32 and their identity labels."""
        who = rng.integers(0, len(self.centres), size=n)
        noise = rng.standard_normal((n, DIM), dtype=np.float32) * SAMPLE_NOISE
        return (self.centres[who] + noise).astype(np.float32), who.astype(np.int64)


def synthetic_faces(identities: int, per_identity: int, seed: int = 0) -> Synthetic:
    """``identities`` x ``per_identity`` descriptors clustered like dlib's (see the constants above)."""
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(DIM)
    mean = (direction / np.linalg.norm(direction) * MEAN_NORM).astype(np.float32)
    profile = np.arange(1, DIM + 1, dtype=np.float64) ** -0.5
    spread = (profile / np.linalg.norm(profile) * IDENTITY_SPREAD).astype(np.float32)
    centres = mean + rng.standard_normal((identities, DIM), dtype=np.float32) * spread
    n = identities * per_identity
    labels = np.repeat(np.arange(identities, dtype=np.int64), per_identity)
    vectors = np.empty((n, DIM), dtype=np.float32)
    step = 100_000
    for i in range(0, n, step):
        j = min(i + step, n)
        vectors[i:j] = centres[labels[i:j]] + rng.standard_normal((j - i, DIM), dtype=np.float32) * SAMPLE_NOISE
    return Synthetic(vectors, labels, centres, mean, spread)


def distance_profile(data: Synthetic, pairs: int = 20_000, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """5/50/95th percentiles of within- and between-identity distances, to show the data is face-like."""
    rng = np.random.default_rng(seed)
    per = int(np.bincount(data.labels).max())
    ids = len(data.centres)
    a = rng.integers(0, ids, pairs) * per
    same = a + rng.integers(1, per, pairs) if per > 1 else a
    other = ((a // per + rng.integers(1, ids, pairs)) % ids) * per
    v = data.vectors
    within = np.linalg.norm(v[a] - v[same], axis=1)
    between = np.linalg.norm(v[a] - v[other], axis=1)
    return np.percentile(within, [5, 50, 95]), np.percentile(between, [5, 50, 95])


def dir_bytes(paths: Sequence[Path]) -> int:
    """Total size of the files given, counting SQLite's -wal/-shm companions when present."""
    total = 0
    for p in paths:
        for candidate in (p, p.with_name(p.name + "-wal"), p.with_name(p.name + "-shm")):
            if candidate.exists():
                total += candidate.stat().st_size
    return total
