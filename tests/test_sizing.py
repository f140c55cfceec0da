"""Sizing sana-sprint for one 80 GB GPU from the published shapes (export/sizing.py), and the
orchestrator's chunking of a call larger than an engine's max batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fakes import FakeTensor

from vhs.engine_names import DIT_PREFIX, LLM, TEXT_ENCODER, VAE_DECODER
from vhs.export.sizing import GIB, GPU_BYTES, activation_peak, memory_table, needed_batch, pool_bytes
from vhs.presets.sana_sprint import ENGINE_MAX_BATCH, MAX_CANDIDATES, sana_sprint_config
from vhs.runtime.orchestrator import BLSEngineRunner

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def table():
    rows, parts = memory_table()
    return {row.name: row for row in rows}, parts


@pytest.mark.slow  # sizes the published models
def test_the_published_engines_fit_one_80_gb_gpu_with_the_recorded_limits(table):
    rows, parts = table
    assert parts["engines"] + parts["pool"] + parts["contexts"] + parts["free_margin"] <= GPU_BYTES
    limited = {name: row.max_batch for name, row in rows.items() if row.max_batch < needed_batch(name)}
    # The preset records what the computation gives: only the DC-AE decoder is limited.
    assert limited == ENGINE_MAX_BATCH
    assert sana_sprint_config("g", "v").max_batch(VAE_DECODER) == ENGINE_MAX_BATCH[VAE_DECODER]
    assert sana_sprint_config("g", "v").max_batch(DIT_PREFIX) == MAX_CANDIDATES


@pytest.mark.slow  # sizes the published models
def test_the_table_is_the_published_models(table):
    rows, _ = table
    # Gemma-2-2B in fp32 (the policy's text encoder for fp16), 2.61 B parameters.
    assert rows[TEXT_ENCODER].precision == "fp32" and 2.6e9 < rows[TEXT_ENCODER].parameters < 2.62e9
    assert 1.55e9 < rows[DIT_PREFIX].parameters + rows["dit_suffix"].parameters < 1.65e9  # SANA 1.6B
    assert 4.9e8 < rows[LLM].parameters < 5.0e8  # Qwen2.5-0.5B without its (tied) head
    # The DC-AE decoder at 1024 px: 128 channels x 1024 x 1024 x fp32 = 0.5 GiB per tensor, several alive.
    assert rows[VAE_DECODER].activation_bytes_per_row > 4 * 0.5 * GIB
    assert rows[VAE_DECODER].activation_bytes_per_row > 5 * max(
        row.activation_bytes_per_row for name, row in rows.items() if name != VAE_DECODER
    )


def test_the_helm_pool_is_the_computed_pool():
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "vhs-triton" / "values.yaml").read_text())
    assert values["cudaMemoryPoolBytes"] == pool_bytes()
    assert f"CUDA_MEMORY_POOL_BYTES={pool_bytes()}" in (ROOT / "deploy" / "Dockerfile").read_text()


def test_activation_peak_counts_what_is_alive_at_once():
    class TwoTemporaries(torch.nn.Module):
        def forward(self, x):
            a = x * 2  # 4 MiB
            b = a + 1  # 4 MiB, a still alive
            del a
            return b.sum()

    x = torch.zeros(1024, 1024, device="meta")  # 4 MiB
    assert activation_peak(TwoTemporaries(), {"x": x}) == 3 * 4 * 2**20  # input + a + b at once


class Recorder:
    """pb_utils with one engine that doubles its input and refuses batches over its limit."""

    def __init__(self, limit):
        self.limit, self.batches = limit, []
        outer = self

        Tensor = FakeTensor

        class Response:
            def __init__(self, tensors):
                self.tensors = tensors

            def has_error(self):
                return False

        class Request:
            def __init__(self, model_name, requested_output_names, inputs, parameters=None):
                self.inputs = inputs

            def exec(self):
                (tensor,) = self.inputs
                rows = tensor.as_numpy()
                assert len(rows) <= outer.limit, "Triton refuses a batch over max_batch_size"
                outer.batches.append(len(rows))
                return Response([Tensor("images", rows * 2)])

        self.Tensor, self.InferenceRequest = Tensor, Request

    def get_output_tensor_by_name(self, response, name):
        return next(t for t in response.tensors if t.name() == name)


def test_a_call_over_an_engines_max_batch_is_sent_in_chunks():
    spec = {"inputs": [{"name": "latents", "dtype": "float32", "shape": [-1, 2]}]}
    spec["outputs"] = [{"name": "images", "dtype": "float32", "shape": [-1, 2]}]
    pb_utils = Recorder(limit=8)
    runner = BLSEngineRunner(pb_utils, {VAE_DECODER: {**spec, "max_batch_size": 8}})
    latents = np.arange(32, dtype=np.float32).reshape(16, 2)
    outputs = runner(VAE_DECODER, latents=latents, unrelated=np.zeros(3))
    np.testing.assert_array_equal(outputs["images"], latents * 2)
    assert pb_utils.batches == [8, 8]
    runner(VAE_DECODER, latents=latents[:5])
    assert pb_utils.batches == [8, 8, 5]
    unlimited = BLSEngineRunner(Recorder(limit=16), {VAE_DECODER: spec})
    np.testing.assert_array_equal(unlimited(VAE_DECODER, latents=latents)["images"], latents * 2)
