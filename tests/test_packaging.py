"""The distribution: one wheel, the project's folders under the `vhs` namespace, an extra per user.

pyproject.toml lists the packages (setuptools cannot find the folders it maps under `vhs`), so a
package folder missing from the list would silently be left out of the wheel; the wheel holds the
mapped packages with their data; and an environment with only the `client` extra (no torch, no
ONNX Runtime) generates an image with `vhs-client` from a server the full environment runs.
"""

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vhs.launcher.server import TritonServer

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent


def setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_in_the_package_list():
    config = setuptools_config()
    folders = {package: ROOT / package.replace(".", "/") for package in config["packages"]}
    folders |= {package: ROOT / folder for package, folder in config["package-dir"].items()}
    assert all((folder / "__init__.py").is_file() for folder in folders.values()), folders
    listed = {folder.resolve() for folder in folders.values()}
    on_disk = {init.parent.resolve() for folder in set(listed) for init in folder.rglob("__init__.py")}
    assert on_disk - listed == set()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The project's wheel, built from this checkout as `pip wheel .` builds it."""
    folder = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*command, "-w", str(folder)], check=True, capture_output=True, timeout=300)
    (built,) = folder.glob("vhs_triton-*.whl")
    return built


def test_the_wheel_holds_the_mapped_packages_and_their_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "vhs/export/cli.py",
        "vhs/client/cli.py",
        "vhs/benchmarks/bench.py",
        "vhs/benchmarks/input_data/shapes_prompts.json",
        "vhs/model_repository/vhs/1/model.py",
        "vhs/model_repository/engine/1/model.py",
        "vhs/presets/shapes/preset.json",
        "vhs/presets/shapes/verifier/llm/model.safetensors",
    } <= names
    assert not any(name.split("/")[0] in {"export", "client", "benchmarks", "tests"} for name in names)


@pytest.mark.slow  # a fresh virtual environment installed from PyPI (~1 min)
@pytest.mark.server
def test_a_client_only_install_generates_an_image_without_torch(wheel, exported_tiny, tmp_path):
    venv = tmp_path / "client-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, f"{wheel}[client]"], check=True, capture_output=True, timeout=600)

    def run(*command):  # outside the checkout, so that nothing but the installed wheel is importable
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)

    for heavy in ("torch", "onnxruntime", "transformers"):
        assert f"No module named '{heavy}'" in run(venv / "bin" / "python", "-c", f"import {heavy}").stderr
    output = tmp_path / "out.png"
    with TritonServer(exported_tiny / "model_repository", build_dir=ROOT / "build" / "triton") as server:
        generated = run(
            venv / "bin" / "vhs-client", "generate", "a photo of a red circle", "-n", "2", "--seed", "0",
            "--url", server.grpc_url, "-o", str(output),
        )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    image = np.asarray(Image.open(output))
    assert image.shape == (32, 32, 3) and image.std() > 0
