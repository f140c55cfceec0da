"""Start and stop a real NVIDIA Triton Inference Server on a model repository.

Where the server comes from:
- an NGC Triton container: `tritonserver` on PATH and `/opt/tritonserver/backends` present;
- otherwise the `tritonserver` 2.51 bundled in the `nvidia-pytriton` wheel. Its binary, backends and
  caches are copied once into a build folder (default `build/triton/server/`), together with the
  Python-backend stub built for the running interpreter's X.Y, and it is started with the wheel's
  shared libraries on LD_LIBRARY_PATH and the venv's bin/ first on PATH (the stub's embedded
  interpreter finds the venv's site-packages through the `python3` it sees there).

docs/triton-on-cpu.md says why each flag and environment variable is there.

Locked down by default (docs/operations.md): the model-repository, shared-memory, logging and
trace APIs answer only requests carrying the `vhs-admin-key` header with the operator's key; the
repository's models are all loaded at start in explicit mode (so a failed model can be reloaded);
engine models serve only the orchestrator (vhs/serving/engine_guard.py).

    with TritonServer("build/tiny-random/model_repository") as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_url)
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .engine_guard import ENGINE_TOKEN_ENV

DEFAULT_BUILD_DIR = Path("build/triton")
SYSTEM_BACKENDS_DIR = Path("/opt/tritonserver/backends")
SYSTEM_CACHES_DIR = Path("/opt/tritonserver/caches")
PYTHON_SHM_DEFAULT_BYTES = 4 * 1024 * 1024
EXIT_TIMEOUT_S = 3
LOG_TAIL_LINES = 40
MAX_ERROR_LINES = 10
# Logged at every start on a machine without a GPU; says nothing about the failure being reported.
HARMLESS_ERROR_TEXT = "CudaDriverHelper has not been initialized"
MODEL_CONTROL_MODES = ("none", "explicit", "poll")
# APIs that need the operator's key: with them a client could load its own code as a model, read or
# write server memory, or flood the log. Inference, health, metadata and statistics stay open.
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")
ADMIN_KEY_HEADER = "vhs-admin-key"
ADMIN_KEY_ENV = "VHS_ADMIN_KEY"
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
# Triton 2.51 keeps up to this many gRPC request objects for reuse, each with the capacity of the
# largest request it ever held: with the default (8) every oversized request kept its size in the
# server's heap, up to 8 of them. 0 frees each request after its response (docs/operations.md).
GRPC_INFER_ALLOCATION_POOL_SIZE = 0


class TritonServerError(RuntimeError):
    """The server did not become ready, or exited; the message ends with the tail of its log."""


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
        raise TritonServerError("nvidia-pytriton is not installed: pip install nvidia-pytriton==0.7.0")
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
        raise TritonServerError(f"nvidia-pytriton has no Python-backend stub for Python {python_version}")
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


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports free on `host` right now (the OS picks them).

    The probe sockets stay open until all are picked, so the same port is never handed out twice.
    """
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _is_error_record(line: str) -> bool:
    """Triton's glog-style error records start with `E` and the date, e.g. `E1124 02:32:40.36 ...`."""
    return len(line) > 5 and line[0] == "E" and line[1:5].isdigit()


def _has_nvidia_gpu() -> bool:
    return Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir())


class TritonServer:
    """A tritonserver process serving `model_repository`; a context manager that starts and stops it.

    Ports given as 0 are picked free automatically. The server's stdout and stderr go to
    `log_path` (default `<build_dir>/logs/tritonserver-<grpc_port>.log`). `admin_key` unlocks the
    RESTRICTED_APIS (sent as the `vhs-admin-key` header); None makes a random one that only this
    object knows. In explicit model-control mode every model of the repository is loaded at start.
    """

    def __init__(
        self,
        model_repository: str | Path,
        *,
        build_dir: str | Path = DEFAULT_BUILD_DIR,
        host: str = "127.0.0.1",
        http_port: int = 0,
        grpc_port: int = 0,
        metrics_port: int = 0,
        log_verbose: int = 0,
        ready_timeout_s: float = 120.0,
        model_control_mode: str = "explicit",
        extra_args: Sequence[str] = (),
        log_path: str | Path | None = None,
        admin_key: str | None = None,
    ):
        if model_control_mode not in MODEL_CONTROL_MODES:
            raise ValueError(
                f"model_control_mode must be one of {MODEL_CONTROL_MODES}, got {model_control_mode!r}"
            )
        for name, port in (
            ("http_port", http_port),
            ("grpc_port", grpc_port),
            ("metrics_port", metrics_port),
        ):
            if not 0 <= port <= 65535:
                raise ValueError(f"{name} must be in [0, 65535] (0 = pick a free port), got {port}")
        if ready_timeout_s <= 0:
            raise ValueError(f"ready_timeout_s must be > 0, got {ready_timeout_s}")
        self.model_repository = Path(model_repository).resolve()
        self.build_dir = Path(build_dir).resolve()
        self.host = host
        picked = iter(free_ports([http_port, grpc_port, metrics_port].count(0), host))
        self.http_port = http_port or next(picked)
        self.grpc_port = grpc_port or next(picked)
        self.metrics_port = metrics_port or next(picked)
        self.log_verbose = log_verbose
        self.ready_timeout_s = ready_timeout_s
        self.model_control_mode = model_control_mode
        self.extra_args = tuple(extra_args)
        self.log_path = (
            Path(log_path) if log_path else self.build_dir / "logs" / f"tritonserver-{self.grpc_port}.log"
        )
        self.admin_key = admin_key or secrets.token_urlsafe(24)
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None

    @property
    def grpc_url(self) -> str:
        """`host:port` for tritonclient.grpc."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """`host:port` for tritonclient.http (and `http://` + this for raw requests)."""
        return f"{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        """Full URL of the Prometheus metrics endpoint."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def admin_headers(self) -> dict[str, str]:
        """HTTP headers that unlock the RESTRICTED_APIS."""
        return {ADMIN_KEY_HEADER: self.admin_key}

    @property
    def grpc_admin_headers(self) -> dict[str, str]:
        """gRPC metadata that unlocks the RESTRICTED_APIS (Triton prefixes the header name)."""
        return {GRPC_HEADER_PREFIX + ADMIN_KEY_HEADER: self.admin_key}

    def command(self, install: TritonInstall) -> list[str]:
        """The tritonserver command line for `install`."""
        args = [
            str(install.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={install.backend_dir}",
            f"--model-control-mode={self.model_control_mode}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--grpc-infer-allocation-pool-size={GRPC_INFER_ALLOCATION_POOL_SIZE}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--backend-config=python,shm-default-byte-size={PYTHON_SHM_DEFAULT_BYTES}",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            f"--log-verbose={self.log_verbose}",
            f"--http-restricted-api={','.join(RESTRICTED_APIS)}:{ADMIN_KEY_HEADER}={self.admin_key}",
            f"--grpc-restricted-protocol={','.join(RESTRICTED_APIS)}:{ADMIN_KEY_HEADER}={self.admin_key}",
        ]
        if self.model_control_mode == "explicit":
            args.append("--load-model=*")
        if install.cache_dir.is_dir():
            args.append(f"--cache-directory={install.cache_dir}")
        if not _has_nvidia_gpu():
            # Without a GPU these only produce warnings and a CUDA pinned-memory allocation attempt.
            args += ["--allow-gpu-metrics=false", "--pinned-memory-pool-byte-size=0"]
        return args + list(self.extra_args)

    def start(self) -> TritonServer:
        """Launch the server and block until /v2/health/ready answers 200.

        Raises TritonServerError with the log tail if it exits first or is not ready in time
        (the process is stopped before raising).
        """
        if self.process is not None:
            raise TritonServerError(f"server already started (pid {self.process.pid})")
        install = find_system_server() or prepare_bundled_server(self.build_dir)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # A fresh engine token per start: only this server's processes know it (engine_guard.py).
        env = {**install.env, ENGINE_TOKEN_ENV: secrets.token_urlsafe(24)}
        started = time.perf_counter()
        log_mode = "ab" if self.startup_s is not None else "wb"  # a restart keeps the earlier log
        with open(self.log_path, log_mode) as log_file:
            self.process = subprocess.Popen(
                self.command(install), stdout=log_file, stderr=subprocess.STDOUT, env=env
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - started
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            exit_code = self.process.poll()
            if exit_code is not None:
                raise TritonServerError(
                    f"tritonserver exited with code {exit_code} before it was ready\n{self.failure_report()}"
                )
            if self.is_ready():
                return
            time.sleep(0.1)
        raise TritonServerError(
            f"tritonserver was not ready after {self.ready_timeout_s} s (ready_timeout_s)\n"
            f"{self.failure_report()}"
        )

    def restart(self) -> None:
        """Stop the server (if it still runs) and start it again on the same ports."""
        self.stop()
        self.process = None
        self.start()

    def reload_model(self, name: str, timeout_s: float = 120.0) -> None:
        """Unload and load model `name` (explicit model-control mode): a fresh stub for every instance.

        Readiness is false between the two (strict readiness: a model is unavailable). A plain
        `load` of a model that is already loaded and unchanged is not enough: Triton 2.51 may keep
        the loaded version, dead stub and all.
        """
        import tritonclient.http  # the launcher itself needs no client library until now

        with tritonclient.http.InferenceServerClient(
            self.http_url, connection_timeout=timeout_s, network_timeout=timeout_s
        ) as client:
            client.unload_model(name, headers=self.admin_headers)
            client.load_model(name, headers=self.admin_headers)

    def is_ready(self) -> bool:
        """True when the server answers 200 on /v2/health/ready."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1.0) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def failure_report(self) -> str:
        """The error lines of the server log (`E....` records), then its tail, for exception messages."""
        if not self.log_path.is_file():
            return f"(no log written at {self.log_path})"
        lines = self.log_path.read_text(errors="replace").splitlines()
        errors = [line[:400] for line in lines if _is_error_record(line) and HARMLESS_ERROR_TEXT not in line]
        report = ["errors logged by tritonserver:\n" + "\n".join(errors[-MAX_ERROR_LINES:])] if errors else []
        report.append(
            f"last {LOG_TAIL_LINES} lines of {self.log_path}:\n" + "\n".join(lines[-LOG_TAIL_LINES:])
        )
        return "\n".join(report)

    def wait(self) -> int:
        """Block until the server process exits; return its exit code."""
        if self.process is None:
            raise TritonServerError("server was never started")
        return self.process.wait()

    def stop(self, timeout_s: float = EXIT_TIMEOUT_S + 10) -> None:
        """SIGTERM the server's own PID, wait up to `timeout_s`, then SIGKILL it as a last resort."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    """The `vhs-serve` command line (also read by the Helm chart's test: ports and probes match it)."""
    from .supervisor import DEFAULT_POLL_INTERVAL_S

    parser = argparse.ArgumentParser(prog="vhs-serve", description=main.__doc__)
    parser.add_argument("--model-repository", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind http, grpc and metrics to")
    parser.add_argument("--http-port", type=int, default=8000, help="0 = pick a free port")
    parser.add_argument("--grpc-port", type=int, default=8001, help="0 = pick a free port")
    parser.add_argument("--metrics-port", type=int, default=8002, help="0 = pick a free port")
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR)
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="seconds")
    parser.add_argument("--model-control-mode", choices=MODEL_CONTROL_MODES, default="explicit")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=DEFAULT_POLL_INTERVAL_S,
        help="seconds between health checks of the server and its models (0 = do not supervise)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`vhs-serve`: run tritonserver on a model repository, supervised, until Ctrl-C or SIGTERM."""
    from .supervisor import Supervisor

    args = build_parser().parse_args(argv)

    server = TritonServer(
        args.model_repository,
        build_dir=args.build_dir,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_verbose=args.log_verbose,
        ready_timeout_s=args.ready_timeout,
        model_control_mode=args.model_control_mode,
        admin_key=os.environ.get(ADMIN_KEY_ENV),
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SystemExit runs the `with` exit: clean stop
    try:
        with server:
            key_source = f"${ADMIN_KEY_ENV}" if os.environ.get(ADMIN_KEY_ENV) else "random, not shown"
            print(
                f"tritonserver ready in {server.startup_s:.1f} s (pid {server.pid})\n"
                f"  grpc    {server.grpc_url}\n  http    {server.http_url}\n  metrics {server.metrics_url}\n"
                f"  log     {server.log_path}\n  admin key ({ADMIN_KEY_HEADER} header): {key_source}",
                flush=True,
            )
            if args.poll_interval > 0:
                Supervisor(server, args.poll_interval).run(threading.Event())  # ends by SIGTERM/Ctrl-C
                return 0
            exit_code = server.wait()
    except TritonServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    print(f"tritonserver exited with code {exit_code}\n{server.failure_report()}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
