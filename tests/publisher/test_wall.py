"""The wall: vendor code never touches customer data, so it never imports the gallery, privacy or service."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import facekeeper.publisher

FORBIDDEN = ("facekeeper.gallery", "facekeeper.privacy", "facekeeper.service")
PUBLISHER = Path(facekeeper.publisher.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_no_vendor_module_names_customer_data_code() -> None:
    modules = sorted(PUBLISHER.glob("*.py"))
    assert len(modules) >= 5
    for path in modules:
        bad = {m for m in imported_modules(path) if m.startswith(FORBIDDEN) or m in ("facekeeper.gallery",)}
        assert not bad, f"{path.name} imports {bad}"


def test_importing_every_vendor_module_loads_no_customer_data_code() -> None:
    names = [f"facekeeper.publisher.{p.stem}" for p in sorted(PUBLISHER.glob("*.py")) if p.stem != "__main__"]
    code = (f"import importlib, json, sys\nfor n in {names!r}: importlib.import_module(n)\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r}))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
