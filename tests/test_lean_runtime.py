"""The in-server runtime is lean: tiny-random served by Triton whose Python-backend stubs run in a
virtual environment holding only the runtime's requirements (numpy, tokenizers, onnxruntime: the
serving image's deploy/requirements-serving.txt without torch, the GPU path's DLPack glue), built here
with pip from PyPI. Every mode answers as the reference pipeline does, and the environment has no
torch, transformers or diffusers to fall back on."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest

import vhs.launcher.server as server_module
from vhs.client.vhs_client import VHSClient
from vhs.launcher.install import prepare_bundled_server
from vhs.launcher.server import TritonServer

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
INDEX_URL = os.environ.get("VHS_IMAGE_INDEX_URL", "https://pypi.org/simple")
GPU_ONLY = {"torch"}  # in the serving image for the device path only
PROMPT = "a photo of a red circle left of a blue square"


def runtime_requirements() -> list[str]:
    lines = (ROOT / "deploy" / "requirements-serving.txt").read_text().splitlines()
    pins = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return [pin for pin in pins if re.split(r"[=<>\[]", pin)[0] not in GPU_ONLY]


@pytest.fixture(scope="module")
def lean_env(tmp_path_factory):
    """A virtual environment with the runtime's requirements only, and the project on its path."""
    folder = tmp_path_factory.mktemp("lean") / "venv"
    venv.EnvBuilder(with_pip=True).create(folder)
    python = folder / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--isolated", "--index-url", INDEX_URL, "--quiet"]
    subprocess.run([*install, *runtime_requirements()], check=True, timeout=900)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "vhs-source.pth").write_text(str(ROOT) + "\n")  # `import vhs`: the source tree
    return folder


def test_the_lean_environment_has_no_heavy_library(lean_env):
    python = str(lean_env / "bin" / "python")
    for module in ("torch", "transformers", "diffusers", "onnx", "tritonclient"):
        found = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
        assert found.returncode != 0, f"{module} imports in the runtime's environment"
    imports = "import vhs.runtime.orchestrator, vhs.runtime.onnx_engine, vhs.runtime.dlpack, tokenizers"
    subprocess.run([python, "-c", imports], check=True)


@pytest.fixture(scope="module")
def lean_server(lean_env, exported_tiny):
    """tritonserver whose stubs see the lean environment's python3 (and so its site-packages only)."""
    assert Path(sys.executable).parent != lean_env / "bin"
    install = prepare_bundled_server("build/triton")
    lean = dataclasses.replace(
        install, env={**install.env, "PATH": f"{lean_env / 'bin'}{os.pathsep}{install.env['PATH']}"}
    )
    assert sysconfig.get_config_var("LIBDIR") in lean.env["LD_LIBRARY_PATH"]
    original = server_module.prepare_bundled_server
    server_module.prepare_bundled_server = lambda build_dir: lean
    try:
        with TritonServer(exported_tiny / "model_repository", build_dir="build/triton") as server:
            yield server
    finally:
        server_module.prepare_bundled_server = original


@pytest.mark.parametrize("mode", ["vhs", "clip", "latent", "none"])
def test_every_mode_served_from_the_lean_runtime_equals_the_reference(lean_server, tiny_pipeline, mode):
    reference = tiny_pipeline(PROMPT, 4, 3, mode)
    with VHSClient(lean_server.grpc_url) as client:
        served = client.generate(PROMPT, 4, 3, mode)
    assert served.selected == reference.selected
    # PyPI's onnxruntime build against the project venv's: float rounding apart, the same numbers.
    np.testing.assert_allclose(served.scores, reference.scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(served.image.astype(int), reference.image.astype(int), atol=1)


def test_the_stubs_ran_the_lean_interpreter(lean_server, lean_env):
    """This server's stubs (its child processes) map the lean environment's onnxruntime, not the
    project venv's."""
    maps = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                if b"triton_python_backend_stub" in cmdline and parent == lean_server.pid:
                    maps.append(Path(f"/proc/{pid}/maps").read_text())
            except OSError:
                continue
    assert maps, "no Python-backend stub is running"
    libraries = {line.split()[-1] for text in maps for line in text.splitlines() if ".so" in line}
    onnxruntime_paths = {path for path in libraries if "onnxruntime" in path and path.endswith(".so")}
    assert onnxruntime_paths and all(str(lean_env) in path for path in onnxruntime_paths)
