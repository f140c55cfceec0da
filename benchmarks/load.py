"""Load and fault figures of the served path (`make bench-load`), against the real server on loopback.

Scenarios, each a function returning its figures (the tests run them in a short form):
    steady_load      C clients for T seconds: served, failed, p50/p99 round trip
    kill_engine      SIGKILL an engine's stub while clients run: what clients saw, readiness, time
                     until requests succeed again (recovered by the supervisor, no human)
    overload_burst   many requests at once: fast UNAVAILABLE rejections, then the server serves again
    abandoned        requests whose client gives up early: how many the server still ran to the end,
                     and the server's CPU seconds while and after they were abandoned
    bad_inputs       hostile prompts and values: every one gets INVALID_ARG naming the field
    oversized        prompts of many MiB over gRPC and HTTP: refused, and what they cost in memory
    memory           server memory (PSS of server + stubs) through the steady load and before and
                     after all of the above
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc
import tritonclient.http
from tritonclient.utils import InferenceServerException

from vhs import protocol as P
from vhs.client.retry import NO_RETRY
from vhs.client.vhs_client import AsyncVHSClient, VHSClient, VHSRequestError
from vhs.export.repository import ORCHESTRATOR_MAX_QUEUE
from vhs.launcher.server import TritonServer
from vhs.launcher.stub_census import children, live_stubs, stub_models
from vhs.launcher.supervisor import Supervisor

PROMPT = "a photo of a red circle left of a blue square"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class LoadFigures:
    served: int
    failed: Counter = field(default_factory=Counter)  # status -> count
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 50)) if self.latencies_ms else float("nan")

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99)) if self.latencies_ms else float("nan")


def steady_load(
    url: str, seconds: float, concurrency: int, num_candidates: int = 4, mode: str = "vhs"
) -> LoadFigures:
    """`concurrency` threads send requests back to back for `seconds` (no retries); every answer counted."""
    figures = LoadFigures(served=0)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(seed: int) -> None:
        with VHSClient(url, retry=NO_RETRY) as client:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    client.generate(PROMPT, num_candidates, seed, mode)
                except VHSRequestError as error:
                    with lock:
                        figures.failed[error.status] += 1
                    continue
                with lock:
                    figures.served += 1
                    figures.latencies_ms.append((time.perf_counter() - started) * 1e3)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return figures


@dataclass
class KillFigures:
    engine: str
    client_errors: Counter  # first line of each error a client saw, counted
    readiness_went_false: bool
    seconds_to_serve_again: float  # from the kill to the end of the last request that failed
    supervisor_seconds: float  # the supervisor's own detection -> reloaded time
    requests_during: LoadFigures  # of the clients without retries
    retrying_client: LoadFigures  # one more client with the default RetryPolicy


def kill_engine(
    server: TritonServer,
    supervisor: Supervisor,
    engine: str = "dit_suffix",
    concurrency: int = 2,
    timeout_s: float = 60.0,
) -> KillFigures:
    """SIGKILL one stub of `engine` while `concurrency` clients without retries, and one with the
    default retries, send requests."""
    victim = stub_pid(server, engine)
    done = threading.Event()
    figures = LoadFigures(served=0)
    retrying = LoadFigures(served=0)
    errors: Counter = Counter()
    last_failure_at = [0.0]
    killed_at: list[float] = []

    def worker(seed: int) -> None:
        with VHSClient(server.grpc_url, retry=NO_RETRY) as client:
            while not done.is_set():
                try:
                    client.generate(PROMPT, 2, seed, "vhs")
                except VHSRequestError as error:
                    errors[f"[{error.status}] {error.message.splitlines()[0][:120]}"] += 1
                    figures.failed[error.status] += 1
                    last_failure_at[0] = time.monotonic()
                    time.sleep(0.05)
                    continue
                figures.served += 1

    def retrying_worker() -> None:
        with VHSClient(server.grpc_url) as client:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    client.generate(PROMPT, 2, concurrency, "vhs")
                except VHSRequestError as error:
                    retrying.failed[error.status] += 1
                    continue
                retrying.served += 1
                retrying.latencies_ms.append((time.perf_counter() - started) * 1e3)

    watcher = threading.Thread(target=supervisor.run, args=(done,))
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(concurrency)]
    threads.append(threading.Thread(target=retrying_worker))
    for thread in [watcher, *threads]:
        thread.start()
    time.sleep(0.5)
    recoveries_before = len(supervisor.recoveries)
    killed_at.append(time.monotonic())
    os.kill(victim, signal.SIGKILL)
    readiness_went_false = False
    deadline = killed_at[0] + timeout_s
    # Done once the supervisor has recovered the model and a second of requests has passed cleanly.
    while time.monotonic() < deadline and not (
        len(supervisor.recoveries) > recoveries_before and time.monotonic() - last_failure_at[0] > 1.0
    ):
        readiness_went_false |= not server.is_ready()
        time.sleep(0.02)
    done.set()
    for thread in [*threads, watcher]:
        thread.join()
    recoveries = supervisor.recoveries[recoveries_before:]
    return KillFigures(
        engine,
        errors,
        readiness_went_false,
        max(last_failure_at[0] - killed_at[0], 0.0),
        recoveries[0].seconds if recoveries else float("nan"),
        figures,
        retrying,
    )


def stop_leftovers(supervisor: Supervisor, timeout_s: float) -> None:
    """Run the supervisor's checks until no stub of an unloaded version waits to be stopped and no
    model has more live stubs than the census."""
    deadline = time.monotonic() + timeout_s
    while supervisor.has_leftovers() and time.monotonic() < deadline:
        time.sleep(supervisor.poll_interval_s)
        supervisor.check()


def zombie_stubs(server: TritonServer) -> list[int]:
    """Pids of the server's exited children that it has not reaped."""
    return [pid for pid, state, _ in children(server.pid) if state == "Z"]


def stub_pid(server: TritonServer, model: str) -> int:
    """The pid of one live stub of `model`."""
    for pid, name in stub_models(server.pid, server.model_repository).items():
        if name == model:
            return pid
    raise LookupError(f"no live stub of model '{model}' under tritonserver {server.pid}")


@dataclass
class BurstFigures:
    requests: int
    served: int
    rejected: int  # UNAVAILABLE
    other_errors: Counter
    rejected_p99_ms: float  # how fast a rejection comes back
    served_after: bool  # a request right after the burst succeeded


def overload_burst(url: str, requests: int, num_candidates: int = 8, mode: str = "clip") -> BurstFigures:
    """`requests` sent at once on one asyncio channel, no retries."""

    async def burst() -> list[tuple[float, VHSRequestError | None]]:
        async with AsyncVHSClient(url, retry=NO_RETRY) as client:

            async def one(seed: int) -> tuple[float, VHSRequestError | None]:
                started = time.perf_counter()
                try:
                    await client.generate(PROMPT, num_candidates, seed, mode)
                    return (time.perf_counter() - started) * 1e3, None
                except VHSRequestError as error:
                    return (time.perf_counter() - started) * 1e3, error

            return await asyncio.gather(*(one(seed) for seed in range(requests)))

    outcomes = asyncio.run(burst())
    rejected_ms = [ms for ms, error in outcomes if error is not None and "UNAVAILABLE" in str(error.status)]
    others = Counter(
        str(error.status)
        for _, error in outcomes
        if error is not None and "UNAVAILABLE" not in str(error.status)
    )
    with VHSClient(url, retry=NO_RETRY) as client:
        served_after = client.generate(PROMPT, 1, 0).image is not None
    return BurstFigures(
        requests,
        sum(error is None for _, error in outcomes),
        len(rejected_ms),
        others,
        float(np.percentile(rejected_ms, 99)) if rejected_ms else float("nan"),
        served_after,
    )


@dataclass
class AbandonFigures:
    requests: int
    statuses: Counter  # what the clients got: "OK", or the error status
    completed_on_server: int  # the vhs model's successful requests during the scenario
    engine_candidates: int  # dit_prefix inferences run for them (what a full run would need: N each)
    cpu_s_after_abandon: float  # server + stubs CPU seconds in `settle_s` after the clients gave up
    settle_s: float


def abandoned(
    server: TritonServer,
    requests: int,
    client_timeout_s: float,
    num_candidates: int = 8,
    settle_s: float = 2.0,
) -> AbandonFigures:
    """`requests` clip-mode requests at once, each given up by its client after `client_timeout_s`."""
    before = _model_counts(server)

    async def send_all() -> list[VHSRequestError | None]:
        async with AsyncVHSClient(server.grpc_url, timeout_s=client_timeout_s, retry=NO_RETRY) as client:

            async def one(seed: int) -> VHSRequestError | None:
                try:
                    await client.generate(PROMPT, num_candidates, seed, "clip")
                except VHSRequestError as error:
                    return error
                return None

            return await asyncio.gather(*(one(seed) for seed in range(requests)))

    errors = asyncio.run(send_all())
    cpu_at_abandon = server_cpu_seconds(server.pid)
    time.sleep(settle_s)
    cpu_after = server_cpu_seconds(server.pid)
    after = _model_counts(server)
    return AbandonFigures(
        requests,
        Counter("OK" if error is None else str(error.status) for error in errors),
        after["vhs"][0] - before["vhs"][0],
        after["dit_prefix"][1] - before["dit_prefix"][1],
        cpu_after - cpu_at_abandon,
        settle_s,
    )


def _model_counts(server: TritonServer) -> dict[str, tuple[int, int]]:
    """{model: (successful requests, inferences)} from Triton's statistics API."""
    with tritonclient.grpc.InferenceServerClient(server.grpc_url) as triton:
        stats = triton.get_inference_statistics(as_json=True)["model_stats"]
    return {
        item["name"]: (
            int(item.get("inference_stats", {}).get("success", {}).get("count", 0)),
            int(item.get("inference_count", 0)),
        )
        for item in stats
    }


def _server_processes(server_pid: int) -> list[Path]:
    return [Path(f"/proc/{server_pid}")] + [Path(f"/proc/{pid}") for pid, _, _ in children(server_pid)]


def server_cpu_seconds(server_pid: int) -> float:
    """User + system CPU seconds of tritonserver and its live stubs."""
    ticks = 0
    for process in _server_processes(server_pid):
        try:
            fields = (process / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return ticks / CLOCK_TICKS


def server_memory_bytes(server_pid: int) -> int:
    """Proportional set size (PSS) of tritonserver and its live stubs, in bytes: a page shared by k of
    them (the Python backend's shared memory, mapped by the server and one stub) counts once in all."""
    total = 0
    for process in _server_processes(server_pid):
        try:
            rollup = (process / "smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        total += next(int(line.split()[1]) * 1024 for line in rollup if line.startswith("Pss:"))
    return total


def sample_memory(server_pid: int, every_s: float, stop: threading.Event) -> list[int]:
    """server_memory_bytes now and every `every_s` until `stop` is set (run it in a thread)."""
    samples = [server_memory_bytes(server_pid)]
    while not stop.wait(every_s):
        samples.append(server_memory_bytes(server_pid))
    return samples


@dataclass
class OversizeFigures:
    protocol: str
    megabytes: int
    answers: Counter  # "status message" (first line, shortened) -> count
    memory_before: int  # server_memory_bytes
    memory_after: int


def oversized_prompts(server: TritonServer, protocol: str, megabytes: int, repeats: int) -> OversizeFigures:
    """`repeats` requests, one after another, whose PROMPT is `megabytes` MiB of text, over "grpc" (the
    project's client) or "http" (tritonclient, binary tensor data), and the server's memory before and
    after. Triton 2.51 bounds neither protocol's request size: the prompt reaches the orchestrator, which
    refuses it, after Triton has copied it into the Python backend's shared memory."""
    prompt = "x" * (megabytes * 2**20)
    answers: Counter = Counter()
    memory_before = server_memory_bytes(server.pid)
    for _ in range(repeats):
        status, message = _send_prompt(server, protocol, prompt)
        answers[f"{status} {message.splitlines()[0][:100]}"] += 1
    time.sleep(0.5)  # the server frees the request after the response has gone out
    return OversizeFigures(protocol, megabytes, answers, memory_before, server_memory_bytes(server.pid))


def _send_prompt(server: TritonServer, protocol: str, prompt: str) -> tuple[str, str]:
    """(status, message) of one request with `prompt` and nothing else; ("OK", "served") if served."""
    if protocol == "grpc":
        with VHSClient(server.grpc_url, retry=NO_RETRY) as client:
            try:
                client.generate(prompt)
            except VHSRequestError as error:
                return str(error.status), error.message
        return "OK", "served"
    with tritonclient.http.InferenceServerClient(server.http_url, network_timeout=120.0) as triton:
        tensor = tritonclient.http.InferInput(P.PROMPT, [1], "BYTES")
        tensor.set_data_from_numpy(np.array([prompt.encode()], dtype=np.object_), binary_data=True)
        try:
            triton.infer(P.ORCHESTRATOR_MODEL, [tensor])
        except InferenceServerException as error:
            return str(error.status()), error.message()
    return "OK", "served"


# Hostile inputs: (what, prompt, extra arguments, field the error must name).
BAD_INPUTS = (
    ("empty prompt", "", {}, "PROMPT"),
    ("only NUL characters", "\x00\x00\x00", {}, "PROMPT"),
    ("only zero-width characters", "\u200b\u200c\u200d\ufeff", {}, "PROMPT"),
    ("3000 characters", "x" * 3000, {}, "PROMPT"),
    ("too many tokens", "circle " * 100, {}, "PROMPT"),
    ("N = 0", PROMPT, {"num_candidates": 0}, "NUM_CANDIDATES"),
    ("N = 10^6", PROMPT, {"num_candidates": 1_000_000}, "NUM_CANDIDATES"),
    ("seed -1", PROMPT, {"seed": -1}, "SEED"),
    ("unknown mode", PROMPT, {"mode": "best"}, "MODE"),
)


def bad_inputs(url: str) -> list[tuple[str, str, str]]:
    """Send every BAD_INPUTS entry; returns (what, status, message) for each."""
    results = []
    with VHSClient(url, retry=NO_RETRY) as client:
        for what, prompt, kwargs, _ in BAD_INPUTS:
            try:
                client.generate(prompt, **kwargs)
                results.append((what, "OK", "served"))
            except VHSRequestError as error:
                results.append((what, str(error.status), error.message))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-load", description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", required=True, type=Path)
    parser.add_argument("--build-dir", type=Path, default=Path("build/triton"))
    parser.add_argument("--seconds", type=float, default=60.0, help="steady-load duration")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--burst", type=int, default=200, help="requests in the overload burst")
    parser.add_argument("--abandon", type=int, default=200, help="requests given up by their clients")
    parser.add_argument("--abandon-timeout", type=float, default=1.0, help="their client timeout, seconds")
    parser.add_argument("--oversize", type=int, default=100, help="MiB of the oversized prompts")
    args = parser.parse_args(argv)

    with TritonServer(args.model_repository, build_dir=args.build_dir) as server:
        # The kills' clients have stopped when the grace starts: 5 s is enough to see leftovers go.
        supervisor = Supervisor(server, poll_interval_s=0.5, log=lambda message: None, stale_grace_s=5.0)
        memory = {"at start": server_memory_bytes(server.pid)}
        stubs = sum(supervisor.expected_stubs.values())
        print(f"tritonserver ready in {server.startup_s:.1f} s; {stubs} stubs")
        sample_every_s = args.seconds / 6
        stop_sampling = threading.Event()
        with ThreadPoolExecutor(1) as sampler:
            samples = sampler.submit(sample_memory, server.pid, sample_every_s, stop_sampling)
            load = steady_load(server.grpc_url, args.seconds, args.concurrency)
            stop_sampling.set()
        print(
            f"steady load: {args.concurrency} clients x {args.seconds:.0f} s, vhs N = 4: "
            f"served {load.served}, failed {sum(load.failed.values())} {dict(load.failed)}, "
            f"p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms; memory (PSS, MiB) every "
            f"{sample_every_s:.0f} s: {' '.join(f'{size / 2**20:.0f}' for size in samples.result())}"
        )
        memory["after the steady load"] = server_memory_bytes(server.pid)
        for engine in ("dit_suffix", "llm", P.ORCHESTRATOR_MODEL):
            kill = kill_engine(server, supervisor, engine)
            print(
                f"kill -9 a stub of {engine}: last failure {kill.seconds_to_serve_again:.1f} s after the "
                f"kill (supervisor reload {kill.supervisor_seconds:.1f} s); readiness false meanwhile: "
                f"{kill.readiness_went_false}; requests meanwhile: served {kill.requests_during.served}, "
                f"failed {dict(kill.requests_during.failed)}; a client with retries: served "
                f"{kill.retrying_client.served}, failed {dict(kill.retrying_client.failed)}, slowest "
                f"{max(kill.retrying_client.latencies_ms, default=float('nan')) / 1e3:.1f} s; "
                f"zombie stubs now {len(zombie_stubs(server))}"
            )
            for message, count in kill.client_errors.most_common(3):
                print(f"    {count:>4} x {message}")
        stop_leftovers(supervisor, timeout_s=30.0)
        print(
            f"stubs of unloaded versions stopped by the supervisor: {supervisor.stopped_stale_stubs}; "
            f"zombie stubs: {len(zombie_stubs(server))}"
        )
        memory["after the kills"] = server_memory_bytes(server.pid)
        burst = overload_burst(server.grpc_url, args.burst)
        print(
            f"overload burst: {burst.requests} clip N = 8 requests at once: served {burst.served}, "
            f"rejected UNAVAILABLE {burst.rejected} (p99 {burst.rejected_p99_ms:.0f} ms to the "
            f"rejection), other {dict(burst.other_errors)}; next request served: {burst.served_after}"
        )
        # As many as the queue takes (cancellation alone), then the 200 (queue bound too).
        for requests, client_timeout_s in (
            (ORCHESTRATOR_MAX_QUEUE, 0.3),
            (args.abandon, args.abandon_timeout),
        ):
            gone = abandoned(server, requests, client_timeout_s)
            print(
                f"abandoned: {gone.requests} clip N = 8 requests, client timeout {client_timeout_s:.1f} s: "
                f"clients got {dict(gone.statuses)}; {gone.completed_on_server} ran to the end on the "
                f"server; {gone.engine_candidates} of {gone.requests * 8} candidates reached dit_prefix; "
                f"server CPU {gone.cpu_s_after_abandon:.2f} s in the {gone.settle_s:.0f} s after"
            )
        print("bad inputs:")
        for what, status, message in bad_inputs(server.grpc_url):
            print(f"    {what:<28} {status:<28} {message[:90]}")
        memory["after burst, abandoned, bad inputs"] = server_memory_bytes(server.pid)
        for protocol in ("grpc", "http"):
            big = oversized_prompts(server, protocol, args.oversize, repeats=3)
            print(
                f"oversized: 3 x {big.megabytes} MiB PROMPT over {protocol}: {dict(big.answers)}; memory "
                f"(PSS) {big.memory_before / 2**20:.0f} -> {big.memory_after / 2**20:.0f} MiB"
            )
        memory["after the oversized prompts"] = server_memory_bytes(server.pid)
        live = live_stubs(server.pid, server.model_repository)
        print(
            "memory (tritonserver + stubs, PSS): "
            + ", ".join(f"{size / 2**20:.0f} MiB {when}" for when, size in memory.items())
            + f"; live stubs {sum(live.values())}"
            + ("" if live == supervisor.expected_stubs else f" {dict(live)}")
            + f", zombie stubs {len(zombie_stubs(server))}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
