"""docs/operations.md shows the declared operations as the code declares them."""

from __future__ import annotations

from pathlib import Path

from facekeeper import contract

DOC = Path(__file__).parents[1] / "docs" / "operations.md"


def test_the_operations_table_in_the_docs_is_the_code_s() -> None:
    assert contract.markdown() in DOC.read_text(encoding="utf-8"), "regenerate: python -m facekeeper.contract"
