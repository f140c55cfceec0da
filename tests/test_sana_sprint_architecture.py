"""The `sana-sprint` preset serves the published architecture and runs as the authors run it
(SanaSprintPipeline's complex_human_instruction on); tiny weights of the identical classes are
served only through the explicit path (`--allow-architecture-mismatch`: the preset is named
`sana-sprint-custom`), and a folder named `sana-sprint` that differs is refused naming the field."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from sana_sprint_folders import save_qwen2_folder, save_sana_sprint_folder

from vhs.convert.init_verifier import main as init_verifier_main
from vhs.presets import PresetConfigError, load_preset, load_preset_config
from vhs.presets.folders import diffusers_complex_human_instruction
from vhs.presets.sana_sprint import (
    CUSTOM_NAME,
    NAME,
    PUBLISHED_ARCHITECTURE,
    check_published_architecture,
    sana_sprint_config,
)

# The published folder's configs, as far as the check reads them (written here without weights).
PUBLISHED_CONFIGS = {
    "transformer/config.json": {
        "_class_name": "SanaTransformer2DModel",
        "num_layers": 20,
        "num_attention_heads": 70,
        "attention_head_dim": 32,
        "in_channels": 32,
        "caption_channels": 2304,
        "patch_size": 1,
        "sample_size": 32,
    },
    "vae/config.json": {
        "_class_name": "AutoencoderDC",
        "latent_channels": 32,
        "decoder_block_out_channels": [128, 256, 512, 512, 1024, 1024],
    },
    "text_encoder/config.json": {"model_type": "gemma2", "hidden_size": 2304},
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sana-arch")
    return save_sana_sprint_folder(root / "generator", torch.float32), save_qwen2_folder(root / "qwen2"), root


def published_folder(root, **changes):
    """Config files of the published architecture, with `changes` ({"file:key": value}) applied."""
    for file, config in PUBLISHED_CONFIGS.items():
        config = dict(config)
        for where, value in changes.items():
            changed_file, key = where.split(":")
            if changed_file == file:
                config[key] = value
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        (root / file).write_text(json.dumps(config))
    return root


def test_the_published_configs_pass_and_each_field_is_named_when_it_differs(tmp_path):
    check_published_architecture(published_folder(tmp_path / "published"))
    cases = {
        "transformer/config.json:num_layers": (8, "num_layers is 8"),
        "transformer/config.json:num_attention_heads": (
            2,
            r"width \(num_attention_heads x attention_head_dim\) is 64",
        ),
        "transformer/config.json:in_channels": (4, "in_channels is 4"),
        "vae/config.json:latent_channels": (4, "latent_channels is 4"),
        "vae/config.json:decoder_block_out_channels": ([8, 16, 16], "downsampling .* is 4"),
        "text_encoder/config.json:hidden_size": (32, "text_encoder/config.json hidden_size is 32"),
        "text_encoder/config.json:model_type": ("gemma", "model_type is 'gemma'"),
    }
    for index, (where, (value, message)) in enumerate(cases.items()):
        folder = published_folder(tmp_path / f"case{index}", **{where: value})
        with pytest.raises(PresetConfigError, match=message):
            check_published_architecture(folder)
    assert sum(len(fields) for fields in PUBLISHED_ARCHITECTURE.values()) == 11


def test_init_verifier_refuses_tiny_weights_as_sana_sprint_naming_the_field(folders, tmp_path, capsys):
    generator, llm, _ = folders
    argv = ["--generator", str(generator), "--llm", str(llm), "--output", str(tmp_path / "verifier")]
    assert init_verifier_main([*argv, "--preset", str(tmp_path / "preset")]) == 2
    error = capsys.readouterr().err
    assert "transformer/config.json width (num_attention_heads x attention_head_dim) is 16" in error
    assert "--allow-architecture-mismatch" in error
    assert not (tmp_path / "preset" / "preset.json").exists()


def test_the_explicit_path_serves_tiny_weights_with_the_authors_instruction(folders, tmp_path):
    generator, llm, _ = folders
    argv = ["--generator", str(generator), "--llm", str(llm), "--output", str(tmp_path / "verifier")]
    preset = tmp_path / "preset"
    assert init_verifier_main([*argv, "--preset", str(preset), "--allow-architecture-mismatch"]) == 0
    written = json.loads((preset / "preset.json").read_text())
    assert written["name"] == CUSTOM_NAME
    assert written["complex_human_instruction"] is True  # SanaSprintPipeline's default, as the authors run
    config = load_preset_config(preset)
    assert config.complex_human_instruction == diffusers_complex_human_instruction()
    assert len(config.complex_human_instruction) == 8
    loaded = load_preset(preset, components=[])
    # The text encoder reads instruction + prompt, as SanaSprintPipeline.encode_prompt.
    tokens = loaded.prompt_tokenizer("a photo of a red circle")
    assert tokens.input_ids.shape[1] > config.text_max_length


def test_a_sana_sprint_preset_on_other_weights_is_refused_at_load(folders, tmp_path):
    generator, llm, _ = folders
    argv = ["--generator", str(generator), "--llm", str(llm), "--output", str(tmp_path / "verifier")]
    preset = tmp_path / "preset"
    assert init_verifier_main([*argv, "--preset", str(preset), "--allow-architecture-mismatch"]) == 0
    settings = json.loads((preset / "preset.json").read_text())
    (preset / "preset.json").write_text(json.dumps({**settings, "name": NAME}))
    with pytest.raises(PresetConfigError, match="the 'sana-sprint' preset serves the published architecture"):
        load_preset(preset, components=[])


def test_sana_sprint_config_defaults_to_the_authors_settings():
    config = sana_sprint_config("generator", "verifier")
    assert config.name == NAME and config.split_block == 7 and config.guidance_scale == 4.5
    assert config.complex_human_instruction == diffusers_complex_human_instruction()
    assert sana_sprint_config("g", "v", complex_human_instruction=()).complex_human_instruction == ()


def test_the_tiny_folder_really_differs_only_where_tiny(folders, tmp_path):
    """The tiny generator keeps the published depth and patch size; only widths are tiny."""
    generator, _, _ = folders
    copy = shutil.copytree(generator, tmp_path / "generator")
    transformer = json.loads((copy / "transformer" / "config.json").read_text())
    assert transformer["num_layers"] == 20 and transformer["patch_size"] == 1
