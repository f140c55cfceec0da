import pytest

from vhs.presets import PresetConfig, load_preset, load_preset_config


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="preset must be one of tiny-random, shapes or a folder"):
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
