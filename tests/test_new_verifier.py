"""A new verifier kind is one entry of the mode table (vhs/modes.py) and weights in a preset.

The toy verifier below averages the DiT suffix's latent over its pixels and hands the LLM one token
through a connector. It is added through the table only: nothing else in the project learns its
name. A preset that holds its weights is exported and served by a real tritonserver (whose
orchestrator learns the mode from the repository's manifest), and the served result equals the
reference pipeline's.
"""

import json
import shutil

import numpy as np
import pytest
import torch

from vhs.client.vhs_client import VHSClient
from vhs.engine_names import DIT_SUFFIX, LLM
from vhs.export.cli import main as export_main
from vhs.launcher.server import TritonServer
from vhs.modes import MODES, Component, VerifierMode
from vhs.pipeline import VHSPipeline
from vhs.presets import load_preset, preset_folder
from vhs.presets.builder import ComponentSizes
from vhs.presets.tiny_random import SIZES
from vhs.verifier import MLPConnector

pytestmark = pytest.mark.server  # starts a real tritonserver

PROMPT = "a photo of a red circle left of a blue square"


class MeanPoolEncoder(torch.nn.Module):
    """The toy visual encoder: (B, C, h, w) latents -> one visual token (B, 1, llm width)."""

    def __init__(self, connector: MLPConnector):
        super().__init__()
        self.connector = connector

    def forward(self, denoised_latents):
        return self.connector(denoised_latents.mean(dim=(2, 3))[:, None, :])


TOY = VerifierMode(
    "toy",
    reads=DIT_SUFFIX,
    visual_encoder="toy_pool",
    llm=LLM,  # it shares VHS's LLM: a verifier may bring its own or share one
    encoder_input="denoised_latents",
    encoder_components=(Component("toy_connector", "vhs.verifier", "MLPConnector"),),
    encoder_class=(__name__, "MeanPoolEncoder"),
)


def write_toy_preset(folder, sizes: ComponentSizes):
    """tiny-random's generator and verifier folder plus the toy's connector, serving vhs, toy, none."""
    source = preset_folder("tiny-random")
    shutil.copytree(source / "verifier", folder / "verifier")
    torch.manual_seed(0)
    connector = MLPConnector(sizes.latent_channels, sizes.llm_width)
    connector.save_pretrained(folder / "verifier" / "toy_connector")
    config = json.loads((source / "preset.json").read_text())
    config |= {"name": "tiny-toy", "generator_path": str(source), "modes": ["vhs", "toy", "none"]}
    (folder / "preset.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def toy_repository(tmp_path_factory):
    """The toy's table entry (for this module only) and the model repository exported with it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(MODES, TOY.name, TOY)
        preset = write_toy_preset(tmp_path_factory.mktemp("toy-preset"), SIZES)
        output = tmp_path_factory.mktemp("toy-export") / "tiny-toy"
        assert export_main(["--preset", str(preset), "--output", str(output)]) == 0
        yield preset, output / "model_repository"


def test_a_verifier_added_to_the_table_is_exported_and_served(toy_repository):
    preset, repository = toy_repository
    assert (repository / "toy_pool" / "1").is_dir() and not (repository / "clip_llm").exists()
    reference = VHSPipeline(load_preset(preset))(PROMPT, 4, 5, "toy")

    with TritonServer(repository, build_dir="build/triton") as server, VHSClient(server.grpc_url) as client:
        served = client.generate(PROMPT, 4, 5, "toy")
        vhs = client.generate(PROMPT, 4, 5, "vhs")

    assert list(served.timings_ms)[1:6] == ["text_encoder", "dit_prefix", "dit_suffix", "toy_pool", "llm"]
    assert served.selected == reference.selected
    np.testing.assert_allclose(served.scores, reference.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served.image.astype(int), reference.image.astype(int), atol=1)
    assert not np.allclose(served.scores, vhs.scores)  # the toy's own scores, not VHS's
