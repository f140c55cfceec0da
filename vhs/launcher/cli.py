"""`vhs-serve`: run tritonserver on a model repository, supervised, until Ctrl-C or SIGTERM.

    vhs-serve --model-repository build/shapes/model_repository      # gRPC 8001, HTTP 8000, metrics 8002

The admin APIs answer the key in $VHS_ADMIN_KEY (docs/operations.md); without it the key is random
and not shown. A Kubernetes deployment runs this as the container's command (deploy/helm).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .install import DEFAULT_BUILD_DIR, TritonInstallError
from .server import ADMIN_KEY_ENV, ADMIN_KEY_HEADER, MODEL_CONTROL_MODES, TritonServer, TritonServerError
from .supervisor import DEFAULT_POLL_INTERVAL_S, Supervisor


def build_parser() -> argparse.ArgumentParser:
    """The `vhs-serve` command line (also read by the Helm chart's test: ports and probes match it)."""
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
        "--cuda-memory-pool-byte-size",
        type=int,
        default=None,
        help="bytes of GPU 0's CUDA memory pool (Triton's own default is 64 MiB): the engines' device "
        "outputs handed between models live there (docs/gpu-deployment.md sizes it)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=DEFAULT_POLL_INTERVAL_S,
        help="seconds between health checks of the server and its models (0 = do not supervise)",
    )
    return parser


def cuda_memory_pool_args(pool_bytes: int | None) -> list[str]:
    """tritonserver's flag for GPU 0's CUDA memory pool; none when not asked for."""
    if pool_bytes is None:
        return []
    if pool_bytes < 0:
        raise SystemExit(f"vhs-serve: --cuda-memory-pool-byte-size must be >= 0, got {pool_bytes}")
    return [f"--cuda-memory-pool-byte-size=0:{pool_bytes}"]


def main(argv: Sequence[str] | None = None) -> int:
    """`vhs-serve`: run tritonserver on a model repository, supervised, until Ctrl-C or SIGTERM."""
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
        extra_args=cuda_memory_pool_args(args.cuda_memory_pool_byte_size),
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
    except (TritonInstallError, TritonServerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    print(f"tritonserver exited with code {exit_code}\n{server.failure_report()}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
