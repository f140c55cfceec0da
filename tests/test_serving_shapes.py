"""The default `shapes` preset end to end, the path `make demo` takes: exported, served by the real
Triton server, and compared with the in-process reference pipeline for the same prompt and seed."""

import numpy as np
import pytest

from client.vhs_client import VHSClient
from vhs.modes import mode_names
from vhs.serving.server import TritonServer

pytestmark = pytest.mark.server  # starts a real tritonserver

PROMPT = "a photo of a red circle left of a blue square"


@pytest.fixture(scope="module")
def shapes_client(exported_shapes):
    with TritonServer(exported_shapes / "model_repository", build_dir="build/triton") as server:
        with VHSClient(server.grpc_url) as client:
            yield client


@pytest.fixture(scope="module")
def shapes_pipeline():
    from vhs.pipeline import VHSPipeline

    return VHSPipeline.from_preset("shapes")


@pytest.mark.parametrize("mode", mode_names())
def test_served_shapes_image_equals_reference_pipeline(shapes_client, shapes_pipeline, mode):
    served = shapes_client.generate(PROMPT, 4, 7, mode, return_candidates=True)
    reference = shapes_pipeline(PROMPT, 4, 7, mode, return_candidates=True)
    assert served.image.shape == (64, 64, 3) and served.image.dtype == np.uint8
    assert served.selected == reference.selected
    np.testing.assert_allclose(served.scores, reference.scores, rtol=1e-4, atol=1e-5)
    # ONNX Runtime vs PyTorch: at most one grey level apart after rounding to uint8.
    np.testing.assert_allclose(served.image.astype(int), reference.image.astype(int), atol=1)
    np.testing.assert_allclose(
        served.candidate_images.astype(int), reference.candidate_images.astype(int), atol=1
    )
