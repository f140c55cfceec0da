"""Built-in presets end to end: exported, served by the real Triton server, and compared with the
in-process reference pipeline for the same prompt and seed. `shapes` is the path `make demo` takes;
`proportions` is what `make bench-latency PRESET=proportions` times (its export takes minutes on 2
cores, so `make test` leaves it out: marker `proportions`, run by `make test-proportions`)."""

import numpy as np
import pytest

from vhs.client.vhs_client import VHSClient
from vhs.launcher.server import TritonServer
from vhs.modes import mode_names

pytestmark = pytest.mark.server  # starts a real tritonserver

PROMPT = "a photo of a red circle left of a blue square"
# The image size each preset serves.
PRESETS = [
    pytest.param(("shapes", 64), id="shapes"),
    pytest.param(("proportions", 128), id="proportions", marks=pytest.mark.proportions),
]


@pytest.fixture(scope="module", params=PRESETS)
def preset(request):
    return request.param


@pytest.fixture(scope="module")
def served_client(request, preset, tmp_path_factory):
    name, _ = preset
    if name == "shapes":  # exported once per session, shared with the other shapes tests
        output = request.getfixturevalue("exported_shapes")
    else:
        from vhs.export.cli import main as export_main

        request.getfixturevalue(f"built_{name}")
        output = tmp_path_factory.mktemp("export") / name
        assert export_main(["--preset", name, "--output", str(output)]) == 0
    with TritonServer(output / "model_repository", build_dir="build/triton") as server:
        with VHSClient(server.grpc_url) as client:
            yield client


@pytest.fixture(scope="module")
def reference_pipeline(preset):
    from vhs.pipeline import VHSPipeline

    return VHSPipeline.from_preset(preset[0])


@pytest.mark.parametrize("mode", mode_names())
def test_served_image_equals_reference_pipeline(preset, served_client, reference_pipeline, mode):
    _, image_size = preset
    served = served_client.generate(PROMPT, 4, 7, mode, return_candidates=True)
    reference = reference_pipeline(PROMPT, 4, 7, mode, return_candidates=True)
    assert served.image.shape == (image_size, image_size, 3) and served.image.dtype == np.uint8
    assert served.selected == reference.selected
    np.testing.assert_allclose(served.scores, reference.scores, rtol=1e-4, atol=1e-5)
    # ONNX Runtime vs PyTorch: at most one grey level apart after rounding to uint8.
    np.testing.assert_allclose(served.image.astype(int), reference.image.astype(int), atol=1)
    np.testing.assert_allclose(
        served.candidate_images.astype(int), reference.candidate_images.astype(int), atol=1
    )
