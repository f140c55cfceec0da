"""A SANA-Sprint checkpoint the project did not build, as a new user brings it: a diffusers
`SanaSprintPipeline` folder (saved in fp32 or bf16) plus a Qwen2 LLM folder -> `vhs-init-verifier`
-> `vhs-export` -> Triton -> the image diffusers' own pipeline makes from the same noise."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import SanaSprintPipeline
from sana_sprint_folders import save_qwen2_folder, save_sana_sprint_folder

from vhs.best_of_n import to_uint8_images
from vhs.client.vhs_client import VHSClient, VHSRequestError
from vhs.convert.init_verifier import main as init_verifier_main
from vhs.export import cli as export_cli
from vhs.export import graphs
from vhs.export.cli import main as export_main
from vhs.launcher.server import TritonServer
from vhs.noise import candidate_noise
from vhs.pipeline import VHSPipeline
from vhs.presets import load_preset, networks
from vhs.presets.folders import diffusers_complex_human_instruction
from vhs.runtime.manifest import artifact_sha256

PROMPT = "a photo of a Red circle"
TEXT_MAX_LENGTH = 32


def make_preset(root, dtype, complex_human_instruction):
    """Generator folder in `dtype` + fresh verifier + preset.json, as the README's commands make them."""
    generator = save_sana_sprint_folder(root / "Sana_Sprint_diffusers", dtype)
    llm = save_qwen2_folder(root / "Qwen2")
    preset = root / "preset"
    argv = ["--generator", str(generator), "--llm", str(llm), "--output", str(root / "verifier")]
    # Tiny weights are not the published architecture: the explicit path for them.
    assert init_verifier_main([*argv, "--preset", str(preset), "--allow-architecture-mismatch"]) == 0
    settings = json.loads((preset / "preset.json").read_text())
    # Tiny weights, short prompts: the only edits a user of the published model would not make.
    settings.update(
        text_max_length=TEXT_MAX_LENGTH, max_candidates=8, complex_human_instruction=complex_human_instruction
    )
    (preset / "preset.json").write_text(json.dumps(settings))
    return generator, preset


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["fp32-folder", "bf16-folder"])
def foreign(request, tmp_path_factory):
    """(generator folder, preset folder); the bf16 one with diffusers' complex_human_instruction."""
    return make_preset(tmp_path_factory.mktemp("sana"), request.param, request.param == torch.bfloat16)


def diffusers_images(generator, preset_config, noise, dtype):
    """SanaSprintPipeline.from_pretrained on the folder, one step on `noise`: (B, H, W, 3) uint8."""
    pipeline = SanaSprintPipeline.from_pretrained(generator, dtype=dtype)
    with torch.no_grad():
        images = pipeline(
            prompt=[PROMPT] * len(noise),
            latents=torch.from_numpy(noise),
            num_inference_steps=1,
            intermediate_timesteps=None,
            guidance_scale=preset_config.guidance_scale,
            max_sequence_length=TEXT_MAX_LENGTH,
            complex_human_instruction=list(preset_config.complex_human_instruction) or None,
            output_type="np",
            height=32,
            width=32,
            use_resolution_binning=False,
        ).images
    return to_uint8_images(images.transpose(0, 3, 1, 2))


def test_init_verifier_preset_serves_only_the_verifier_it_holds(foreign):
    _, preset_folder = foreign
    pipeline = VHSPipeline(load_preset(preset_folder))
    assert pipeline.config.modes == ("vhs", "none")
    with pytest.raises(ValueError, match=r"MODE 'clip' is not served .*clip_vision/, clip_connector/"):
        pipeline(PROMPT, 2, 0, "clip")


@pytest.mark.slow  # diffusers' pipeline on two foreign folders
def test_reference_pipeline_equals_diffusers_on_the_foreign_folder(foreign):
    generator, preset_folder = foreign
    result = VHSPipeline(load_preset(preset_folder))(PROMPT, 3, 7, "vhs", return_candidates=True)
    config = load_preset(preset_folder).config
    noise = candidate_noise(7, range(3), (4, 8, 8))
    np.testing.assert_allclose(
        result.candidate_images, diffusers_images(generator, config, noise, torch.float32), atol=1
    )


@pytest.mark.slow  # diffusers' pipeline on two foreign folders
def test_bf16_checkpoint_runs_in_bf16_as_diffusers_does(foreign, tmp_path):
    """torch_dtype bfloat16: every component in bf16, embeddings cast to the DiT's dtype as diffusers does."""
    generator, preset_folder = foreign
    settings = json.loads((preset_folder / "preset.json").read_text())
    settings.update(
        torch_dtype="bfloat16",
        generator_path=str(generator.resolve()),
        verifier_path=str((preset_folder / settings["verifier_path"]).resolve()),
    )
    (tmp_path / "preset.json").write_text(json.dumps(settings))
    preset = load_preset(tmp_path)
    assert {module.dtype for module in preset.modules()} == {torch.bfloat16}
    result = VHSPipeline(preset)(PROMPT, 2, 3, "vhs", return_candidates=True)
    expected = diffusers_images(
        generator, preset.config, candidate_noise(3, range(2), (4, 8, 8)), torch.bfloat16
    )
    np.testing.assert_allclose(result.candidate_images, expected, atol=1)


def test_complex_human_instruction_true_is_diffusers_default(foreign):
    _, preset_folder = foreign
    config = load_preset(preset_folder).config
    if config.complex_human_instruction:
        assert config.complex_human_instruction == diffusers_complex_human_instruction()
        assert len(config.complex_human_instruction) == 8


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The bf16 folder with the complex_human_instruction, exported with every graph above a lowered
    external-data threshold (so each is written in Triton's directory form), and served. (The fp32
    folder takes the code path of every other export test; one server keeps `make test` short.)"""
    _, preset_folder = make_preset(tmp_path_factory.mktemp("sana-served"), torch.bfloat16, True)
    output = tmp_path_factory.mktemp("export") / "sana"
    threshold = graphs.EXTERNAL_DATA_THRESHOLD_BYTES
    graphs.EXTERNAL_DATA_THRESHOLD_BYTES = 0
    loads = []

    def recording_load_preset(*args, **kwargs):
        preset = load_preset(*args, **kwargs)
        loads.append({name for name in networks() if getattr(preset, name) is not None})
        return preset

    export_cli.load_preset = recording_load_preset
    try:
        assert export_main(["--preset", str(preset_folder), "--output", str(output)]) == 0
    finally:
        graphs.EXTERNAL_DATA_THRESHOLD_BYTES = threshold
        export_cli.load_preset = load_preset
    with TritonServer(output / "model_repository", build_dir="build/triton") as server:
        with VHSClient(server.grpc_url) as client:
            yield SimpleNamespace(preset_folder=preset_folder, output=output, client=client, loads=loads)


@pytest.mark.server  # the `served` fixture starts tritonserver
def test_export_loads_one_component_at_a_time(served):
    assert served.loads == [{"text_encoder"}, {"transformer"}, {"vae"}, {"connector"}, {"llm"}]


@pytest.mark.server  # the `served` fixture starts tritonserver
def test_served_foreign_preset_equals_the_reference_pipeline(served):
    reference = VHSPipeline(load_preset(served.preset_folder))(PROMPT, 4, 11, "vhs")
    client = served.client
    result = client.generate(PROMPT, 4, 11, "vhs")
    assert result.selected == reference.selected
    np.testing.assert_allclose(result.scores, reference.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.image.astype(int), reference.image.astype(int), atol=1)
    with pytest.raises(VHSRequestError, match="MODE 'latent' is not served"):
        client.generate(PROMPT, 2, 0, "latent")


@pytest.mark.server  # the `served` fixture starts tritonserver
def test_external_data_graphs_are_directories_hashed_whole(served):
    output = served.output
    manifest = json.loads((output / "manifest.json").read_text())
    assert set(manifest["engines"]) == {
        "text_encoder",
        "dit_prefix",
        "dit_suffix",
        "vae_decoder",
        "connector",
        "llm",
    }
    repository = output / "model_repository"
    for name, engine in manifest["engines"].items():
        graph = repository / name / "1" / "model.onnx"
        assert graph.is_dir()
        assert artifact_sha256(graph) == engine["sha256"]
        assert sorted(p.name for p in graph.iterdir()) == ["model.onnx", "model.onnx.data"]
    data = graph / "model.onnx.data"
    tampered = bytearray(data.read_bytes())
    tampered[-1] ^= 1
    data.rename(output / "data.bak")
    data.write_bytes(bytes(tampered))
    try:
        assert artifact_sha256(graph) != engine["sha256"], "the external data is part of the hash"
    finally:
        data.unlink()
        (output / "data.bak").rename(data)
