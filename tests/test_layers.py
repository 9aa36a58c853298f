"""The packages form layers: monitor (foundation) ← alerts, indexers ← raqib (the face).

Imports are read from the source (every ``import``, including ones inside functions), so a
late import that turns an arrow around fails here, not in a user's traceback. The files are
parsed in a fresh interpreter: CPython 3.11.7's ast module can fail with "AST constructor
recursion depth mismatch" in a process where other tests provoked a RecursionError.
"""
import ast
import json
import subprocess
import sys
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


def _violations() -> dict[str, list[str]]:
    wrong = {}
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            bad = _imported_packages(path) - allowed - {package}
            if bad:
                wrong[str(path.relative_to(ROOT))] = sorted(bad)
    return wrong


@pytest.fixture(scope="module")
def violations() -> dict[str, list[str]]:
    out = subprocess.run([sys.executable, __file__], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package, violations):
    wrong = {f: bad for f, bad in violations.items() if f.startswith(package + "/")}
    assert not wrong, f"imports against the layering: {wrong}"


def test_the_check_sees_late_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from raqib.cli import main\n    import alerts.matcher\n")
    assert _imported_packages(probe) == {"raqib", "alerts"}


if __name__ == "__main__":
    print(json.dumps(_violations()))
