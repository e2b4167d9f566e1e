"""Import layering (STYLE.md): routing/ is pure; adapters/ reach the core only through the
Gateway services, never the store's implementation or schema."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "routing").glob("*.py")), ids=lambda p: p.name)
def test_routing_is_pure(path: Path) -> None:
    forbidden = ("asyncio", "aiohttp", "aiosqlite", "sqlite3", "gateway", "adapters", "config")
    bad = sorted(n for n in imports_of(path) if n.split(".")[0] in forbidden)
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", sorted((ROOT / "adapters").glob("*.py")), ids=lambda p: p.name)
def test_adapters_do_not_import_the_store_implementation(path: Path) -> None:
    forbidden = {"gateway.store", "gateway.schema", "aiosqlite", "sqlite3", "gateway.intake"}
    bad = sorted(n for n in imports_of(path) if n in forbidden)
    assert bad == [], f"{path.name} imports {bad}"
