"""The layers of DESIGN.md §3, checked on the import statements of every module."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tenantproxy"

# layer -> the tenantproxy layers it may import (besides itself)
ALLOWED_IMPORTS: dict[str, set[str]] = {
    "wire": set(),
    "pool": {"errors"},
    "secretstore": {"errors", "config"},
    "identity": {"errors", "serving"},
    "serving": set(),
    "observability": {"errors"},
    "config": {"errors"},
    "errors": set(),
    "proxy": {"wire", "pool", "secretstore", "identity", "observability", "config", "errors"},
    "stack": {
        "config",
        "errors",
        "secretstore",
        "observability",
        "app",
        "wire",
        "identity",
        "accessapi",
    },
    "app": {"proxy", "pool", "secretstore", "identity", "observability", "config", "errors"},
    "cli": {
        "app",
        "stack",
        "secretstore",
        "config",
        "errors",
        "demo",
        "identity",
        "loadtest",
        "accessapi",
    },
    # Drives the stack from outside: reads its outputs, never imports the proxy or access API.
    "loadtest": {"config", "errors", "stack", "observability"},
    # DESIGN §3: the access API talks to the proxy over the wire only.
    "accessapi": {"identity", "secretstore", "config", "errors", "observability", "serving"},
    "demo": {"stack", "secretstore", "config", "errors", "identity"},
}
STDLIB_NAMES_NOT_TO_SHADOW = {"secrets", "http", "logging", "token", "queue", "ssl", "socket"}
IO_MODULES = {"asyncio", "socket", "ssl", "logging", "uvloop", "selectors", "threading"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py") if relative.parts[0] != "__init__.py" else ""


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_imports_only_the_layers_below_it(path: Path) -> None:
    layer = layer_of(path)
    if not layer:
        return
    allowed = ALLOWED_IMPORTS[layer] | {layer}
    for name in imported_modules(path):
        if name.startswith("tenantproxy."):
            target = name.split(".")[1]
            assert target in allowed, f"{path.name} ({layer}) imports {name}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "wire").rglob("*.py")), ids=lambda p: p.name)
def test_the_wire_layer_does_no_io(path: Path) -> None:
    roots = {name.split(".")[0] for name in imported_modules(path)}
    assert not roots & IO_MODULES, f"{path.name} imports {roots & IO_MODULES}"
    third_party = {
        r for r in roots if r not in sys.stdlib_module_names and r not in {"tenantproxy"}
    }
    assert not third_party, f"{path.name} imports {third_party}"


def test_no_module_shadows_a_standard_library_module() -> None:
    shadows = [p for p in modules() if p.stem in STDLIB_NAMES_NOT_TO_SHADOW]
    assert shadows == []
