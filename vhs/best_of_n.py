"""Best-of-N generation as a sequence of engine calls: the one orchestration code path.

`BestOfN.steps(request)` is a generator: it yields one `EngineCall(engine, inputs)` at a time and
is sent back that engine's outputs. It holds the logic; a driver does the calling:

    run_steps(steps, run)               a plain loop: PyTorch modules (the reference pipeline), ONNX
                                        Runtime in process, the Triton orchestrator's BLS `exec()`
    await run_steps_async(steps, run)   awaits each call: BLS `async_exec()`, so the requests of one
                                        `execute` can have their engine calls in flight together

The steps, for a request in mode m (`vhs.modes.MODES[m]`):

    1. encode the prompt once (shared by all N candidates; tokenized during validation)
    2. draw the noise of candidates 0..N-1 from (seed, i)
    3. run every candidate through the generation chain as far as the stage m's verifier reads
    4. score the candidates: m's visual encoder, then m's LLM (yes/no question)
    5. select the best one (candidate 0 without a verifier)
    6. run the rest of the chain (DiT suffix, VAE decoder) on the winner only

Engine inputs are numpy arrays; what an engine returns may be numpy or torch tensors (on a GPU they
stay on the device): this code only slices rows and reads the N scores and the final image back.
An engine is handed every tensor known about the candidates and takes the ones it declares.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine_names import TEXT_ENCODER
from .modes import GENERATION_CHAIN, MODES
from .noise import candidate_noise
from .prompting import PromptTokens
from .request import GenerationRequest

Tensors = dict[str, Any]
# run(engine_name, **inputs) -> {output_name: array}; the async form returns an awaitable of that.
RunEngine = Callable[..., Tensors]
RunEngineAsync = Callable[..., Awaitable[Tensors]]


@dataclass(frozen=True)
class EngineCall:
    """One step of a request: run `engine` on `inputs` (all rows in one batch)."""

    engine: str
    inputs: Tensors


@dataclass
class GenerationOutput:
    image: np.ndarray  # (H, W, 3) uint8, the selected candidate
    scores: np.ndarray  # (N,) float32 P(yes); (0,) in a mode without a verifier
    selected: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    candidate_images: np.ndarray | None = None  # (N, H, W, 3) uint8 when requested
    request_ms: float | None = None  # the served request's whole time in the orchestrator, when measured


Steps = Generator[EngineCall, Tensors, GenerationOutput]


def to_uint8_images(images: np.ndarray) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8, rounding as diffusers' `numpy_to_pil` does."""
    return (images.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)


def to_host(array: Any) -> np.ndarray:
    """A numpy array or a (possibly device) torch tensor -> numpy on the host."""
    return np.asarray(array.cpu() if hasattr(array, "cpu") else array)


class BestOfN:
    """The step sequence of a best-of-N request, independent of how engines are called."""

    def __init__(self, latent_shape: tuple[int, int, int], max_timesteps: float, guidance_scale: float):
        """latent_shape: (C, h, w) of one candidate's noise; max_timesteps and guidance_scale: the
        single step's TrigFlow time and SANA-Sprint's embedded guidance (from the preset)."""
        self.latent_shape = latent_shape
        self.max_timesteps = max_timesteps
        self.guidance_scale = guidance_scale

    def steps(self, request: GenerationRequest, return_candidates: bool = False) -> Steps:
        """The engine calls of one validated request; the generator's return value is its output.

        return_candidates: also decode every candidate (a debugging aid, outside the timed stages).
        """
        mode = MODES[request.mode]
        timings_ms = {"tokenize": request.tokenize_ms}
        # Without a verifier the answer is candidate 0, which depends only on (seed, 0): generate it alone.
        candidates = list(range(mode.generated_candidates(request.num_candidates)))
        tokens = request.tokens

        # 1. Encode the prompt once; every candidate shares the embeddings and the question.
        text = yield from _timed_call(
            timings_ms, TEXT_ENCODER, input_ids=tokens.input_ids, attention_mask=tokens.attention_mask
        )

        # 2-3. Noise of each candidate, a function of (seed, i) only; the chain up to what the verifier reads.
        state = self.initial_state(request.seed, candidates, text["prompt_embeds"], tokens)
        for stage in mode.stages_for_every_candidate:
            state |= yield from _timed_call(timings_ms, stage, **state)

        # 4-5. Score every candidate with the mode's verifier and select the best one.
        if mode.verifies:
            visual = yield from _timed_call(timings_ms, mode.visual_encoder, **state)
            shared = [0] * len(candidates)
            question = {
                "question_ids": tokens.question_ids[shared],
                "question_length": tokens.question_length[shared],
            }
            scored = yield from _timed_call(timings_ms, mode.llm, **visual, **question)
            scores = to_host(scored["yes_probability"]).astype(np.float32)
            selected = int(np.argmax(scores))
        else:
            scores, selected = np.zeros(0, dtype=np.float32), 0

        # 6. The rest of the chain for the winner only.
        winner = {name: tensor[[selected]] for name, tensor in state.items()}
        for stage in mode.stages_for_the_winner:
            winner |= yield from _timed_call(timings_ms, stage, **winner)
        image = to_uint8_images(to_host(winner["images"]))[0]

        candidate_images = None
        if return_candidates:
            candidate_images = yield from self._decode_every_candidate(request, text["prompt_embeds"])
        return GenerationOutput(image, scores, selected, timings_ms, candidate_images)

    def initial_state(
        self, seed: int, candidates: list[int], prompt_embeds: Any, tokens: PromptTokens
    ) -> Tensors:
        """The DiT prefix's inputs for `candidates` (numpy; prompt_embeds as given); the chain adds
        each stage's outputs to this state.

        prompt_embeds: (1, S, width), the text encoder's output, shared by every candidate.
        """
        shared = [0] * len(candidates)  # repeats the batch-1 prompt tensors once per candidate
        return {
            "noise": candidate_noise(seed, candidates, self.latent_shape),
            "prompt_embeds": prompt_embeds[shared],
            "prompt_attention_mask": tokens.prompt_attention_mask[shared],
            "timestep": np.full((len(candidates),), self.max_timesteps, dtype=np.float32),
            "guidance": np.full((len(candidates),), self.guidance_scale, dtype=np.float32),
        }

    def _decode_every_candidate(self, request: GenerationRequest, prompt_embeds: Any) -> Steps:
        """All N candidates through the whole chain, untimed: (N, H, W, 3) uint8."""
        candidates = list(range(request.num_candidates))
        state = self.initial_state(request.seed, candidates, prompt_embeds, request.tokens)
        for stage in GENERATION_CHAIN:
            state |= yield EngineCall(stage, state)
        return to_uint8_images(to_host(state["images"]))


def _timed_call(timings_ms: dict[str, float], engine: str, **inputs) -> Steps:
    """Yield one engine call and add the time until its outputs come back to `timings_ms[engine]`."""
    start = time.perf_counter()
    outputs = yield EngineCall(engine, inputs)
    timings_ms[engine] = timings_ms.get(engine, 0.0) + (time.perf_counter() - start) * 1e3
    return outputs


def run_steps(steps: Steps, run: RunEngine) -> GenerationOutput:
    """The sync driver: run each engine call with `run(engine, **inputs)` as it comes."""
    try:
        call = next(steps)
        while True:
            call = steps.send(run(call.engine, **call.inputs))
    except StopIteration as finished:
        return finished.value


async def run_steps_async(steps: Steps, run: RunEngineAsync) -> GenerationOutput:
    """The async driver: await `run(engine, **inputs)` for each call; other requests' steps run meanwhile."""
    try:
        call = next(steps)
        while True:
            call = steps.send(await run(call.engine, **call.inputs))
    except StopIteration as finished:
        return finished.value
