import json
import shutil

import pytest

from vhs.presets import PresetConfig, PresetConfigError, load_preset, load_preset_config, preset_folder
from vhs.verifier import MLPConnector


def test_unknown_preset_names_the_choices():
    choices = "tiny-random, shapes, proportions"
    with pytest.raises(ValueError, match=f"preset must be one of {choices} or a folder"):
        load_preset("no-such-preset")


def test_preset_config_rejects_default_above_maximum():
    with pytest.raises(ValueError, match="default_candidates"):
        PresetConfig(
            name="x",
            split_block=7,
            guidance_scale=4.5,
            text_max_length=8,
            question_max_length=8,
            default_candidates=9,
            max_candidates=8,
        )


def test_tiny_random_keeps_sana_sprint_depth_and_split():
    config = load_preset_config("tiny-random")
    assert config.split_block == 7
    preset = load_preset("tiny-random")
    assert len(preset.transformer.transformer_blocks) == 20
    assert preset.transformer.config.guidance_embeds


def write_preset(folder, **changes):
    """A copy of the tiny-random preset.json in `folder`, pointing at tiny-random's components."""
    source = preset_folder("tiny-random")
    settings = json.loads((source / "preset.json").read_text())
    settings.update(generator_path=str(source), verifier_path=str(source / "verifier"))
    settings.update(changes)
    for key in [key for key, value in changes.items() if value is None]:
        del settings[key]
    (folder / "preset.json").write_text(json.dumps(settings))
    return folder


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"split_blok": 7}, r"unknown key 'split_blok' \(did you mean 'split_block'\?\)"),
        ({"name": None}, "missing required key 'name'"),
        ({"max_candidates": "8"}, "max_candidates has the wrong type"),
        ({"guidance_scale": True}, "guidance_scale has the wrong type"),
        ({"torch_dtype": "float64"}, "torch_dtype must be one of float32, float16, bfloat16"),
        ({"verifier_path": "no/such/folder"}, "verifier_path 'no/such/folder' is not a folder"),
        ({"modes": ["vhs", "best"]}, "modes must be a list of vhs, clip, latent, none"),
        ({"complex_human_instruction": [1, 2]}, "complex_human_instruction must be true, false or a list"),
    ],
)
def test_preset_json_is_read_strictly(tmp_path, changes, message):
    with pytest.raises(PresetConfigError, match=message):
        load_preset_config(write_preset(tmp_path, **changes))


def test_hub_ids_need_the_hub_prefix(tmp_path):
    from vhs.presets.folders import resolve_component_path

    assert resolve_component_path(tmp_path, "hub:org/model", "generator_path") == "org/model"
    with pytest.raises(PresetConfigError, match="generator_path 'org/model' is not a folder"):
        resolve_component_path(tmp_path, "org/model", "generator_path")


def test_a_generator_folder_without_a_component_is_refused(tmp_path):
    generator = tmp_path / "generator"
    for name in ("tokenizer", "text_encoder", "transformer", "scheduler"):
        shutil.copytree(preset_folder("tiny-random") / name, generator / name)
    assert_refused_at_load(
        tmp_path, r"generator_path .* lacks vae/ \(a SanaSprintPipeline folder", generator_path=str(generator)
    )


def test_a_verifier_of_the_wrong_width_is_refused_at_load(tmp_path):
    verifier = tmp_path / "verifier"
    shutil.copytree(preset_folder("tiny-random") / "verifier", verifier)
    MLPConnector(24, 32).save_pretrained(verifier / "connector")
    message = r"verifier connector in_features is 24 but transformer width .* is 16"
    assert_refused_at_load(tmp_path, message, verifier_path=str(verifier))


def test_a_connector_reading_another_text_encoders_prompt_is_refused_at_load(tmp_path, tiny_preset):
    verifier = tmp_path / "verifier"
    shutil.copytree(preset_folder("tiny-random") / "verifier", verifier)
    width = tiny_preset.text_encoder.config.hidden_size
    MLPConnector(16, 32, prompt_width=width + 8).save_pretrained(verifier / "connector")
    message = rf"verifier connector prompt_width is {width + 8} but text_encoder hidden_size is {width}"
    assert_refused_at_load(tmp_path, message, verifier_path=str(verifier))


def assert_refused_at_load(folder, message, **paths):
    with pytest.raises(PresetConfigError, match=message):
        load_preset(write_preset(folder, **paths))


def test_modes_listed_in_preset_json_need_their_verifier_folders(tmp_path):
    verifier = tmp_path / "verifier"
    shutil.copytree(preset_folder("tiny-random") / "verifier", verifier)
    shutil.rmtree(verifier / "clip_vision")
    assert load_preset_config(write_preset(tmp_path, verifier_path=str(verifier), modes=None)).modes == (
        "vhs",
        "latent",
        "none",
    )
    with pytest.raises(PresetConfigError, match=r"lacks clip_vision/ \(the verifier of mode 'clip'"):
        load_preset_config(write_preset(tmp_path, verifier_path=str(verifier), modes=["clip", "none"]))


def test_loading_an_unbuilt_preset_names_the_command_and_writes_nothing(tmp_path, monkeypatch):
    from vhs.presets import PresetNotBuilt
    from vhs.presets.build import main as build_main

    monkeypatch.setenv("VHS_CACHE_DIR", str(tmp_path))
    for load in (load_preset, load_preset_config, preset_folder):
        with pytest.raises(PresetNotBuilt, match=r"run `vhs-build-preset tiny-random`"):
            load("tiny-random")
    assert list(tmp_path.iterdir()) == []
    assert build_main(["tiny-random"]) == 0
    assert preset_folder("tiny-random").parent == tmp_path / "presets"
    assert load_preset_config("tiny-random").name == "tiny-random"
