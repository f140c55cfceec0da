"""Keep a tritonserver serving without a human: the supervisor loop run by `vhs-serve`.

Every `poll_interval_s` it checks that the server process runs and that every model still has the
live Python-backend stubs it had when the server became ready (vhs/launcher/stub_census.py). A model that
lost a stub is unloaded and loaded again (explicit model-control mode; readiness is false in
between, also for the `vhs` model while its other instance still lives: a reload in place is not
reliable in Triton 2.51). A server that exited, or a dead stub under another mode, gets the whole
server restarted on the same ports. Clients see UNAVAILABLE meanwhile and retry (client/retry.py).

After a reload, the old version's stubs should exit with its unload. When the `vhs` model's stub is
killed while it has requests in flight, Triton 2.51 never finishes that unload: the old version's
other stub stays alive (with all its memory) and the killed one a zombie. The supervisor stops such a
leftover stub once `stale_grace_s` has passed since the reload (time for the old version's queued
requests to finish); the zombies stay until tritonserver exits, since only their parent can reap
them (docs/operations.md).

A Kubernetes deployment runs `vhs-serve` as the container's command, so this loop is the in-pod
recovery, with probes on the server's own endpoints as the outer one (docs/operations.md).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .server import TritonServer
from .stub_census import dead_models, live_stubs, started_at, stub_models

DEFAULT_POLL_INTERVAL_S = 0.5
# Longer than a request of the old version can still take after the reload: 5 s in the vhs queue
# (its queue timeout) and the run itself.
DEFAULT_STALE_GRACE_S = 30.0


@dataclass(frozen=True)
class Recovery:
    """One recovery: what failed (a model name, or "server"), when it was seen and when it served again."""

    failed: str
    detected_at: float  # time.monotonic()
    recovered_at: float

    @property
    def seconds(self) -> float:
        return self.recovered_at - self.detected_at


def _log_to_stderr(message: str) -> None:
    print(f"vhs-serve: {message}", file=sys.stderr, flush=True)


class Supervisor:
    """Watches a started TritonServer and recovers it; `check()` once, or `run(stop)` until stop is set."""

    def __init__(
        self,
        server: TritonServer,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        log: Callable[[str], None] = _log_to_stderr,
        stale_grace_s: float = DEFAULT_STALE_GRACE_S,
    ):
        self.server = server
        self.poll_interval_s = poll_interval_s
        self.log = log
        self.stale_grace_s = stale_grace_s
        self.recoveries: list[Recovery] = []
        self.expected_stubs = live_stubs(server.pid, server.model_repository)
        self.stale_stubs: dict[int, tuple[str, float]] = {}  # pid -> (model, time.monotonic() to stop it)
        self.stopped_stale_stubs: list[int] = []
        # model -> (the pids its last reload started, when that reload's stale stubs may be stopped)
        self.reloaded: dict[str, tuple[set[int], float]] = {}

    def check(self) -> list[Recovery]:
        """Recover whatever has failed since the last check; returns the recoveries made now."""
        detected_at = time.monotonic()
        if self.server.process.poll() is not None:
            self.log(f"tritonserver exited with code {self.server.process.returncode}; restarting it")
            self._restart()
            failed = ["server"]
        else:
            live = live_stubs(self.server.pid, self.server.model_repository)
            failed = dead_models(self.expected_stubs, live)
            for model in failed:
                self.log(f"model '{model}' lost a Python-backend stub; reloading it")
            if failed and self.server.model_control_mode == "explicit":
                for model in failed:
                    self._reload(model)
            elif failed:
                self._restart()
            self._stop_stale_stubs()
        recoveries = [Recovery(name, detected_at, time.monotonic()) for name in failed]
        for recovery in recoveries:
            self.log(f"{recovery.failed} serving again after {recovery.seconds:.1f} s")
        self.recoveries += recoveries
        return recoveries

    def _reload(self, model: str) -> None:
        """Reload `model`; those of its stubs from before that outlive the reload are stopped later."""
        old = {pid for pid, name in self._stubs().items() if name == model}
        self.server.reload_model(model)
        stop_at = time.monotonic() + self.stale_grace_s
        now = self._stubs()
        self.stale_stubs.update({pid: (model, stop_at) for pid in old & set(now)})
        self.reloaded[model] = ({pid for pid, name in now.items() if name == model} - old, stop_at)

    def has_leftovers(self) -> bool:
        """Whether stubs of an unloaded version wait to be stopped or a model has more live stubs
        than its census."""
        live = live_stubs(self.server.pid, self.server.model_repository)
        return bool(self.stale_stubs) or any(live[m] > n for m, n in self.expected_stubs.items())

    def _stop_stale_stubs(self) -> None:
        live = self._stubs()
        for model, (started, stop_at) in self.reloaded.items():
            stubs = {pid for pid, name in live.items() if name == model}
            surplus = len(stubs) - self.expected_stubs[model] - len(stubs & set(self.stale_stubs))
            if surplus > 0:
                # More stubs than the census: Triton 2.51 can respawn a killed stub of the old version
                # around the reload (seen under load). Leftovers: first those the reload did not start,
                # then the earliest started (the new version's instances start last).
                unmarked = sorted(
                    stubs - set(self.stale_stubs), key=lambda pid: (pid in started, started_at(pid))
                )
                for pid in unmarked[:surplus]:
                    self.stale_stubs[pid] = (model, stop_at)
        for pid, (model, stop_at) in list(self.stale_stubs.items()):
            if live.get(pid) != model:  # the old version's unload finished after all
                del self.stale_stubs[pid]
            elif time.monotonic() >= stop_at:
                self.log(
                    f"stub {pid} of model '{model}' outlived its reload (unload never finished); stopping it"
                )
                os.kill(pid, signal.SIGKILL)
                del self.stale_stubs[pid]
                self.stopped_stale_stubs.append(pid)

    def _stubs(self) -> dict[int, str]:
        return stub_models(self.server.pid, self.server.model_repository)

    def _restart(self) -> None:
        self.server.restart()
        self.stale_stubs.clear()
        self.reloaded.clear()
        self.expected_stubs = live_stubs(self.server.pid, self.server.model_repository)

    def run(self, stop: threading.Event) -> None:
        """Check every poll_interval_s until `stop` is set (from another thread or a signal handler)."""
        while not stop.wait(self.poll_interval_s):
            self.check()
