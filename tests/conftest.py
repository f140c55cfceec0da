"""Shared fixtures: the tiny-random preset is built once per session."""

import pytest

from vhs.presets import load_preset


@pytest.fixture(scope="session")
def tiny_preset():
    return load_preset("tiny-random")


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_preset):
    from vhs.pipeline import VHSPipeline

    return VHSPipeline(tiny_preset)
