"""The data flow of the tree is one-way: vhs/ (library and serving runtime) <- export/ <- client/,
benchmarks/. The runtime never imports the exporter, so a Triton stub needs only `vhs`."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package -> the project packages it must not import
FORBIDDEN = {
    "vhs": {"export", "client", "benchmarks"},
    "export": {"client", "benchmarks"},
    "model_repository": {"export", "client", "benchmarks"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_against_the_data_flow(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_checker_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "lazy.py"
    module.write_text("def load():\n    from export.manifest import load_manifest\n")
    assert "export" in imported_packages(module)
