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
