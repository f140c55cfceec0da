"""A copy of an exported model repository whose configs differ in one setting: what a re-export with
another flag (`vhs-export --max-queue-delay-us ...`, `--orchestrator-instances ...`) would write,
without exporting again.

    with variant(repository, with_queue_delay(2000), with_orchestrator_instances(2)) as copy: ...
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vhs import protocol as P

Edit = Callable[[mc.ModelConfig], None]  # changes one model's config in place (every model's is passed)


def write_variant(repository: Path, copy: Path, *edits: Edit) -> Path:
    """Copy `repository` to `copy` and apply `edits` to every model's config."""
    shutil.copytree(repository, copy)
    for config_path in sorted(copy.glob("*/config.pbtxt")):
        config = text_format.Parse(config_path.read_text(), mc.ModelConfig())
        for edit in edits:
            edit(config)
        config_path.write_text(text_format.MessageToString(config))
    return copy


@contextlib.contextmanager
def variant(repository: Path, *edits: Edit) -> Iterator[Path]:
    """`write_variant` into a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="repository-variant-") as scratch:
        yield write_variant(repository, Path(scratch) / "model_repository", *edits)


def with_queue_delay(delay_us: int) -> Edit:
    """Every engine's dynamic-batcher queue delay (the orchestrator's batcher only holds its queue policy)."""

    def edit(config: mc.ModelConfig) -> None:
        if config.name != P.ORCHESTRATOR_MODEL:
            config.dynamic_batching.max_queue_delay_microseconds = delay_us

    return edit


def with_orchestrator_instances(count: int) -> Edit:
    """The `vhs` model's instance count (the engines' queue bound follows it, as the exporter writes)."""
    from vhs.export.repository import ENGINE_QUEUE_PER_ORCHESTRATOR

    def edit(config: mc.ModelConfig) -> None:
        if config.name == P.ORCHESTRATOR_MODEL:
            config.instance_group[0].count = count
        else:
            config.dynamic_batching.default_queue_policy.max_queue_size = (
                ENGINE_QUEUE_PER_ORCHESTRATOR * count
            )

    return edit


def without_warmup(config: mc.ModelConfig) -> None:
    """No `model_warmup` (only engines have one)."""
    del config.model_warmup[:]
