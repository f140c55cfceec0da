"""The markers say what a test is: a test that starts tritonserver (or the launcher) without the
`server` marker fails (tests/conftest.py), so `pytest -m "not server"` never starts one."""

import subprocess
import sys

import pytest


@pytest.fixture
def fake_tritonserver(tmp_path):
    program = tmp_path / "tritonserver"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    return program


@pytest.mark.parametrize(
    "command",
    [
        "fake",
        [sys.executable, "-m", "vhs.launcher.cli", "--help"],
        ["vhs-serve", "--model-repository", "build/shapes/model_repository"],
        "vhs-serve --help",
    ],
)
def test_an_unmarked_test_that_starts_a_server_fails(fake_tritonserver, command):
    command = [str(fake_tritonserver), "--model-repository=x"] if command == "fake" else command
    with pytest.raises(pytest.fail.Exception, match="starts tritonserver but is not marked `server`"):
        subprocess.Popen(command)


def test_an_unmarked_test_runs_other_programs():
    printed = subprocess.run([sys.executable, "-c", "print('tritonserver')"], capture_output=True, text=True)
    assert printed.stdout == "tritonserver\n"


@pytest.mark.server
def test_a_marked_test_starts_it(fake_tritonserver):
    assert subprocess.Popen([str(fake_tritonserver)]).wait() == 0
