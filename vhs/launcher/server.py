"""Start and stop a real NVIDIA Triton Inference Server on a model repository.

The binary comes from `install.py` (the NGC container's, or the one bundled in nvidia-pytriton);
docs/triton-on-cpu.md says why each flag is there.

Locked down by default (docs/operations.md): the model-repository, shared-memory, logging and
trace APIs answer only requests carrying the `vhs-admin-key` header with the operator's key; the
repository's models are all loaded at start in explicit mode (so a failed model can be reloaded);
engine models serve only the orchestrator (vhs/runtime/engine_guard.py).

    with TritonServer("build/tiny-random/model_repository") as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_url)
"""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from vhs import protocol as P
from vhs.runtime.engine_guard import ENGINE_TOKEN_ENV

from .install import DEFAULT_BUILD_DIR, TritonInstall, find_system_server, prepare_bundled_server

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
            # The engines first; the orchestrator once the server is ready (`start`), so that its
            # warm-up can call them (Triton refuses every inference, BLS too, until it is ready).
            later = self.models_loaded_after_start()
            others = sorted(
                folder.name
                for folder in self.model_repository.iterdir()
                if (folder / "config.pbtxt").is_file() and folder.name not in later
            )
            args += [f"--load-model={name}" for name in others] if later else ["--load-model=*"]
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
            for name in self.models_loaded_after_start():
                self._load_model(name)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - started
        return self

    def models_loaded_after_start(self) -> list[str]:
        """The models loaded once the server is ready, in explicit mode: the `vhs` orchestrator, whose
        warm-up calibrates its latency model through the engines (vhs/runtime/orchestrator.py)."""
        if self.model_control_mode != "explicit":
            return []
        return (
            [P.ORCHESTRATOR_MODEL]
            if (self.model_repository / P.ORCHESTRATOR_MODEL / "config.pbtxt").is_file()
            else []
        )

    def _load_model(self, name: str) -> None:
        """Load model `name` through the repository API (blocks until it is loaded and warmed up);
        raises TritonServerError with Triton's reason and the log when it fails."""
        request = urllib.request.Request(
            f"http://{self.http_url}/v2/repository/models/{name}/load",
            data=b"{}",
            headers={**self.admin_headers, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.ready_timeout_s):
                return
        except urllib.error.HTTPError as error:
            reason = error.read().decode(errors="replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            reason = str(error)
        raise TritonServerError(f"model '{name}' did not load: {reason}\n{self.failure_report()}")

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
