"""Builds the Cython twins of the hot-path modules in place (src/tenantproxy/wire/mysql/_*_c).

Each twin is its .py module compiled as it is (Cython's pure Python mode), so the two cannot drift.

Run by scripts/setup.sh (``make setup``). The .c and .so files are build output (.gitignore).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "src" / "tenantproxy" / "wire" / "mysql"
TWINS = ("response_tracker", "framing")


def twin_source(name: str) -> Path:
    """A copy of ``name``.py named after its twin (Cython names a module after its file)."""
    # In its package's folders, so Cython finds the augmenting .pxd by the twin's full name.
    package = ROOT / "build" / "cython" / "tenantproxy" / "wire" / "mysql"
    package.mkdir(parents=True, exist_ok=True)
    for folder in (package, package.parent, package.parent.parent):
        (folder / "__init__.py").touch()
    target = package / f"_{name}_c.py"
    _copy_if_changed(PACKAGE_DIR / f"{name}.py", target)
    augmenting = PACKAGE_DIR / f"{name}.pxd"  # C declarations for the twin only
    if augmenting.exists():
        _copy_if_changed(augmenting, target.with_suffix(".pxd"))
    return target


def _copy_if_changed(source: Path, target: Path) -> None:
    text = source.read_text()
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


def extensions() -> list[Extension]:
    return [
        Extension(f"tenantproxy.wire.mysql._{name}_c", [str(twin_source(name))]) for name in TWINS
    ]


def main() -> None:
    # annotation_typing off: the twins must behave exactly as the .py (no int/bytes coercions).
    modules = cythonize(
        extensions(),
        compiler_directives={"language_level": 3, "annotation_typing": False, "binding": True},
        quiet=True,
    )
    sys.argv = [sys.argv[0], "build_ext", "--inplace", "--build-temp", str(ROOT / "build" / "temp")]
    os.chdir(ROOT / "build")  # away from pyproject.toml: this is not the package's own build
    setup(name="tenantproxy-compiled", ext_modules=modules, package_dir={"": str(ROOT / "src")})


if __name__ == "__main__":
    main()
