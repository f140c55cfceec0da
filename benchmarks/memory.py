"""Memory of each engine model of a running server: its Python-backend stubs' resident and peak
resident memory (each instance is its own process), and device memory where a GPU is present.

On the CPU server every model is a stub process (vhs/launcher/stub_census.py names them), so a model's
memory is its stubs' RSS, and the peak is the kernel's high-water mark `VmHWM`, which covers
every batch the engine has run since it started. With a GPU, `nvidia-smi` reports the device
memory of each process; models of an in-process backend (onnxruntime, tensorrt on an NGC
container) share tritonserver's process and are counted under `tritonserver`.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

from vhs.launcher.stub_census import stub_models

SERVER_PROCESS = "tritonserver"
KIB = 1024
MIB = 1 << 20


def process_memory_mib(pid: int) -> dict[str, float]:
    """{"rss_mib": resident now, "peak_rss_mib": resident high-water mark} of one process (empty if gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    kib = {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM") if key in fields}
    return {"rss_mib": kib.get("VmRSS", 0) * KIB / MIB, "peak_rss_mib": kib.get("VmHWM", 0) * KIB / MIB}


def device_memory_mib() -> dict[int, float]:
    """{pid: device memory in MiB} of every process on the GPUs; empty without `nvidia-smi`."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return {}
    completed = subprocess.run(
        [binary, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
    )
    used: dict[int, float] = defaultdict(float)
    for line in completed.stdout.splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and mib.strip().replace(".", "", 1).isdigit():
            used[int(pid)] += float(mib)
    return dict(used)


def model_memory_mib(server_pid: int, repository: Path) -> dict[str, dict[str, float]]:
    """{model: {"stubs", "rss_mib", "peak_rss_mib"[, "device_mib"]}} summed over each model's stubs,
    plus `tritonserver` itself; `device_mib` only where a GPU reports the process."""
    owners = {server_pid: SERVER_PROCESS} | stub_models(server_pid, repository)
    device = device_memory_mib()
    memory: dict[str, dict[str, float]] = {}
    for pid, model in owners.items():
        figures = memory.setdefault(model, {"stubs": 0.0, "rss_mib": 0.0, "peak_rss_mib": 0.0})
        for key, value in process_memory_mib(pid).items():
            figures[key] += value
        if model != SERVER_PROCESS:
            figures["stubs"] += 1
        if pid in device:
            figures["device_mib"] = figures.get("device_mib", 0.0) + device[pid]
    return memory
