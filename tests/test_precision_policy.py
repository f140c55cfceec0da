"""The precision policy (export/precision.py) keeps every graph finite at magnitudes beyond fp16's
range, where fp16 without it overflows.

How the magnitudes are obtained (no published weight can be read here): tiny-random's own DiT and
text encoder are exported with a few weights scaled so that the fp32 graph reaches, in each place the
policy protects, values beyond 65504 -- the places where the published models sum many terms:

- Sana's linear attention: the published model sums `relu(k) v` over 1024 tokens and then 32
  channels, tiny-random over 64 and 8; the norm_q / norm_k weights (x4) and to_v (x30) put the missing
  terms into the values, so `V K^T` and `scores Q` reach ~4e6 (diffusers itself computes this
  product in fp32);
- the residual stream: every block's gates raised by 55 make the stream reach ~1e5 over the 8 blocks
  of the prefix; Sana's cross-attention query projection reads the stream without a norm in front;
- the norm statistics (mean of squares) then reach ~1e7;
- the text encoder: Gemma-family hidden states overflow fp16 (transformers issue 36822 for Gemma 3);
  its embedding table x1e4 makes tiny-random's Gemma-2 stream reach that range. The policy runs it in
  fp32 when fp16 is asked, in bf16 when bf16 is.

The published weights' own magnitudes are checked where they exist: `vhs-export` runs the same check
on the example inputs of the preset's weights before it writes a reduced-precision repository.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from vhs.engine_names import DIT_PREFIX, LLM, TEXT_ENCODER, VAE_DECODER
from vhs.engines import build_engine
from vhs.export.cleanup import clean_graph
from vhs.export.graphs import export_onnx
from vhs.export.precision import (
    FP16_LARGEST,
    activation_ranges,
    check_policy,
    emulate,
    engine_precision,
    fp32_nodes,
    mixed_precision_graph,
    reduced_nodes,
    run_graph,
    wide_gemms,
)
from vhs.presets import load_preset

QK_NORM_SCALE, VALUE_SCALE, GATE_SHIFT = 4.0, 30.0, 55.0
EMBEDDING_SCALE = 1e4
BEYOND_FP16 = 1e5


def export_scaled(name, preset, inputs, folder):
    path = export_onnx(name, build_engine(preset, name), inputs, folder, 18)
    clean_graph(path)
    return onnx.load(str(path))


@pytest.fixture(scope="module")
def scaled_dit(tmp_path_factory):
    """The tiny-random DiT prefix with the scaled weights, its feed and its fp32 activation ranges."""
    preset = load_preset("tiny-random", components=["transformer"])
    with torch.no_grad():
        for block in preset.transformer.transformer_blocks:
            block.attn1.norm_q.weight.mul_(QK_NORM_SCALE)
            block.attn1.norm_k.weight.mul_(QK_NORM_SCALE)
            block.attn1.to_v.weight.mul_(VALUE_SCALE)
            block.scale_shift_table[:, 2].add_(GATE_SHIFT)  # gate_msa
            block.scale_shift_table[:, 5].add_(GATE_SHIFT)  # gate_mlp
    rng = np.random.default_rng(0)
    channels, height, width = preset.latent_shape
    feed = {
        "noise": rng.standard_normal((2, channels, height, width)).astype(np.float32),
        "prompt_embeds": rng.standard_normal((2, 32, preset.transformer.config.caption_channels)).astype(
            np.float32
        ),
        "prompt_attention_mask": np.ones((2, 32), dtype=np.int64),
        "timestep": np.full((2,), 1.5708, dtype=np.float32),
        "guidance": np.full((2,), 4.5, dtype=np.float32),
    }
    inputs = {key: torch.from_numpy(value) for key, value in feed.items()}
    model = export_scaled(DIT_PREFIX, preset, inputs, tmp_path_factory.mktemp("scaled-dit"))
    return model, feed, activation_ranges(model, [feed])


@pytest.mark.slow  # runs scaled graphs in ONNX Runtime
def test_the_scaled_dit_reaches_beyond_fp16_where_the_policy_protects(scaled_dit):
    model, _, ranges = scaled_dit
    reduced = set(reduced_nodes(model))
    products = [n for n in model.graph.node if n.op_type == "MatMul" and n.name not in reduced]
    assert max(ranges[n.output[0]] for n in products) > BEYOND_FP16  # linear-attention products
    constants = {i.name for i in model.graph.initializer}
    residual_adds = [
        n
        for n in model.graph.node
        if n.op_type == "Add" and not constants & set(n.input) and len(n.input) == 2
    ]
    assert max(ranges[n.output[0]] for n in residual_adds) > 1.4 * FP16_LARGEST
    statistics = [n for n in model.graph.node if n.op_type in ("Pow", "ReduceMean")]
    assert max(ranges[n.output[0]] for n in statistics) > 100 * BEYOND_FP16


def previous_rule(model):
    """What `export/tensorrt.py` kept in fp32 before the policy: the norm statistics and the nodes
    around constants fp16 cannot hold (the epsilons)."""
    small = {
        i.name
        for i in model.graph.initializer
        if i.data_type == TensorProto.FLOAT
        and numpy_helper.to_array(i).size <= 16
        and (np.abs(numpy_helper.to_array(i)) < 2**-14).any()
        and (numpy_helper.to_array(i) != 0).any()
    }
    keep = {n.name for n in model.graph.node if n.op_type in ("Pow", "ReduceMean") or small & set(n.input)}
    sums = {o for n in model.graph.node if small & set(n.input) for o in n.output}
    return keep | {n.name for n in model.graph.node if sums & set(n.input)}


@pytest.mark.slow  # runs scaled graphs in ONNX Runtime
def test_fp16_without_the_policy_overflows(scaled_dit):
    model, feed, _ = scaled_dit
    assert not check_policy(model, feed, "fp16", fp32=[]).finite  # every node in fp16
    assert not check_policy(model, feed, "fp16", fp32=previous_rule(model)).finite
    # The node rule alone (every non-GEMM node fp32) is not enough either: the cross-attention query
    # projection reads the residual stream (~1e5) without a norm in front of it.
    assert not check_policy(model, feed, "fp16", fp32=fp32_nodes(model)).finite


@pytest.mark.slow  # runs scaled graphs in ONNX Runtime
def test_the_policy_keeps_the_dit_finite_and_close_to_fp32(scaled_dit):
    model, feed, ranges = scaled_dit
    wide = wide_gemms(model, ranges)
    assert wide, "the GEMMs that read the 1e5 stream are found on the example inputs"
    fp16 = check_policy(model, feed, "fp16")
    assert fp16.finite and fp16.passed, fp16.describe()
    assert fp16.max_abs_reference > FP16_LARGEST  # the outputs themselves are beyond fp16
    bf16 = check_policy(model, feed, "bf16")
    assert bf16.finite and bf16.passed, bf16.describe()
    # Nearly every weight GEMM still runs in fp16.
    assert len(wide) <= len(reduced_nodes(model)) // 4


@pytest.fixture(scope="module")
def scaled_text_encoder(tmp_path_factory):
    preset = load_preset("tiny-random", components=["text_encoder"])
    with torch.no_grad():
        preset.text_encoder.get_input_embeddings().weight.mul_(EMBEDDING_SCALE)
    tokens = preset.prompt_tokenizer("a photo of a red circle left of a blue square")
    feed = {"input_ids": tokens.input_ids[[0, 0]], "attention_mask": tokens.attention_mask[[0, 0]]}
    inputs = {key: torch.from_numpy(value) for key, value in feed.items()}
    return export_scaled(TEXT_ENCODER, preset, inputs, tmp_path_factory.mktemp("scaled-te")), feed


@pytest.mark.slow  # runs scaled graphs in ONNX Runtime
def test_the_text_encoder_runs_fp32_or_bf16_never_fp16(scaled_text_encoder):
    model, feed = scaled_text_encoder
    ranges = activation_ranges(model, [feed])
    # The stream is beyond fp16 (the attention-mask fill, ~3e38, is left out).
    assert max(value for value in ranges.values() if value < 1e30) > BEYOND_FP16
    assert engine_precision(TEXT_ENCODER, "fp16") == "fp32"
    assert engine_precision(TEXT_ENCODER, "bf16") == "bf16"
    assert engine_precision(VAE_DECODER, "bf16") == "fp32"
    assert engine_precision(LLM, "fp16") == "fp16"
    # All fp16 is silently wrong: the RMS norms' mean of squares overflows, 1/sqrt(inf) = 0, and the
    # embeddings come out finite and wrong.
    all_fp16 = check_policy(model, feed, "fp16", fp32=[])
    assert all_fp16.finite and not all_fp16.passed
    bf16 = check_policy(model, feed, "bf16")
    assert bf16.passed, bf16.describe()
    with pytest.raises(ValueError, match="precision must be one of"):
        engine_precision(LLM, "int8")


def small_graph():
    """x (2, 4) @ W (4, 3) -> + x @ W2 -> y: two weight GEMMs and a residual-style add."""
    rng = np.random.default_rng(1)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="gemm_1"),
        helper.make_node("MatMul", ["x", "w2"], ["b"], name="gemm_2"),
        helper.make_node("Add", ["a", "b"], ["y"], name="residual"),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [w1, w2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_emulation_rounds_and_overflows_like_fp16_and_the_served_graph_computes_in_it():
    model = small_graph()
    assert reduced_nodes(model) == ["gemm_1", "gemm_2"] and fp32_nodes(model) == ["residual"]
    x = np.full((2, 4), 1 / 3, dtype=np.float32)
    exact = run_graph(model, {"x": x})["y"]
    emulated = run_graph(emulate(model, "fp16", ["residual"]), {"x": x})["y"]
    assert 0 < np.abs(emulated - exact).max() < 1e-2  # rounded, not equal
    served = mixed_precision_graph(model, "fp16", ["residual"])
    casts = [n for n in served.graph.node if n.op_type == "Cast"]
    assert {helper.get_attribute_value(n.attribute[0]) for n in casts} == {
        TensorProto.FLOAT16,
        TensorProto.FLOAT,
    }
    np.testing.assert_allclose(run_graph(served, {"x": x})["y"], emulated, rtol=1e-3, atol=1e-3)
    big = np.full((2, 4), 3e4, dtype=np.float32)
    assert not np.isfinite(run_graph(emulate(model, "fp16", ["residual"]), {"x": big})["y"]).all()
    assert np.isfinite(run_graph(emulate(model, "bf16", ["residual"]), {"x": big})["y"]).all()
    ranges = activation_ranges(model, [{"x": big}])
    assert wide_gemms(model, ranges) == ["gemm_1", "gemm_2"]
    assert np.isfinite(run_graph(emulate(model, "fp16", fp32_nodes(model, ranges)), {"x": big})["y"]).all()
