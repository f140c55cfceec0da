"""Where a runnable tritonserver comes from, and the environment it needs.

- an NGC Triton container: `tritonserver` on PATH and `/opt/tritonserver/backends` present;
- otherwise the `tritonserver` 2.51 bundled in the `nvidia-pytriton` wheel. Its binary, backends and
  caches are copied once into a build folder (default `build/triton/server/`), together with the
  Python-backend stub built for the running interpreter's X.Y, and it is started with the wheel's
  shared libraries on LD_LIBRARY_PATH and the venv's bin/ first on PATH (the stub's embedded
  interpreter finds the venv's site-packages through the `python3` it sees there).

docs/triton-on-cpu.md says why each environment variable is there.
"""

from __future__ import annotations

import filecmp
import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BUILD_DIR = Path("build/triton")
SYSTEM_BACKENDS_DIR = Path("/opt/tritonserver/backends")
SYSTEM_CACHES_DIR = Path("/opt/tritonserver/caches")


class TritonInstallError(RuntimeError):
    """No runnable tritonserver: nvidia-pytriton is missing, or has no stub for this Python."""


@dataclass(frozen=True)
class TritonInstall:
    """Where a runnable tritonserver lives and the environment it needs."""

    binary: Path
    backend_dir: Path
    cache_dir: Path
    env: dict[str, str]


def pytriton_paths() -> tuple[Path, Path]:
    """(`<site-packages>/pytriton/tritonserver`, `<site-packages>/nvidia_pytriton.libs`) of the wheel.

    Found without importing pytriton (its import pulls in much more than the server files).
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonInstallError("nvidia-pytriton is not installed: pip install nvidia-pytriton==0.7.0")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    return package_dir / "tritonserver", package_dir.parent / "nvidia_pytriton.libs"


def bundled_library_path() -> str:
    """LD_LIBRARY_PATH for binaries of the wheel: its libs, then the interpreter's libpython folder.

    Without the LIBDIR part the stub loads the distro's libpython beside another build's stdlib.
    """
    _, libs_dir = pytriton_paths()
    parts = [str(libs_dir), sysconfig.get_config_var("LIBDIR") or "", os.environ.get("LD_LIBRARY_PATH", "")]
    return os.pathsep.join(part for part in parts if part)


def find_system_server() -> TritonInstall | None:
    """The NGC container's tritonserver, or None when this is not such a container."""
    binary = shutil.which("tritonserver")
    if binary is None or not SYSTEM_BACKENDS_DIR.is_dir():
        return None
    return TritonInstall(Path(binary), SYSTEM_BACKENDS_DIR, SYSTEM_CACHES_DIR, dict(os.environ))


def prepare_bundled_server(build_dir: str | Path = DEFAULT_BUILD_DIR) -> TritonInstall:
    """Copy the wheel's tritonserver into `<build_dir>/server/` (once) and return how to run it.

    Layout: `server/bin/tritonserver`, `server/backends/python/` (libtriton_python.so, the utils
    module and `triton_python_backend_stub` for this interpreter's X.Y), `server/caches/`.
    Safe to call from several processes at once: the tree is copied to a private folder and renamed
    into place, and the stub is replaced atomically when it is missing or from another Python.
    """
    source_dir, _ = pytriton_paths()
    server_dir = Path(build_dir).resolve() / "server"
    if not (server_dir / "bin" / "tritonserver").is_file():
        _copy_server_tree(source_dir, server_dir)
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub_source = source_dir / "python_backend_stubs" / python_version / "triton_python_backend_stub"
    if not stub_source.is_file():
        raise TritonInstallError(f"nvidia-pytriton has no Python-backend stub for Python {python_version}")
    stub = server_dir / "backends" / "python" / "triton_python_backend_stub"
    if not stub.is_file() or not filecmp.cmp(stub_source, stub, shallow=False):
        staged = stub.with_name(f"{stub.name}.{os.getpid()}")
        shutil.copy2(stub_source, staged)
        os.replace(staged, stub)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = bundled_library_path()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return TritonInstall(
        server_dir / "bin" / "tritonserver", server_dir / "backends", server_dir / "caches", env
    )


def _copy_server_tree(source_dir: Path, server_dir: Path) -> None:
    staging_dir = server_dir.with_name(f"{server_dir.name}.staging-{os.getpid()}")
    shutil.rmtree(staging_dir, ignore_errors=True)
    for part in ("bin", "backends", "caches"):
        shutil.copytree(source_dir / part, staging_dir / part, ignore=shutil.ignore_patterns("__pycache__"))
    try:
        staging_dir.rename(server_dir)
    except OSError:  # another process finished the same copy first
        if not (server_dir / "bin" / "tritonserver").is_file():
            raise
        shutil.rmtree(staging_dir, ignore_errors=True)
