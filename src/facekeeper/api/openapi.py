"""The OpenAPI document of ``/v1``, as committed in ``docs/openapi.json`` (a test keeps the two equal).

Regenerate after changing a route: ``python -m facekeeper.api.openapi > docs/openapi.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from facekeeper.api.app import ServerSettings, create_app
from facekeeper.api.runner import ThreadRunner
from facekeeper.api.tenants import Layout


def document() -> dict[str, Any]:
    """The schema the service serves at ``/v1/openapi.json`` (built against an empty, throwaway root)."""
    with tempfile.TemporaryDirectory() as tmp:
        layout = Layout(Path(tmp) / "root", Path(tmp) / "keys")
        app = create_app(layout, ServerSettings(in_process=True), runner=ThreadRunner(layout))
        schema: dict[str, Any] = app.openapi()
        app.state.ctx.keys.close()
        return schema


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
