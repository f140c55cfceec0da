"""Which code may import which, read from the source (imports inside functions included).

- The data flow is one-way: vhs/ (library, runtime, launcher) <- export/ (vhs.export) <- client/
  (vhs.client), benchmarks/ (vhs.benchmarks).
- The in-server runtime, i.e. what a Triton stub imports (vhs/runtime and the model_repository
  models, followed through every project module they import), is light: no torch, diffusers or
  transformers, no training, preset building, checkpoint conversion, exporter or launcher. A stub
  then needs numpy, tokenizers and onnxruntime only (the `runtime` extra).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Package -> its folder, as pyproject.toml's package-dir maps them.
PROJECT_PACKAGES = {
    "vhs": "vhs",
    "vhs.export": "export",
    "vhs.client": "client",
    "vhs.benchmarks": "benchmarks",
    "vhs.model_repository": "model_repository",
}
# folder -> the packages its code must not import
FORBIDDEN = {
    "vhs": {"vhs.export", "vhs.client", "vhs.benchmarks"},
    "export": {"vhs.client", "vhs.benchmarks"},
    "model_repository": {"vhs.export", "vhs.client", "vhs.benchmarks"},
}
RUNTIME_ROOTS = ("vhs/runtime/*.py", "model_repository/*/1/model.py")
HEAVY_LIBRARIES = {"torch", "diffusers", "transformers"}
# Project code a stub must never load: training, preset building (vhs.presets imports torch and
# builds presets), checkpoint conversion, the exporter, the process launcher, the clients.
OFF_LIMITS_MODULES = (
    "vhs.train",
    "vhs.presets",
    "vhs.convert",
    "vhs.launcher",
    "vhs.pipeline",
    "vhs.export",
    "vhs.client",
    "vhs.benchmarks",
)
# (module, library) pairs that are allowed, and why. On a GPU the engines hand each other device
# tensors through DLPack, and torch is the array library they are held in (the GPU serving image has
# it, docs/gpu-deployment.md); vhs/runtime/dlpack.py imports it inside the device path only, and
# test_a_cpu_stub_loads_no_heavy_library checks that the CPU path never reaches it.
ALLOWED_HEAVY_IMPORTS = {("vhs.runtime.dlpack", "torch")}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every absolute import in `path`."""
    return {name.split(".")[0] for name, _ in _imports(path, module_name=None)}


def imported_modules(path: Path) -> set[str]:
    """Every module an absolute import of `path` may name (`from a import b`: a and a.b)."""
    found = set()
    for module, names in _imports(path, module_name=None):
        found |= {module, *(f"{module}.{name}" for name in names)}
    return found


def within(module: str, packages: set[str] | tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def _imports(path: Path, module_name: str | None) -> list[tuple[str, tuple[str, ...]]]:
    """(imported module, names imported from it) for every import of `path`, relative ones resolved
    against `module_name`; imports under `if TYPE_CHECKING:` are left out (they never run)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            if node.level == 0:
                found.append((node.module, names))
            elif module_name is not None:
                package = module_name.split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                base = package[: len(package) - node.level + 1]
                found.append((".".join(base + ([node.module] if node.module else [])), names))
    return found


def _runtime_nodes(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


@dataclass
class ImportGraph:
    """The project's modules (name -> file) and what each one imports."""

    packages: dict[str, Path]  # top-level import name -> folder

    def module_file(self, name: str) -> Path | None:
        packages = [package for package in self.packages if within(name, (package,))]
        if not packages:
            return None
        package = max(packages, key=len)  # vhs.export lives in export/, not vhs/export/
        rest = name[len(package) + 1 :]
        base = self.packages[package].joinpath(*rest.split(".")) if rest else self.packages[package]
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                return candidate
        return None

    def reach(self, roots: dict[str, Path]) -> dict[str, list[str]]:
        """Every project module reached from `roots` ({label: file}), with one import chain to it."""
        chains = {}
        queue = []
        for label, path in roots.items():
            name = self.module_name(path)
            chains[name or label] = [label]
            queue.append((name, path, [label]))
        while queue:
            name, path, chain = queue.pop()
            for imported, names in _imports(path, name):
                targets = [imported] + [f"{imported}.{n}" for n in names]
                parts = imported.split(".")
                targets += [".".join(parts[:i]) for i in range(1, len(parts))]
                for target in targets:
                    file = self.module_file(target)
                    if file is not None and target not in chains:
                        chains[target] = [*chain, target]
                        queue.append((target, file, chains[target]))
        return chains

    def module_name(self, path: Path) -> str | None:
        for package, folder in self.packages.items():
            if path.is_relative_to(folder):
                parts = [package, *path.relative_to(folder).with_suffix("").parts]
                return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        return None

    def heavy_imports(self, roots: dict[str, Path]) -> list[str]:
        """What the modules reached from `roots` should not import, each with its import chain."""
        problems = []
        for name, chain in sorted(self.reach(roots).items()):
            if within(name, OFF_LIMITS_MODULES):
                problems.append(" -> ".join(chain))
            path = self.module_file(name) or roots.get(name)
            for library in sorted(imported_packages(path) & HEAVY_LIBRARIES):
                if (name, library) not in ALLOWED_HEAVY_IMPORTS:
                    problems.append(" -> ".join([*chain, library]))
        return problems


def project_graph(root: Path = ROOT) -> ImportGraph:
    return ImportGraph({package: root / folder for package, folder in PROJECT_PACKAGES.items()})


def runtime_roots(root: Path = ROOT) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for pattern in RUNTIME_ROOTS for p in sorted(root.glob(pattern))}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_against_the_data_flow(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if within(m, FORBIDDEN[package])
        )
        for path in (ROOT / package).rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


@pytest.mark.parametrize(
    "source",
    [
        "def load():\n    from vhs.export.manifest import load_manifest\n",
        "from vhs import export\n",
        "import vhs.export.cli\n",
    ],
)
def test_the_checker_sees_every_way_of_importing(tmp_path, source):
    module = tmp_path / "lazy.py"
    module.write_text(source)
    assert any(within(name, FORBIDDEN["vhs"]) for name in imported_modules(module))


def test_the_in_server_runtime_imports_nothing_heavy():
    roots = runtime_roots()
    assert "model_repository/vhs/1/model.py" in roots and "vhs/runtime/orchestrator.py" in roots
    reached = project_graph().reach(roots)
    assert "vhs.best_of_n" in reached  # the walk follows the orchestrator into the library
    assert project_graph().heavy_imports(roots) == []


def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))


PLANTED_RUNTIME = {
    "vhs/__init__.py": "",
    "vhs/runtime/__init__.py": "",
    "vhs/runtime/orchestrator.py": "from ..helpers import tokenize\n",
    "vhs/helpers.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n",
    "vhs/presets/__init__.py": "import torch\n",
    "vhs/presets/folders.py": "",
    "model_repository/vhs/1/model.py": "from vhs.runtime.orchestrator import load\n",
}


def test_the_checker_passes_a_light_planted_runtime(tmp_path):
    _plant(tmp_path, PLANTED_RUNTIME)
    assert project_graph(tmp_path).heavy_imports(runtime_roots(tmp_path)) == []


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        (  # two hops away, inside a function
            {"vhs/helpers.py": "def tokenize():\n    from transformers import AutoTokenizer\n"},
            "vhs/runtime/orchestrator.py -> vhs.helpers -> transformers",
        ),
        (  # a light submodule of a package whose __init__ builds presets
            {"vhs/helpers.py": "from vhs.presets.folders import x\n"},
            "vhs/runtime/orchestrator.py -> vhs.helpers -> vhs.presets",
        ),
        (
            {
                "model_repository/engine/1/model.py": "import vhs.train.verifier\n",
                "vhs/train/verifier.py": "",
            },
            "model_repository/engine/1/model.py -> vhs.train",
        ),
    ],
)
def test_the_checker_finds_a_planted_heavy_import(tmp_path, planted, expected):
    _plant(tmp_path, {**PLANTED_RUNTIME, **planted})
    problems = project_graph(tmp_path).heavy_imports(runtime_roots(tmp_path))
    assert any(problem.startswith(expected) for problem in problems), problems


STUB_IMPORTS = """
import importlib.util, pathlib, sys, types
sys.modules["triton_python_backend_utils"] = types.ModuleType("triton_python_backend_utils")
for path in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).parent.parent.name, path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(" ".join(sorted({name.split(".")[0] for name in sys.modules} & {"torch", "diffusers", "transformers"})))
"""


def test_a_cpu_stub_loads_no_heavy_library():
    """What Python actually loads for the two model files of model_repository, as a stub would."""
    models = [str(path) for path in sorted(ROOT.glob("model_repository/*/1/model.py"))]
    loaded = subprocess.run(
        [sys.executable, "-c", STUB_IMPORTS, *models], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert loaded.stdout.strip() == ""
