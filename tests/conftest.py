"""Shared fixtures: the tiny-random preset is built once per session."""

import pytest


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
