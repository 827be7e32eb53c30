"""Door outputs: what tells the site's door controller that a door may open. One small interface:

    output(grant) -> answer        (a short word the audit, the log and the metrics record)
    output.close()

- ``DryRun`` only logs (commissioning, tests): answers ``logged``.
- ``Webhook`` POSTs the grant as JSON to the controller with ``X-Facekeeper-Timestamp`` (Unix seconds) and
  ``X-Facekeeper-Signature: sha256=HEX``, HMAC-SHA256 under the door's secret over ``TIMESTAMP.BODY``; the body
  carries a fresh ``id``, so a controller that keeps ids for its tolerance window (30 s is plenty) rejects
  a replay. Answers ``accepted`` (2xx), ``rejected:STATUS`` (anything else: reported) or ``unreachable``.
- ``Osdp`` makes this gate an OSDP peripheral device (a reader) on the controller's RS-485 line, secure
  channel enforced (libosdp), and sends the person's site credential number as a 32-bit card read; the
  controller decides on it as on a badge. Answers ``sent`` (the controller acknowledged it), ``unacknowledged``,
  ``no-secure-channel`` or ``no-credential-number`` (the subject id is not a number below 2^32).

Only a door that opens is told anything: an unknown face sends nothing. Wiegand is not offered: it is
plaintext on the wire and anyone with a clip on the cable can replay it (docs/gate.md).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import osdp

from facekeeper.config import DoorSettings
from facekeeper.errors import ConfigError
from facekeeper.gate.decision import Grant
from facekeeper.gate.source import check_site_address

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("facekeeper.gate.doors")

SIGNATURE_HEADER = "X-Facekeeper-Signature"
TIMESTAMP_HEADER = "X-Facekeeper-Timestamp"
CARD_BITS = 32


class DoorOutput(Protocol):
    kind: str

    def __call__(self, grant: Grant) -> str: ...

    def close(self) -> None: ...


def secret(reference: str) -> bytes:
    """The secret a ``env:NAME`` or ``file:PATH`` reference names (settings never hold secrets themselves)."""
    kind, _, name = reference.partition(":")
    if kind == "env" and os.environ.get(name):
        return os.environ[name].strip().encode()
    if kind == "file":
        try:
            value = Path(name).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the door secret file {name}: {exc.strerror}") from None
        if value:
            return value
    raise ConfigError(f"the door secret {reference!r} is not set: give env:NAME of a set variable or file:PATH")


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """The webhook's signature header value: ``sha256=`` HMAC-SHA256(key, TIMESTAMP "." BODY) in hex."""
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, sha256).hexdigest()


def credential_number(subject_id: str) -> int | None:
    """The site credential number a card reader would send: the subject id, when the site enrolled people
    under their badge numbers (decimal, below 2^32)."""
    return int(subject_id) if subject_id.isascii() and subject_id.isdigit() and int(subject_id) < 2**CARD_BITS \
        else None


class DryRun:
    kind = "dry-run"

    def __call__(self, grant: Grant) -> str:
        log.info("door %s: would open (%s)", grant.door, grant.via)
        return "logged"

    def close(self) -> None:
        return None


class Webhook:
    kind = "webhook"

    def __init__(self, url: str, key: bytes, *, timeout: float = 2.0, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        import httpx

        self.url = url
        self._key = key
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)
        self._clock = clock

    def __call__(self, grant: Grant) -> str:
        import httpx

        body = json.dumps({"id": uuid.uuid4().hex, "door": grant.door, "subject_id": grant.subject_id,
                           "via": grant.via, "decided_at": round(grant.at, 3)},
                          sort_keys=True, separators=(",", ":")).encode()
        timestamp = str(int(self._clock()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: sign(self._key, timestamp, body)}
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except (httpx.HTTPError, OSError) as exc:
            log.warning("door %s: the controller could not be reached (%s)", grant.door, type(exc).__name__)
            return "unreachable"
        if 200 <= response.status_code < 300:
            return "accepted"
        log.warning("door %s: the controller rejected the grant (HTTP %d)", grant.door, response.status_code)
        return f"rejected:{response.status_code}"

    def close(self) -> None:
        self._client.close()


class SerialChannel(osdp.Channel):
    """An RS-485 line through a serial device (raw, 8N1), as libosdp's channel: read, write, flush."""

    def __init__(self, device: str, baud: int) -> None:
        import termios
        import tty

        super().__init__()

        speed = getattr(termios, f"B{baud}", None)
        if speed is None:
            raise ConfigError(f"unsupported serial speed {baud}")
        try:
            self._fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            raise ConfigError(f"cannot open the OSDP line {device}: {exc.strerror}") from None
        tty.setraw(self._fd)
        attrs = termios.tcgetattr(self._fd)
        attrs[4] = attrs[5] = speed
        termios.tcsetattr(self._fd, termios.TCSANOW, attrs)

    def read(self, max_bytes: int) -> bytes:
        try:
            return os.read(self._fd, max_bytes)
        except BlockingIOError:
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return os.write(self._fd, buf)
        except BlockingIOError:
            return 0

    def flush(self) -> None:
        import termios

        termios.tcflush(self._fd, termios.TCIOFLUSH)

    def close(self) -> None:
        os.close(self._fd)


class Osdp:
    """This gate as an OSDP reader (peripheral device) at ``address``, secure channel enforced with ``scbk``."""

    kind = "osdp"

    def __init__(self, channel: osdp.Channel, address: int, scbk: bytes, *, timeout: float = 2.0) -> None:
        if len(scbk) != 16:
            raise ConfigError("the OSDP secure channel base key is 16 bytes (32 hex digits)")
        self._timeout = timeout
        self._acked: dict[bytes, threading.Event] = {}
        self._channel = channel
        self._pd = osdp.PeripheralDevice(
            osdp.PDInfo(address, channel, scbk=scbk, flags=[osdp.LibFlag.EnforceSecure], name="facekeeper-gate"),
            osdp.PDCapabilities([(osdp.Capability.CardDataFormat, 1, 1), (osdp.Capability.Readers, 1, 1),
                                 (osdp.Capability.CommunicationSecurity, 1, 1)]),
            log_level=osdp.LogLevel.Error, event_completion_handler=self._completed)
        self._pd.start()

    def _completed(self, event: dict[str, Any], status: int) -> None:
        done = self._acked.get(bytes(event.get("data", b"")))
        if done is not None and status == 0:
            done.set()

    @property
    def secure(self) -> bool:
        return bool(self._pd.is_sc_active())

    def __call__(self, grant: Grant) -> str:
        number = credential_number(grant.subject_id)
        if number is None:
            log.warning("door %s: the subject id is not a credential number: nothing sent", grant.door)
            return "no-credential-number"
        if not self.secure:
            log.warning("door %s: no OSDP secure channel with the controller: nothing sent", grant.door)
            return "no-secure-channel"
        data = number.to_bytes(CARD_BITS // 8, "big")
        done = self._acked[data] = threading.Event()
        try:
            self._pd.submit_event({"event": osdp.Event.CardRead, "reader_no": 0, "direction": 0,
                                   "length": CARD_BITS, "format": osdp.CardFormat.Wiegand, "data": data})
            return "sent" if done.wait(self._timeout) else "unacknowledged"
        finally:
            self._acked.pop(data, None)

    def close(self) -> None:
        self._pd.teardown()
        close = getattr(self._channel, "close", None)
        if close is not None:
            close()


def output_for(door: str, settings: DoorSettings, allow_nets: Iterable[str]) -> DoorOutput:
    """The output ``[doors.NAME]`` configures (its secret read now, so a missing one stops the start)."""
    if settings.output == "webhook":
        check_site_address(settings.url, allow_nets, "door controller")
        return Webhook(settings.url, secret(settings.secret), timeout=settings.timeout_seconds)
    if settings.output == "osdp":
        try:
            scbk = bytes.fromhex(secret(settings.secret).decode())
        except ValueError:
            raise ConfigError(f"doors.{door}.secret: the OSDP key is 32 hex digits") from None
        return Osdp(SerialChannel(settings.osdp_device, settings.osdp_baud), settings.osdp_address, scbk,
                    timeout=settings.timeout_seconds)
    return DryRun()
