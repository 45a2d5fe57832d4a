"""The code a job runs, as one digest, so that editing the science re-runs what it changes.

Snakemake's code rerun trigger sees only a rule's entry script, not the package modules the
script imports. Each rule therefore carries in its ``params`` the digest of its entry script
and of every ``saturation`` module it can reach through imports (module-level and
function-level alike, found by reading the source, never by importing it): editing
``plots.py`` re-runs the figures, editing ``metrics.py`` the measurements and what reads
them, and nothing else changes.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "saturation"


def imported_modules(source: str, package: str = PACKAGE) -> set[str]:
    """Names of the ``package`` modules a source file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == package and len(parts) >= 2:
                found.add(parts[1])
    return found


def module_closure(script: Path, package_dir: Path) -> list[Path]:
    """The entry script and every package module it reaches, sorted."""
    seen: dict[str, Path] = {}
    todo = [script]
    files = {script}
    while todo:
        path = todo.pop()
        for name in imported_modules(path.read_text()):
            module = package_dir / f"{name}.py"
            if name not in seen and module.exists():
                seen[name] = module
                files.add(module)
                todo.append(module)
    init = package_dir / "__init__.py"
    if init.exists():
        files.add(init)
    return sorted(files)


@cache
def code_digest(script: str, package_dir: str) -> str:
    """sha256 over the names and bytes of :func:`module_closure`'s files."""
    package = Path(package_dir)
    h = hashlib.sha256()
    for path in module_closure(Path(script), package):
        name = path.name if path.parent == package else f"entry/{path.name}"
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
