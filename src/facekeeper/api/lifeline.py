"""Worker processes die with the API process that owns them.

A worker holds a tenant's models and open galleries (about 1.5 GB); after a ``kill -9`` of the API
process nothing would ever send it work again, yet it ran on, and so did multiprocessing's fork server:
the fork server stops when nothing holds its "alive" pipe open any more, and every worker it forked holds
that pipe. So the workers must go first. Each one runs a watchdog thread that ends it (SIGKILL: there is
no one left to answer) within ``WATCH_SECONDS`` of the API process, or of its parent the fork server,
being gone; then the fork server sees the pipe close and exits, and the resource tracker after it. Each
worker also asks the kernel for SIGKILL when the fork server dies (``prctl(PR_SET_PDEATHSIG)``), so a
fork server killed on its own does not leave them behind either.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_SECONDS = 1.0


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def die_with(owner: int) -> None:
    """Make this process end when its parent or ``owner`` (the API process) ends."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent and alive(owner):
            time.sleep(WATCH_SECONDS)
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up: the owner that would want the answers is gone

    threading.Thread(target=watch, name="facekeeper-lifeline", daemon=True).start()
