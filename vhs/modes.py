"""The verifier modes: one table that says, for every mode, which engines score the candidates.

Import-light (no torch): the orchestrator stub, the client, the exporter and the benchmarks all read
it. A new verifier kind is one `VerifierMode` entry here plus its visual-encoder module (registered
in `vhs.engines.VISUAL_ENCODERS`); the request path, export, configs and benchmarks follow the table.

Every candidate goes through the generation chain `dit_prefix -> dit_suffix -> vae_decoder`. A mode
advances all N candidates as far as the stage its visual encoder `reads`, scores them with its LLM,
and only the winner runs the rest of the chain. VHS reads the prefix's hidden states, so the suffix
and the decoder run once per request; the CLIP baseline reads decoded pixels, so every candidate is
decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from .engine_names import (
    CLIP_LLM,
    CLIP_VISION,
    CONNECTOR,
    DIT_PREFIX,
    DIT_SUFFIX,
    LATENT_CONNECTOR,
    LATENT_LLM,
    LLM,
    TEXT_ENCODER,
    VAE_DECODER,
)

# The stages that turn one candidate's noise into an image, in order.
GENERATION_CHAIN = (DIT_PREFIX, DIT_SUFFIX, VAE_DECODER)


@dataclass(frozen=True)
class VerifierMode:
    """One way of choosing the best of N candidates.

    reads: the generation stage whose outputs the visual encoder takes (an entry of GENERATION_CHAIN).
    visual_encoder: the engine that turns those outputs into LLM-width visual tokens; None for a mode
        without a verifier.
    llm: the engine that scores the visual tokens with the yes/no question; None without a verifier.
    """

    name: str
    reads: str
    visual_encoder: str | None
    llm: str | None

    def __post_init__(self):
        if self.reads not in GENERATION_CHAIN:
            raise ValueError(f"reads must be one of {GENERATION_CHAIN}, got {self.reads!r}")
        if (self.visual_encoder is None) != (self.llm is None):
            raise ValueError(f"mode {self.name!r}: visual_encoder and llm are both set or both None")

    @property
    def verifies(self) -> bool:
        """Whether candidates are scored; without a verifier the selection is candidate 0 (Best-of-1)."""
        return self.llm is not None

    @property
    def stages_for_every_candidate(self) -> tuple[str, ...]:
        """Generation stages run on all N candidates before scoring (the prefix is always among them)."""
        return GENERATION_CHAIN[: GENERATION_CHAIN.index(self.reads) + 1]

    @property
    def stages_for_the_winner(self) -> tuple[str, ...]:
        """Generation stages run on the selected candidate only, after scoring."""
        return GENERATION_CHAIN[GENERATION_CHAIN.index(self.reads) + 1 :]

    @property
    def decodes_every_candidate(self) -> bool:
        return VAE_DECODER in self.stages_for_every_candidate

    def generated_candidates(self, num_candidates: int) -> int:
        """How many candidates a request for `num_candidates` generates: all N with a verifier,
        candidate 0 alone without one."""
        return num_candidates if self.verifies else 1

    def batch_sizes(self, num_candidates: int) -> dict[str, int]:
        """Rows each engine of a request for `num_candidates` is called with, in call order: the
        generated candidates up to and through the verifier, one for the text encoder and the winner."""
        generated = self.generated_candidates(num_candidates)
        verifier = (self.visual_encoder, self.llm) if self.verifies else ()
        return {
            TEXT_ENCODER: 1,
            **{engine: generated for engine in (*self.stages_for_every_candidate, *verifier)},
            **{engine: 1 for engine in self.stages_for_the_winner},
        }

    @property
    def engines(self) -> tuple[str, ...]:
        """Every engine a request in this mode calls, in call order."""
        return tuple(self.batch_sizes(1))

    def engine_rows(self, num_candidates: int) -> dict[str, int]:
        """{engine: rows it runs} for one request of N candidates; each engine is called once.

        The text encoder runs the prompt once and the winner's stages one row; the rest run every
        candidate, which is candidate 0 alone without a verifier.
        """
        candidates = num_candidates if self.verifies else 1
        once = (TEXT_ENCODER, *self.stages_for_the_winner)
        return {engine: 1 if engine in once else candidates for engine in self.engines}


MODES: dict[str, VerifierMode] = {
    mode.name: mode
    for mode in (
        # VHS: an MLP connector on the DiT hidden states after block l*.
        VerifierMode("vhs", reads=DIT_PREFIX, visual_encoder=CONNECTOR, llm=LLM),
        # Baseline "MLLM with CLIP": decode every candidate, CLIP vision tower + connector.
        VerifierMode("clip", reads=VAE_DECODER, visual_encoder=CLIP_VISION, llm=CLIP_LLM),
        # Baseline "MLLM with AE": a connector on the autoencoder latent z_0.
        VerifierMode("latent", reads=DIT_SUFFIX, visual_encoder=LATENT_CONNECTOR, llm=LATENT_LLM),
        # Best-of-1: no verifier, candidate 0 is the answer.
        VerifierMode("none", reads=DIT_PREFIX, visual_encoder=None, llm=None),
    )
}
DEFAULT_MODE = "vhs"


def mode_names() -> tuple[str, ...]:
    """The names a request's MODE may take, in table order."""
    return tuple(MODES)


def all_engines() -> tuple[str, ...]:
    """Every engine of the table (the Triton engine models of an exported repository), each once:
    the text encoder, the generation chain, the visual encoders, the LLMs."""
    encoders = [mode.visual_encoder for mode in MODES.values() if mode.verifies]
    return tuple(dict.fromkeys([TEXT_ENCODER, *GENERATION_CHAIN, *encoders, *llm_engines()]))


def llm_engines() -> tuple[str, ...]:
    """The engines that score visual tokens (their visual-token axis is dynamic)."""
    return tuple(dict.fromkeys(mode.llm for mode in MODES.values() if mode.llm is not None))


def modes_scored_by(llm: str) -> tuple[VerifierMode, ...]:
    """The modes whose visual tokens `llm` reads (an LLM graph must accept each one's token count)."""
    return tuple(mode for mode in MODES.values() if mode.llm == llm)
