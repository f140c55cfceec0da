"""The verifier modes: the one table of what each way of choosing the best of N is made of.

Import-light (no torch): the orchestrator stub, the client, the exporter and the benchmarks all read
it. A mode's entry is data, as a diffusers pipeline's components are: the stage it reads, its
visual encoder's engine and input, the verifier-folder components that encoder is built from (each
with the class that loads it), and its LLM. From the entry follow the preset folders it needs
(`folders`), the modules the exporter builds (`vhs.engines`), the rows each engine runs
(`engine_rows`), the graphs exported and served, and the request path. A new verifier kind is one
entry here; its modules live wherever their classes do.

Every candidate goes through the generation chain `dit_prefix -> dit_suffix -> vae_decoder`. A mode
advances all N candidates as far as the stage its visual encoder `reads`, scores them with its LLM,
and only the winner runs the rest of the chain. VHS reads the prefix's hidden states, so the suffix
and the decoder run once per request; the CLIP baseline reads decoded pixels, so every candidate is
decoded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
class Component:
    """A folder of a preset's verifier folder and the class whose `from_pretrained` loads it, named
    as diffusers' `model_index.json` names classes: the importable module and the class name."""

    folder: str
    library: str
    class_name: str


# Every verifier's LLM is a causal LM in the verifier folder named as its engine.
LLM_LIBRARY, LLM_CLASS = "transformers", "AutoModelForCausalLM"


@dataclass(frozen=True)
class VerifierMode:
    """One way of choosing the best of N candidates.

    reads: the generation stage whose outputs the visual encoder takes (an entry of GENERATION_CHAIN).
    visual_encoder: the engine that turns those outputs into LLM-width `visual_tokens`; None for a mode
        without a verifier.
    llm: the engine that scores the visual tokens with the yes/no question (its weights: the verifier
        folder of that name); None without a verifier.
    encoder_input: the one output of `reads` the visual encoder takes, which names its graph input.
    encoder_components: the verifier-folder components the visual encoder is built from.
    encoder_class: (module, class name) of the module called with the loaded components, in order,
        to make the visual encoder; None when the one component is the encoder itself.
    """

    name: str
    reads: str
    visual_encoder: str | None
    llm: str | None
    encoder_input: str | None = None
    encoder_components: tuple[Component, ...] = ()
    encoder_class: tuple[str, str] | None = None

    def __post_init__(self):
        if self.reads not in GENERATION_CHAIN:
            raise ValueError(f"reads must be one of {GENERATION_CHAIN}, got {self.reads!r}")
        verifier_fields = (self.visual_encoder, self.llm, self.encoder_input, self.encoder_components or None)
        if any(field is None for field in verifier_fields) != all(field is None for field in verifier_fields):
            raise ValueError(
                f"mode {self.name!r}: visual_encoder, llm, encoder_input and encoder_components are "
                "all set (a verifier) or all unset (no verifier)"
            )
        if self.encoder_class is None and len(self.encoder_components) > 1:
            raise ValueError(f"mode {self.name!r}: several encoder_components need an encoder_class")

    @classmethod
    def from_dict(cls, entry: dict) -> VerifierMode:
        """The inverse of `dataclasses.asdict` (how a manifest carries the served table entries)."""
        components = tuple(Component(**component) for component in entry.get("encoder_components", ()))
        encoder_class = entry.get("encoder_class")
        return cls(
            **{
                **entry,
                "encoder_components": components,
                "encoder_class": None if encoder_class is None else tuple(encoder_class),
            }
        )

    @property
    def verifies(self) -> bool:
        """Whether candidates are scored; without a verifier the selection is candidate 0 (Best-of-1)."""
        return self.llm is not None

    @property
    def folders(self) -> tuple[str, ...]:
        """The verifier-folder parts this mode needs besides the shared tokenizer/ (none without a
        verifier): its encoder's components, then its LLM."""
        if not self.verifies:
            return ()
        return (*(component.folder for component in self.encoder_components), self.llm)

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

    def engine_rows(self, num_candidates: int) -> dict[str, int]:
        """{engine: rows it runs} for one request of `num_candidates`, in call order; each engine is
        called once. The text encoder runs the prompt once and the winner's stages one row; the
        rest run every generated candidate (candidate 0 alone without a verifier)."""
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
        return tuple(self.engine_rows(1))


MODES: dict[str, VerifierMode] = {
    mode.name: mode
    for mode in (
        # VHS: an MLP connector on the DiT hidden states after block l*.
        VerifierMode(
            "vhs",
            reads=DIT_PREFIX,
            visual_encoder=CONNECTOR,
            llm=LLM,
            encoder_input="hidden_states",
            encoder_components=(Component("connector", "vhs.verifier", "MLPConnector"),),
        ),
        # Baseline "MLLM with CLIP": decode every candidate, CLIP vision tower + connector.
        VerifierMode(
            "clip",
            reads=VAE_DECODER,
            visual_encoder=CLIP_VISION,
            llm=CLIP_LLM,
            encoder_input="images",
            encoder_components=(
                Component("clip_vision", "transformers", "CLIPVisionModel"),
                Component("clip_connector", "vhs.verifier", "MLPConnector"),
            ),
            encoder_class=("vhs.verifier", "ClipVisualEncoder"),
        ),
        # Baseline "MLLM with AE": a connector on the autoencoder latent z_0, one token per latent pixel.
        VerifierMode(
            "latent",
            reads=DIT_SUFFIX,
            visual_encoder=LATENT_CONNECTOR,
            llm=LATENT_LLM,
            encoder_input="denoised_latents",
            encoder_components=(Component("latent_connector", "vhs.verifier", "MLPConnector"),),
            encoder_class=("vhs.verifier", "LatentVisualEncoder"),
        ),
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


def verifier_components() -> dict[str, Component]:
    """{folder: Component} of every verifier-folder part of the table: the visual encoders'
    components and the LLMs, in table order (a folder shared by two modes appears once)."""
    components = {}
    for mode in MODES.values():
        for component in mode.encoder_components:
            components.setdefault(component.folder, component)
        if mode.verifies:
            components.setdefault(mode.llm, Component(mode.llm, LLM_LIBRARY, LLM_CLASS))
    return components


def mode_of_encoder(engine: str) -> VerifierMode:
    """The mode whose visual encoder is `engine` (KeyError when none is)."""
    for mode in MODES.values():
        if mode.visual_encoder == engine:
            return mode
    raise KeyError(f"no mode of the table has the visual encoder {engine!r}")


def table_entries(names: tuple[str, ...]) -> list[dict]:
    """The table entries of modes `names`, as plain data (the exporter writes them in the manifest)."""
    return [asdict(MODES[name]) for name in names]


def adopt_table_entries(entries: list[dict]) -> None:
    """Add the modes a manifest serves that this table lacks (a verifier kind registered where the
    repository was exported); an entry that differs from this table's is refused (ValueError): the
    repository was exported by other code."""
    for entry in entries:
        mode = VerifierMode.from_dict(entry)
        known = MODES.setdefault(mode.name, mode)
        if known != mode:
            raise ValueError(
                f"mode {mode.name!r} of the manifest is {mode}, this code's is {known}: re-export the "
                "model repository"
            )
