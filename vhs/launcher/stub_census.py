"""Does every model of a running tritonserver still have its Python-backend stubs? The census the
supervisor (and the load benchmarks) rely on, since Triton 2.51 itself does not notice a dead stub.

Each instance of a Python-backend model is its own stub process, a child of tritonserver whose
command line names the model's file (`<repository>/<model>/<version>/model.py`). A stub killed or
crashed turns into a zombie (no command line) and the model keeps reporting ready, so the census
counts live stubs per model and compares them with the count seen when the server became ready.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

PROC = Path("/proc")
STUB_BINARY = "triton_python_backend_stub"


def _stat_fields(stat: str) -> list[str]:
    """The fields of a /proc/<pid>/stat line after the command name (field 3, the state, first); the
    name is in parentheses and may itself hold spaces or parentheses."""
    return stat.rsplit(")", 1)[1].split()


def children(parent_pid: int) -> list[tuple[int, str, list[str]]]:
    """(pid, state letter, command-line arguments) of every child process of `parent_pid`."""
    found = []
    for process in PROC.glob("[0-9]*"):
        try:
            stat = (process / "stat").read_text()
            arguments = (process / "cmdline").read_bytes().split(b"\0")
        except OSError:  # the process ended while we looked
            continue
        state, parent = _stat_fields(stat)[:2]
        if int(parent) == parent_pid:
            found.append((int(process.name), state, [a.decode(errors="replace") for a in arguments if a]))
    return found


def started_at(pid: int) -> int:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat field 22); 0 if it is gone."""
    try:
        return int(_stat_fields((PROC / str(pid) / "stat").read_text())[19])
    except (OSError, IndexError, ValueError):
        return 0


def stub_models(server_pid: int, repository: Path) -> dict[int, str]:
    """{pid: model name} of the live (not zombie) Python-backend stubs of the server."""
    prefix = str(Path(repository).resolve()) + "/"
    return {
        pid: arguments[1][len(prefix) :].split("/", 1)[0]
        for pid, state, arguments in children(server_pid)
        if state != "Z"
        and len(arguments) > 1
        and arguments[0].endswith(STUB_BINARY)
        and arguments[1].startswith(prefix)
    }


def live_stubs(server_pid: int, repository: Path) -> Counter[str]:
    """Number of live (not zombie) Python-backend stubs per model name."""
    return Counter(stub_models(server_pid, repository).values())


def dead_models(expected: Counter[str], live: Counter[str]) -> list[str]:
    """Models with fewer live stubs than `expected` (the census taken when the server was ready)."""
    return sorted(model for model, count in expected.items() if live[model] < count)
