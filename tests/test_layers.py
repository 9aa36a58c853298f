"""The packages form layers: monitor (foundation) ← alerts, indexers ← raqib (the face).

Imports are read from the source (every ``import``, including ones inside functions), so a
late import that turns an arrow around fails here, not in a user's traceback.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> packages it may import (besides itself)
ALLOWED = {
    "monitor": set(),
    "alerts": {"monitor"},
    "indexers": {"monitor", "alerts"},
    "raqib": {"monitor", "alerts", "indexers"},
}


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package):
    wrong = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imported_packages(path) - ALLOWED[package] - {package}
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert not wrong, f"imports against the layering: {wrong}"


def test_the_check_sees_late_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from raqib.cli import main\n    import alerts.matcher\n")
    assert _imported_packages(probe) == {"raqib", "alerts"}
