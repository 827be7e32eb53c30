"""Third-party telemetry, switched off in every process before the library that sends it is imported.

onnxruntime 1.32.0 (which runs the embedders and MTCNN) has native telemetry on Linux: when a session is
created it writes a device id and an event queue under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/``,
and about ten seconds later asks DNS for ``mobile.events.data.microsoft.com``. It calls libc directly, so
the Python egress guard (``egress.py``) never sees it. ``ORT_DISABLE_TELEMETRY=1`` stops both, but only if it
is in the environment when onnxruntime starts; ``disable_telemetry_events()`` does not. So
``facekeeper/__init__.py`` calls ``switch_off()`` before any submodule is imported, and every process
facekeeper starts (service workers, Ray nodes, Flower apps) gets ``OFF`` in its environment as well.
"""

from __future__ import annotations

import os

# Forced, not defaulted: an inherited "0" must not turn telemetry back on in a product that sends nothing.
OFF = {"ORT_DISABLE_TELEMETRY": "1"}


def switch_off() -> None:
    """Put ``OFF`` into this process's environment (children inherit it)."""
    os.environ.update(OFF)
