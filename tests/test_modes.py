"""The mode table: what each mode calls follows from where its visual encoder reads."""

import pytest

from vhs.modes import MODES, VerifierMode, all_engines, llm_engines, mode_names, modes_scored_by


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
    monkeypatch.setitem(MODES, "clip", VerifierMode("clip", "vae_decoder", "clip_vision", "llm"))
    assert llm_engines() == ("llm", "latent_llm")
    assert [mode.name for mode in modes_scored_by("llm")] == ["vhs", "clip"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("bad", "llm", "connector", "llm"), "reads must be one of"),
        (("bad", "dit_prefix", "connector", None), "both set or both None"),
    ],
)
def test_a_malformed_entry_is_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        VerifierMode(*arguments)
