"""Chooses between the pure-Python hot-path modules and their Cython-compiled twins.

``_response_tracker_c`` and ``_framing_c`` are built by ``scripts/build_compiled.py`` (run by
``make setup``) from the very same ``.py`` sources (Cython's pure Python mode), so the two
paths cannot drift apart; tests/unit/wire/test_compiled_parity.py checks that they agree.

TENANTPROXY_PURE_PYTHON=1 forces the ``.py`` modules; TENANTPROXY_COMPILED=1 requires the compiled
ones and fails at import when they are missing. Otherwise compiled is used when importable.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

_PACKAGE = "tenantproxy.wire.mysql"


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def compiled_module(name: str) -> ModuleType | None:
    """The compiled twin of ``name`` (e.g. "framing"), or None when the pure path is chosen."""
    if _flag("TENANTPROXY_PURE_PYTHON"):
        return None
    try:
        return importlib.import_module(f"{_PACKAGE}._{name}_c")
    except ImportError as error:
        if _flag("TENANTPROXY_COMPILED"):
            raise RuntimeError(
                f"TENANTPROXY_COMPILED=1 but {_PACKAGE}._{name}_c is not built "
                "(run scripts/build_compiled.py or make setup)"
            ) from error
        return None


def adopt(namespace: dict[str, Any], name: str, names: tuple[str, ...]) -> None:
    """Replaces ``names`` in a pure module's namespace with the compiled twin's, when chosen."""
    module = compiled_module(name)
    if module is None:
        return
    for public in names:
        namespace[public] = getattr(module, public)
    namespace["COMPILED"] = True


def pure_module(name: str) -> ModuleType:
    """The pure-Python module ``name``, never replaced by its twin (the parity reference)."""
    loaded = sys.modules.get(f"{_PACKAGE}._{name}_pure")
    if loaded is not None:
        return loaded
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"{_PACKAGE}._{name}_pure", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module
