"""The supervisor's leftover-stub rule, on a fake process table (no server): after a reload, stubs of
the old version that outlive it are stopped once the grace has passed, including one that appears
after the reload beyond the census (seen once with Triton 2.51 under load: five `vhs` stubs for four
instances after a killed `vhs` stub)."""

import signal
from collections import Counter
from types import SimpleNamespace

import pytest

from vhs.launcher import supervisor as supervision


class FakeServer:
    """A tritonserver whose stubs are a dict {pid: model}; `reload_model` starts the new version's
    stubs and, like Triton 2.51 after a killed `vhs` stub, leaves the old ones running."""

    def __init__(self, stubs: dict[int, str], respawn_during_reload: bool = False):
        self.stubs = dict(stubs)
        self.respawn_during_reload = respawn_during_reload
        self.next_pid = 100
        self.pid, self.model_repository, self.model_control_mode = 1, "repo", "explicit"
        self.process = SimpleNamespace(poll=lambda: None)

    def start(self, model: str) -> int:
        self.next_pid += 1
        self.stubs[self.next_pid] = model
        return self.next_pid

    def reload_model(self, model: str) -> None:
        if self.respawn_during_reload:
            self.start(model)  # the killed old-version stub, respawned before the new instances start
        for _ in range(2):
            self.start(model)


@pytest.fixture()
def fake(monkeypatch):
    killed = []

    def make(respawn_during_reload=False):
        server = FakeServer({11: "vhs", 12: "vhs", 21: "llm"}, respawn_during_reload)
        monkeypatch.setattr(supervision, "stub_models", lambda pid, repository: dict(server.stubs))
        monkeypatch.setattr(supervision, "live_stubs", lambda pid, repo: Counter(server.stubs.values()))
        monkeypatch.setattr(supervision, "started_at", lambda pid: pid)  # pids in start order

        def kill(pid, sig):
            assert sig == signal.SIGKILL
            killed.append(pid)
            del server.stubs[pid]

        monkeypatch.setattr(supervision.os, "kill", kill)
        return server, killed

    return make


@pytest.mark.parametrize("respawned_after_reload", [False, True])
def test_every_old_stub_that_outlives_a_reload_is_stopped_after_the_grace(fake, respawned_after_reload):
    server, killed = fake()
    supervisor = supervision.Supervisor(server, poll_interval_s=0, log=lambda line: None, stale_grace_s=60)
    del server.stubs[11]  # the killed stub (a zombie: not a live stub)
    assert [r.failed for r in supervisor.check()] == ["vhs"]  # reload: 101 and 102 start
    if respawned_after_reload:
        server.start("vhs")  # 103: a third vhs stub where the census has two
    supervisor.check()
    assert killed == [], "nothing is stopped within the grace"
    supervisor.stale_grace_s = 0
    supervisor.stale_stubs = {pid: (model, 0.0) for pid, (model, _) in supervisor.stale_stubs.items()}
    supervisor.reloaded = {model: (pids, 0.0) for model, (pids, _) in supervisor.reloaded.items()}
    supervisor.check()
    assert sorted(killed) == ([12, 103] if respawned_after_reload else [12])
    assert Counter(server.stubs.values()) == supervisor.expected_stubs == Counter({"vhs": 2, "llm": 1})


def test_a_reload_whose_old_stubs_exit_by_themselves_stops_nothing(fake):
    server, killed = fake()
    supervisor = supervision.Supervisor(server, poll_interval_s=0, log=lambda line: None, stale_grace_s=60)
    del server.stubs[11]
    supervisor.check()
    del server.stubs[12]  # the old version's unload finished by itself
    supervisor.check()
    assert killed == [] and supervisor.stale_stubs == {} and sorted(server.stubs) == [21, 101, 102]


def test_a_stub_respawned_during_the_reload_is_stopped_and_the_new_instances_kept(fake):
    server, killed = fake(respawn_during_reload=True)  # the reload starts 101 (old), 102 and 103 (new)
    supervisor = supervision.Supervisor(server, poll_interval_s=0, log=lambda line: None, stale_grace_s=0)
    del server.stubs[11]
    supervisor.check()
    supervisor.check()
    assert sorted(killed) == [12, 101]
    assert sorted(server.stubs) == [21, 102, 103]
