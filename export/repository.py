"""Write the Triton model repository: one folder per model, `config.pbtxt` + `1/`.

Every config is built as Triton's own `ModelConfig` protobuf from the manifest and printed in
protobuf text format, so names, dtypes and shapes come from the exported graphs and cannot drift.
What differs between engine backends is in `export/backends.py`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vhs import protocol as P
from vhs.modes import MODES
from vhs.prompting import render_question_chat, save_question_chat
from vhs.runtime.manifest import LLM_TOKENIZER_DIR, MANIFEST_FILE, TEXT_TOKENIZER_DIR

from .backends import MODEL_REPOSITORY_SOURCE, Backend

ORCHESTRATOR_MODEL_PY = MODEL_REPOSITORY_SOURCE / "vhs" / "1" / "model.py"

# Queue policy (docs/operations.md). The vhs model's queue is the service's back-pressure: with
# ORCHESTRATOR_MAX_QUEUE requests waiting, the next one is refused at once with UNAVAILABLE
# instead of waiting without bound. 16 is about half a second of work at the saturated rate that
# `make bench` and `make bench-load` measure for N = 4 on the 2-core development machine (~35
# requests/s); a request that waited ORCHESTRATOR_QUEUE_TIMEOUT_US (or the client's own `timeout`,
# which overrides it) is dropped from the queue. An engine has at most one BLS request in flight
# per orchestrator instance, so its bound only catches direct callers.
ORCHESTRATOR_MAX_QUEUE = 16
ORCHESTRATOR_QUEUE_TIMEOUT_US = 5_000_000
ENGINE_QUEUE_PER_ORCHESTRATOR = 4

TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
    "object": "TYPE_STRING",
}


def _tensor(message_type, name: str, dtype: str, dims: list[int], optional: bool = False):
    tensor = message_type(name=name, data_type=mc.DataType.Value(TRITON_DTYPES[dtype]), dims=dims or [1])
    if not dims:  # one value per batch row: Triton needs dims [1], the graph sees shape (batch,)
        tensor.reshape.shape[:] = []
    if optional:
        tensor.optional = True
    return tensor


@dataclass(frozen=True)
class Scheduling:
    """How many instances of each model Triton runs, and how long the dynamic batcher waits.

    Chosen by measurement on the 2-core development machine (docs/performance.md): four orchestrator
    instances keep four concurrent requests in flight (Triton hands the `vhs` model one request per
    `execute`), so their engine calls meet in the engines' queues and merge; a queue delay of 500 us
    merges more of them at concurrency 4 than none (0.70 against 0.76 dit_prefix executions per
    request) and costs concurrency 1 no measurable time, 2000 us merges most and costs concurrency 1.
    """

    engine_instances: int = 1
    orchestrator_instances: int = 4
    max_queue_delay_us: int = 500


def warmup_batch_sizes(default_candidates: int, max_batch_size: int) -> tuple[int, ...]:
    """The batches an engine is warmed up with: one row (the winner's stages, the prompt), the
    default N and the largest batch (which sizes ONNX Runtime's memory arena)."""
    return tuple(sorted({1, min(default_candidates, max_batch_size), max_batch_size}))


def warmup_samples(
    engine: dict, batch_sizes: tuple[int, ...], fixed_dims: dict[str, list[int]]
) -> list[mc.ModelWarmup]:
    """Triton `model_warmup` samples: zero-filled inputs at each of `batch_sizes`, run while the model
    loads, so the first client requests do not pay ONNX Runtime's (or TensorRT's) first-run costs.

    fixed_dims: dims (without the batch axis) for inputs whose graph shape is dynamic beyond the batch
    axis (an LLM's visual-token count, set by its visual encoder).
    """
    samples = []
    for batch_size in batch_sizes:
        sample = mc.ModelWarmup(name=f"zeros_batch_{batch_size}", batch_size=batch_size)
        for tensor in engine["inputs"]:
            sample.inputs[tensor["name"]].CopyFrom(
                mc.ModelWarmup.Input(
                    data_type=mc.DataType.Value(TRITON_DTYPES[tensor["dtype"]]),
                    dims=fixed_dims.get(tensor["name"], tensor["shape"][1:]) or [1],
                    zero_data=True,
                )
            )
        samples.append(sample)
    return samples


def visual_token_dims(manifest: dict, llm: str) -> dict[str, list[int]]:
    """{"visual_tokens": [tokens, width]} of the LLM engine `llm`: what its mode's visual encoder
    returns (the LLM graph takes any token count); {} for an engine that is no mode's LLM."""
    for mode in MODES.values():
        if mode.llm == llm and mode.visual_encoder in manifest["engines"]:
            outputs = manifest["engines"][mode.visual_encoder]["outputs"]
            return {output["name"]: output["shape"][1:] for output in outputs}
    return {}


def engine_config(
    name: str,
    engine: dict,
    backend: Backend,
    max_batch_size: int,
    scheduling: Scheduling,
    warmup: Sequence[mc.ModelWarmup] = (),
) -> mc.ModelConfig:
    """The config of one engine model; shapes in the manifest include the batch axis, Triton's do not.

    warmup: `model_warmup` samples (`warmup_samples`), run by Triton before the model is ready.
    """
    config = mc.ModelConfig(name=name, max_batch_size=max_batch_size)
    backend.configure(config, engine.get("precision", "fp32"))
    config.input.extend(
        _tensor(mc.ModelInput, t["name"], t["dtype"], t["shape"][1:]) for t in engine["inputs"]
    )
    config.output.extend(
        _tensor(mc.ModelOutput, t["name"], t["dtype"], t["shape"][1:]) for t in engine["outputs"]
    )
    config.dynamic_batching.max_queue_delay_microseconds = scheduling.max_queue_delay_us
    config.dynamic_batching.default_queue_policy.max_queue_size = (
        ENGINE_QUEUE_PER_ORCHESTRATOR * scheduling.orchestrator_instances
    )
    config.instance_group.append(
        mc.ModelInstanceGroup(count=scheduling.engine_instances, kind=backend.instance_kind)
    )
    config.model_warmup.extend(warmup)
    return config


def orchestrator_config(image_shape: list[int], instances: int) -> mc.ModelConfig:
    """The `vhs` BLS model: the contract of vhs/protocol.py, one prompt per request (no batching)."""
    height, width, channels = image_shape
    config = mc.ModelConfig(name=P.ORCHESTRATOR_MODEL, backend="python", max_batch_size=0)
    config.input.extend(
        [
            _tensor(mc.ModelInput, P.PROMPT, "object", [1]),
            _tensor(mc.ModelInput, P.NUM_CANDIDATES, "int32", [1], optional=True),
            _tensor(mc.ModelInput, P.SEED, "int64", [1], optional=True),
            _tensor(mc.ModelInput, P.MODE, "object", [1], optional=True),
            _tensor(mc.ModelInput, P.BUDGET_MS, "float32", [1], optional=True),
        ]
    )
    config.output.extend(
        [
            _tensor(mc.ModelOutput, P.IMAGE, "uint8", [height, width, channels]),
            _tensor(mc.ModelOutput, P.SCORES, "float32", [-1]),
            _tensor(mc.ModelOutput, P.SELECTED, "int32", [1]),
            _tensor(mc.ModelOutput, P.TIMINGS, "object", [1]),
            _tensor(mc.ModelOutput, P.CANDIDATE_IMAGES, "uint8", [-1, height, width, channels]),
            _tensor(mc.ModelOutput, P.NUM_CANDIDATES_USED, "int32", [1]),
            _tensor(mc.ModelOutput, P.PREDICTED_MS, "float32", [1]),
            _tensor(mc.ModelOutput, P.REQUEST_MS, "float32", [1]),
        ]
    )
    # One prompt per request (max_batch_size 0): the dynamic batcher is there for its queue policy,
    # which also drops requests the client cancelled while they waited.
    policy = config.dynamic_batching.default_queue_policy
    policy.max_queue_size = ORCHESTRATOR_MAX_QUEUE
    policy.timeout_action = mc.ModelQueuePolicy.REJECT
    policy.default_timeout_microseconds = ORCHESTRATOR_QUEUE_TIMEOUT_US
    policy.allow_timeout_override = True
    # Several instances let concurrent requests reach the engines together, where the dynamic
    # batcher merges their candidates.
    config.instance_group.append(mc.ModelInstanceGroup(count=instances, kind=mc.ModelInstanceGroup.KIND_CPU))
    # One warm-up request (an empty PROMPT) per instance before the model is ready: the instance
    # calibrates its BUDGET_MS latency model through the engines (Orchestrator.warm_up), so no
    # client's budget request pays for a calibration.
    warmup = config.model_warmup.add(name="calibrate_latency_model", batch_size=1, count=1)
    warmup.inputs[P.PROMPT].CopyFrom(mc.ModelWarmup.Input(data_type=mc.TYPE_STRING, dims=[1], zero_data=True))
    return config


def write_config(config: mc.ModelConfig, model_folder: Path) -> None:
    model_folder.mkdir(parents=True, exist_ok=True)
    (model_folder / "config.pbtxt").write_text(text_format.MessageToString(config))


def place_artifact(source: Path, target: Path) -> None:
    """Put a graph/plan (file or directory form) into a version folder: hard links where the file
    system allows (a 10 GB graph is not duplicated on disk), copies elsewhere."""
    if source.is_dir():
        shutil.copytree(source, target, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, target)


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_repository(
    repository: Path,
    manifest: dict,
    backend: Backend,
    graph_files: dict[str, Path],
    tokenizers: dict[str, object],
    scheduling: Scheduling,
) -> None:
    """Write every model folder. `graph_files[name]` is the graph or plan to place in `<name>/1/`;
    `tokenizers` maps the orchestrator's tokenizer folder names to objects with `save_pretrained`."""
    for name, engine in manifest["engines"].items():
        folder = repository / name
        max_batch_size = engine.get("max_batch_size", manifest["max_batch_size"])
        batch_sizes = warmup_batch_sizes(manifest["preset"]["default_candidates"], max_batch_size)
        warmup = warmup_samples(engine, batch_sizes, visual_token_dims(manifest, name))
        write_config(engine_config(name, engine, backend, max_batch_size, scheduling, warmup), folder)
        (folder / "1").mkdir(parents=True, exist_ok=True)
        place_artifact(graph_files[name], folder / "1" / backend.graph_file)
        if backend.model_py is not None:
            shutil.copy2(backend.model_py, folder / "1" / "model.py")

    orchestrator = repository / P.ORCHESTRATOR_MODEL
    write_config(
        orchestrator_config(manifest["image_shape"], scheduling.orchestrator_instances), orchestrator
    )
    (orchestrator / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy2(ORCHESTRATOR_MODEL_PY, orchestrator / "1" / "model.py")
    (orchestrator / "1" / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    for folder_name in (TEXT_TOKENIZER_DIR, LLM_TOKENIZER_DIR):
        tokenizers[folder_name].save_pretrained(orchestrator / "1" / folder_name)
    # The runtime reads the tokenizers with `tokenizers` alone: the chat template is rendered here.
    save_question_chat(
        orchestrator / "1" / LLM_TOKENIZER_DIR, render_question_chat(tokenizers[LLM_TOKENIZER_DIR])
    )
