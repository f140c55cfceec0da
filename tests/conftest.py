"""Shared fixtures (the presets made in code, built before the tests read them; the tiny-random
preset loaded, and exported, once per session) and the check that keeps the `server` marker true.

A test that starts tritonserver (a `tritonserver` process, or `vhs-serve`) without the `server`
marker fails, so `pytest -m "not server"` never starts one. A test that reads one of the session's
exports (SLOW_FIXTURES) is `slow`: the export takes a minute or two on 2 cores.
"""

import subprocess
from pathlib import Path

import pytest

SERVER_PROGRAMS = {"tritonserver", "vhs-serve"}
SERVER_MODULES = {"vhs.launcher.cli"}  # python -m ...
# Fixtures whose first use costs a minute or more: the tests that take them are marked `slow`.
SLOW_FIXTURES = {"exported_tiny", "exported_shapes", "built_proportions"}
_running: dict[str, pytest.Item] = {}


def starts_a_server(args) -> bool:
    """Whether a Popen command line is tritonserver or the launcher (directly or `python -m`)."""
    words = [args] if isinstance(args, str | bytes | Path) else list(args)
    words = [str(word) for word in words]
    if len(words) == 1:
        words = words[0].split()
    return any(Path(word).name in SERVER_PROGRAMS or word in SERVER_MODULES for word in words)


class ServerMarkerPopen(subprocess.Popen):
    """subprocess.Popen that fails the running test if it starts a server without the marker."""

    def __init__(self, args, *more, **options):
        item = _running.get("item")
        if item is not None and item.get_closest_marker("server") is None and starts_a_server(args):
            pytest.fail(
                f"{item.nodeid} starts tritonserver but is not marked `server` "
                "(pytestmark = pytest.mark.server, or @pytest.mark.server on the test)",
                pytrace=False,
            )
        super().__init__(args, *more, **options)


def pytest_configure(config):
    subprocess.Popen = ServerMarkerPopen


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    # The item whose setup (module-scoped fixtures included), call and teardown are running.
    _running["item"] = item
    yield


@pytest.fixture(scope="session", autouse=True)
def built_tiny_random():
    """The tiny-random preset, built (as `vhs-build-preset tiny-random` does) if it is not yet: many
    tests read it, and loading a preset never builds one."""
    from vhs.presets.build import build

    return build("tiny-random")


@pytest.fixture(scope="session")
def built_proportions():
    """The `proportions` benchmark preset, built if it is not yet (a minute on 2 cores)."""
    from vhs.presets.build import build

    return build("proportions")


@pytest.fixture(scope="session")
def tiny_preset():
    from vhs.presets import load_preset  # imported here: torch-free test modules stay fast

    return load_preset("tiny-random")


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_preset):
    from vhs.pipeline import VHSPipeline

    return VHSPipeline(tiny_preset)


@pytest.fixture(scope="session")
def exported_tiny(tmp_path_factory):
    """The tiny-random preset exported once per session: {output folder}/model_repository, manifest.json."""
    from vhs.export.cli import main as export_main

    output = tmp_path_factory.mktemp("export") / "tiny-random"
    assert export_main(["--preset", "tiny-random", "--output", str(output)]) == 0
    return output


@pytest.fixture(scope="session")
def exported_shapes(tmp_path_factory):
    """The embedded `shapes` preset exported once per session (the path `make demo` takes)."""
    from vhs.export.cli import main as export_main

    output = tmp_path_factory.mktemp("export") / "shapes"
    assert export_main(["--preset", "shapes", "--output", str(output)]) == 0
    return output
