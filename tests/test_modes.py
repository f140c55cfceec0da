"""The mode table: what each mode calls follows from where its visual encoder reads."""

import dataclasses
import json

import pytest

from vhs.modes import (
    MODES,
    Component,
    VerifierMode,
    adopt_table_entries,
    all_engines,
    llm_engines,
    mode_names,
    modes_scored_by,
    table_entries,
    verifier_components,
)


def test_engines_each_mode_calls_in_order():
    assert MODES["vhs"].engines == (
        "text_encoder", "dit_prefix", "connector", "llm", "dit_suffix", "vae_decoder"
    )  # fmt: skip
    assert MODES["latent"].engines == (
        "text_encoder", "dit_prefix", "dit_suffix", "latent_connector", "latent_llm", "vae_decoder"
    )  # fmt: skip
    assert MODES["clip"].engines == (
        "text_encoder", "dit_prefix", "dit_suffix", "vae_decoder", "clip_vision", "clip_llm"
    )  # fmt: skip
    assert MODES["none"].engines == ("text_encoder", "dit_prefix", "dit_suffix", "vae_decoder")


def test_only_the_pixel_verifier_decodes_every_candidate():
    assert [name for name in mode_names() if MODES[name].decodes_every_candidate] == ["clip"]
    assert MODES["vhs"].stages_for_the_winner == ("dit_suffix", "vae_decoder")
    assert not MODES["none"].verifies


def test_the_repository_holds_every_engine_of_the_table_once():
    assert all_engines() == (
        "text_encoder", "dit_prefix", "dit_suffix", "vae_decoder",
        "connector", "clip_vision", "latent_connector", "llm", "clip_llm", "latent_llm",
    )  # fmt: skip
    assert [mode.name for mode in modes_scored_by("llm")] == ["vhs"]


def test_each_verifier_has_its_own_llm_and_modes_may_share_one(monkeypatch):
    assert llm_engines() == ("llm", "clip_llm", "latent_llm")
    assert [mode.name for mode in modes_scored_by("clip_llm")] == ["clip"]
    monkeypatch.setitem(MODES, "clip", dataclasses.replace(MODES["clip"], llm="llm"))
    assert llm_engines() == ("llm", "latent_llm")
    assert [mode.name for mode in modes_scored_by("llm")] == ["vhs", "clip"]


def test_a_modes_preset_folders_are_its_encoder_components_then_its_llm():
    assert MODES["vhs"].folders == ("connector", "llm")
    assert MODES["clip"].folders == ("clip_vision", "clip_connector", "clip_llm")
    assert MODES["none"].folders == ()
    # Every folder once, each with the class that loads it; the LLMs are causal LMs.
    assert list(verifier_components()) == [
        "connector", "llm", "clip_vision", "clip_connector", "clip_llm", "latent_connector", "latent_llm"
    ]  # fmt: skip
    assert verifier_components()["clip_llm"] == Component("clip_llm", "transformers", "AutoModelForCausalLM")


def test_a_table_entry_survives_the_manifest_round_trip():
    entries = json.loads(json.dumps(table_entries(mode_names())))
    assert [VerifierMode.from_dict(entry) for entry in entries] == list(MODES.values())


def test_a_manifest_adds_its_modes_and_refuses_a_different_entry(monkeypatch):
    monkeypatch.setattr("vhs.modes.MODES", dict(MODES))
    from vhs import modes

    toy = dataclasses.replace(MODES["latent"], name="toy", visual_encoder="toy_pool")
    adopt_table_entries([dataclasses.asdict(toy)])
    assert modes.MODES["toy"] == toy
    changed = dataclasses.asdict(dataclasses.replace(MODES["vhs"], reads="dit_suffix"))
    with pytest.raises(ValueError, match="mode 'vhs' of the manifest is .*re-export"):
        adopt_table_entries([changed])


CONNECTOR = (Component("connector", "vhs.verifier", "MLPConnector"),)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(name="bad", reads="llm", visual_encoder=None, llm=None), "reads must be one of"),
        (
            dict(name="bad", reads="dit_prefix", visual_encoder="connector", llm=None),
            "all set .* or all unset",
        ),
        (
            dict(
                name="bad",
                reads="dit_prefix",
                visual_encoder="connector",
                llm="llm",
                encoder_input="hidden_states",
                encoder_components=CONNECTOR * 2,
            ),
            "several encoder_components need an encoder_class",
        ),
    ],
)
def test_a_malformed_entry_is_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        VerifierMode(**arguments)
