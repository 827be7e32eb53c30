"""The camera: frames from a V4L2 device, an RTSP camera on the site's network, or a video file.

Decoding is OpenCV's ``VideoCapture`` (its wheel bundles FFmpeg, LGPL 2.1: see docs/gate.md). FFmpeg opens
its sockets in native code, where the Python egress guard cannot see them, so a network source is checked
here before it is opened: its host must be an address (a name would be a DNS query FFmpeg makes natively)
on loopback or in the networks the site allowed (``[gate] allow_nets``). A live source that stops giving
frames is released and opened again with a growing pause (``Backoff``), and each drop and reconnection is
reported (``on_event``, the log and the gate's metrics). A file ends at its last frame.

Frames are RGB arrays in memory; nothing here writes them anywhere.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import numpy as np

from facekeeper.egress import is_local
from facekeeper.errors import ConfigError

log = logging.getLogger("facekeeper.gate.source")

Kind = Literal["device", "network", "file"]
FAILED_READS_BEFORE_RECONNECT = 5  # a few bad packets are decode errors; this many in a row is a drop


class Capture(Protocol):
    """What ``Source`` needs of ``cv2.VideoCapture`` (tests pass a fake that drops and recovers)."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, Any]: ...

    def grab(self) -> bool: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class Frame:
    """One decoded frame: (H, W, 3) RGB uint8; ``at`` in seconds (a file's own clock, or monotonic when live)."""

    rgb: np.ndarray
    at: float
    index: int


def kind_of(spec: str) -> Kind:
    if "://" in spec:
        return "network"
    if spec.isdigit() or spec.startswith("/dev/video"):
        return "device"
    return "file"


def redacted(spec: str) -> str:
    """The source as logs may show it: a URL without its user and password."""
    if "://" not in spec:
        return spec
    parts = urlsplit(spec)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_site_address(spec: str, allow_nets: Iterable[str], what: str = "camera") -> None:
    """``ConfigError`` unless the URL's host is an address on loopback or in ``allow_nets``."""
    host = urlsplit(spec).hostname
    if not host:
        raise ConfigError(f"{redacted(spec)} names no host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"give the {what}'s address, not a name ({host}): a name is a DNS query made outside"
                          " the egress guard") from None
    try:
        nets = [ipaddress.ip_network(n, strict=False) for n in allow_nets]
    except ValueError as exc:
        raise ConfigError(f"[gate] allow_nets: {exc}") from None
    if not is_local(host, nets):
        raise ConfigError(f"the {what} {host} is outside the networks the egress guard admits: add its network"
                          " to [gate] allow_nets")


@dataclass
class Backoff:
    """Pauses between reconnection attempts: ``first`` seconds, doubling up to ``most``."""

    first: float = 0.5
    most: float = 30.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * 2, self.most)


@dataclass
class SourceStats:
    frames: int = 0
    decode_errors: int = 0
    drops: int = 0
    reconnects: int = 0
    connected: bool = False


def open_capture(spec: str) -> Capture:
    import cv2

    target: str | int = int(spec) if spec.isdigit() else spec
    backend = cv2.CAP_V4L2 if kind_of(spec) == "device" else cv2.CAP_FFMPEG
    return cv2.VideoCapture(target, backend)  # type: ignore[return-value]


class Source:
    """Frames of one camera or file, reconnecting a live source that drops (``stop()`` ends the stream).

    ``realtime`` paces a file to its frame rate and skips frames when processing falls behind, as a live
    camera would (benchmarks); otherwise a file is read as fast as it is processed (tests, replays).
    """

    def __init__(self, spec: str, *, allow_nets: Iterable[str] = (), opener: Callable[[str], Capture] = open_capture,
                 backoff: Backoff | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, realtime: bool = False,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.spec = spec
        self.kind = kind_of(spec)
        if self.kind == "network":
            check_site_address(spec, allow_nets)
        elif self.kind == "file" and not Path(spec).is_file():
            raise ConfigError(f"no video file at {spec}")
        self._open = opener
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._clock = clock
        self.realtime = realtime
        self._on_event = on_event
        self.stats = SourceStats()
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    def _report(self, event: str, **facts: Any) -> None:
        log.warning("camera %s: %s %s", redacted(self.spec), event, facts)
        if self._on_event is not None:
            self._on_event(event, facts)

    def _connect(self) -> Capture | None:
        """Open the source, pausing between failed attempts (a file or a device that is absent fails at once)."""
        for attempt, delay in enumerate(self.backoff.delays(), start=1):
            if self._stopped:
                return None
            cap = self._open(self.spec)
            if cap.isOpened():
                self.stats.connected = True
                return cap
            cap.release()
            if self.kind == "file":
                raise ConfigError(f"cannot decode the video file {self.spec}")
            self._report("unreachable", attempt=attempt, retry_in=delay)
            self._sleep(delay)
        return None  # pragma: no cover (the delays never end)

    def frames(self) -> Iterator[Frame]:
        import cv2

        cap = self._connect()
        index = 0
        fps = (cap.get(cv2.CAP_PROP_FPS) if cap is not None else 0.0) or 25.0
        started = self._clock()
        failed = 0
        try:
            while cap is not None and not self._stopped:
                if self.kind == "file" and self.realtime:
                    behind = int((self._clock() - started) * fps) - index
                    for _ in range(max(behind, 0)):  # a live camera would not have waited either
                        cap.grab()
                        index += 1
                    ahead = index / fps - (self._clock() - started)
                    if ahead > 0:
                        self._sleep(ahead)
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    if self.kind == "file":
                        return
                    failed += 1
                    self.stats.decode_errors += 1
                    if failed < FAILED_READS_BEFORE_RECONNECT:
                        continue
                    self.stats.drops += 1
                    self.stats.connected = False
                    self._report("dropped", failed_reads=failed)
                    cap.release()
                    cap = self._connect()
                    if cap is not None:
                        self.stats.reconnects += 1
                        self._report("reconnected", reconnects=self.stats.reconnects)
                    failed = 0
                    continue
                failed = 0
                at = index / fps if self.kind == "file" else self._clock()
                self.stats.frames += 1
                yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), at, index)
                index += 1
        finally:
            if cap is not None:
                cap.release()
            self.stats.connected = False
