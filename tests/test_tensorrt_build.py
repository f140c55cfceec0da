"""What a TensorRT plan is built from, tested without TensorRT: precision per engine, the fp32 layers of
an fp16 build, optimisation profiles from the real batch sizes, timing cache and optimisation level
as polygraphy receives them, and the plan-vs-ONNX-Runtime comparison (with a stand-in runner)."""

from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

from vhs.engine_names import (
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
from vhs.export.graphs import graph_io
from vhs.export.tensorrt import (
    compare_with_onnxruntime,
    engine_precision,
    fp32_nodes,
    layers_of_nodes,
    opt_batch,
    optimization_profile,
    plan_recipe,
    polygraphy_loaders,
)
from vhs.modes import all_engines


def test_the_vae_stays_fp32_and_other_engines_take_the_requested_precision():
    assert engine_precision(VAE_DECODER, "fp16") == "fp32"
    assert (
        engine_precision(TEXT_ENCODER, "fp16") == "fp32" and engine_precision(TEXT_ENCODER, "bf16") == "bf16"
    )
    assert engine_precision(DIT_PREFIX, "fp16") == "fp16"
    assert engine_precision(LLM, "bf16") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        engine_precision(LLM, "int4")


def test_opt_batch_is_what_each_engine_sees_in_vhs_mode():
    assert {name: opt_batch(name, 4) for name in all_engines()} == {
        TEXT_ENCODER: 1,
        DIT_PREFIX: 4,
        DIT_SUFFIX: 1,
        VAE_DECODER: 1,
        CONNECTOR: 4,
        CLIP_VISION: 4,
        LATENT_CONNECTOR: 4,
        LLM: 4,
        CLIP_LLM: 4,
        LATENT_LLM: 4,
    }


def test_profiles_cover_batch_1_to_max_with_the_opt_batch_and_every_token_count():
    inputs = [
        {"name": "visual_tokens", "dtype": "float32", "shape": [-1, -1, 896]},
        {"name": "question_length", "dtype": "int64", "shape": [-1]},
    ]
    profile = optimization_profile(inputs, 4, 8, {"visual_tokens": {1: (16, 64, 1024)}})
    assert profile["min"] == {"visual_tokens": [1, 16, 896], "question_length": [1]}
    assert profile["opt"] == {"visual_tokens": [4, 64, 896], "question_length": [4]}
    assert profile["max"] == {"visual_tokens": [8, 1024, 896], "question_length": [8]}
    with pytest.raises(ValueError, match="dynamic axis without bounds"):
        optimization_profile(inputs, 4, 8, {})
    with pytest.raises(ValueError, match=r"opt batch must be in \[1, 8\]"):
        optimization_profile(inputs, 9, 8, {"visual_tokens": {1: (16, 64, 1024)}})


def test_fp16_keeps_the_epsilon_sums_their_divisions_and_the_norm_statistics_in_fp32(exported_tiny):
    model = onnx.load(str(exported_tiny / "onnx" / f"{DIT_PREFIX}.onnx"))
    keep = set(fp32_nodes(model))
    tiny = {
        i.name
        for i in model.graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT
        and numpy_helper.to_array(i).size == 1
        and 0 < abs(numpy_helper.to_array(i).item()) < 1e-10
    }
    epsilon_adds = [n for n in model.graph.node if tiny & set(n.input)]
    # Sana's linear attention in blocks 0..l* (8 of them in the tiny preset's prefix).
    assert len(epsilon_adds) >= 8 and all(n.name in keep for n in epsilon_adds)
    sums = {o for n in epsilon_adds for o in n.output}
    divisions = [n for n in model.graph.node if sums & set(n.input)]
    assert divisions and all(n.op_type == "Div" and n.name in keep for n in divisions)
    assert all(n.name in keep for n in model.graph.node if n.op_type == "ReduceMean")
    # The policy (export/precision.py): only the weight GEMMs run in fp16; the linear attention's
    # activation x activation products stay fp32 with the rest.
    weights = {i.name for i in model.graph.initializer}
    gemms = [n for n in model.graph.node if n.op_type in ("MatMul", "Conv", "Gemm")]
    weight_gemms = [n for n in gemms if weights & set(n.input[:2])]
    products = [n for n in gemms if not weights & set(n.input[:2])]
    assert weight_gemms and not any(n.name in keep for n in weight_gemms)
    assert products and all(n.name in keep for n in products)


def test_the_recipe_reaches_polygraphy_as_asked(exported_tiny, tmp_path):
    onnx_path = exported_tiny / "onnx" / f"{DIT_SUFFIX}.onnx"
    inputs, _ = graph_io(onnx_path)
    profile = optimization_profile(inputs, opt_batch(DIT_SUFFIX, 4), 8, {})
    recipe = plan_recipe(DIT_SUFFIX, onnx_path, profile, "fp16", tmp_path / "timing.cache", 5)
    assert recipe.precision == "fp16" and recipe.fp32_nodes
    engine_bytes = polygraphy_loaders(onnx_path, recipe)
    config = engine_bytes._config
    assert config.fp16 and not config.bf16 and not config.tf32
    assert config.precision_constraints == "obey"
    assert config.builder_optimization_level == 5
    assert config.timing_cache_path == str(tmp_path / "timing.cache")
    assert engine_bytes.timing_cache_path == str(tmp_path / "timing.cache")
    (trt_profile,) = config.profiles
    noise = trt_profile["noise"]
    assert list(noise.min)[0] == 1 and list(noise.opt)[0] == 1 and list(noise.max)[0] == 8

    vae = plan_recipe(
        VAE_DECODER, exported_tiny / "onnx" / f"{VAE_DECODER}.onnx", profile, "fp16", tmp_path / "t"
    )
    assert vae.precision == "fp32" and vae.fp32_nodes == ()


@dataclass
class StandInLayer:
    name: str
    metadata: str = ""


def test_layers_are_found_by_the_onnx_node_in_their_metadata_or_by_name():
    network = [
        StandInLayer("add_eps", "[ONNX Layer: add_eps]"),
        StandInLayer("add_eps_1", "[ONNX Layer: add_eps]"),  # a second layer of the same node
        StandInLayer("node_mean_1", "[ONNX Layer: node_mean_1]"),
        StandInLayer("div"),
        StandInLayer("matmul", "[ONNX Layer: matmul]"),
    ]
    found = layers_of_nodes(network, ["add_eps", "div", "node_mean"])
    assert [layer.name for layer in found] == ["add_eps", "add_eps_1", "div"]


def connector_feed(batch):
    return {"hidden_states": np.random.default_rng(0).standard_normal((batch, 64, 16)).astype(np.float32)}


def test_plan_comparison_passes_an_equal_runner_and_fails_a_perturbed_one(exported_tiny, tmp_path):
    onnx_path = exported_tiny / "onnx" / f"{CONNECTOR}.onnx"
    same = OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["CPUExecutionProvider"]))
    accuracy = compare_with_onnxruntime(onnx_path, same, connector_feed(4), "fp32", 4)
    assert accuracy.passed and accuracy.max_abs_error == 0.0

    model = onnx.load(str(onnx_path))
    weight = max(model.graph.initializer, key=lambda i: numpy_helper.to_array(i).size)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
    perturbed_path = tmp_path / "perturbed.onnx"
    onnx.save(model, str(perturbed_path))
    perturbed = OnnxrtRunner(SessionFromOnnx(str(perturbed_path), providers=["CPUExecutionProvider"]))
    accuracy = compare_with_onnxruntime(onnx_path, perturbed, connector_feed(4), "fp16", 4)
    assert not accuracy.passed and accuracy.max_abs_error > 5e-2
