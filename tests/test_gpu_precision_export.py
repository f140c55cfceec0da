"""The precision policy in `vhs-export` for the GPU backends, exercised on this CPU machine: the
onnxruntime_gpu repository serves each engine's graph with the policy's casts written in, after the
reduced-precision graph was checked against fp32 on the example inputs; a precision a backend cannot
serve is refused, never replaced (bf16 on onnxruntime_gpu, fp16 on the CPU backends)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from vhs.export.cli import main as export_main
from vhs.export.precision import run_graph


@pytest.fixture(scope="module")
def fp16_repository(tmp_path_factory):
    output = tmp_path_factory.mktemp("export") / "tiny-fp16"
    argv = ["--preset", "tiny-random", "--output", str(output), "--backend", "onnxruntime_gpu"]
    assert export_main([*argv, "--precision", "fp16"]) == 0
    return output


def cast_targets(model):
    return [
        helper.get_attribute_value(a) for n in model.graph.node if n.op_type == "Cast" for a in n.attribute
    ]


@pytest.mark.slow  # exports a repository
def test_each_engine_carries_the_policy_and_its_check(fp16_repository):
    manifest = json.loads((fp16_repository / "manifest.json").read_text())
    engines = manifest["engines"]
    assert engines["vae_decoder"]["precision"] == "fp32" and "precision_policy" not in engines["vae_decoder"]
    assert engines["text_encoder"]["precision"] == "fp32"
    for name in ("dit_prefix", "dit_suffix", "connector", "llm"):
        assert engines[name]["precision"] == "fp16"
        policy = engines[name]["precision_policy"]
        assert policy["fp32_nodes"] > 0 and policy["reduced_nodes"] > 0
        assert policy["max_abs_error_vs_fp32"] < 0.05
    served = onnx.load(str(fp16_repository / "model_repository" / "dit_prefix" / "1" / "model.onnx"))
    assert TensorProto.FLOAT16 in cast_targets(served)
    assert [i.type.tensor_type.elem_type for i in served.graph.input if i.name == "noise"] == [
        TensorProto.FLOAT
    ]
    vae = onnx.load(str(fp16_repository / "model_repository" / "vae_decoder" / "1" / "model.onnx"))
    assert TensorProto.FLOAT16 not in cast_targets(vae)
    config = (fp16_repository / "model_repository" / "dit_prefix" / "config.pbtxt").read_text()
    assert "KIND_GPU" in config and "tensorrt" not in config  # ONNX Runtime's CUDA provider, as typed


@pytest.mark.slow  # exports a repository
def test_the_served_connector_is_typed_fp16_where_the_policy_says_and_runs(fp16_repository):
    """The connector's typed graph: fp16 operands for its two weight GEMMs, fp32 around them. (ONNX
    Runtime's CPU provider runs it too, upcasting what it has no fp16 kernel for: only the CUDA
    provider computes in fp16, `make gpu-smoke` compares that.)"""
    served = fp16_repository / "model_repository" / "connector" / "1" / "model.onnx"
    original = fp16_repository / "onnx" / "connector.onnx"
    typed = onnx.shape_inference.infer_shapes(onnx.load(str(served)))
    types = {v.name: v.type.tensor_type.elem_type for v in [*typed.graph.value_info, *typed.graph.input]}
    types |= {i.name: i.data_type for i in typed.graph.initializer}
    matmuls = [n for n in typed.graph.node if n.op_type == "MatMul"]
    assert len(matmuls) == 2 and all(types[i] == TensorProto.FLOAT16 for n in matmuls for i in n.input)
    width = onnx.load(str(original)).graph.input[0].type.tensor_type.shape.dim[2].dim_value
    feed = {"hidden_states": np.random.default_rng(0).standard_normal((2, 64, width)).astype(np.float32)}
    expected, actual = run_graph(onnx.load(str(original)), feed), run_graph(onnx.load(str(served)), feed)
    (name,) = expected
    assert np.abs(actual[name] - expected[name]).max() < 1e-2 * np.abs(expected[name]).max()


@pytest.mark.parametrize(
    ("backend", "precision", "message"),
    [
        ("onnxruntime_gpu", "bf16", "--precision bf16 is not available with --backend onnxruntime_gpu"),
        ("python", "fp16", "--precision fp16 is not available with --backend python"),
    ],
)
def test_a_precision_the_backend_cannot_serve_is_refused(tmp_path, capsys, backend, precision, message):
    argv = ["--preset", "tiny-random", "--output", str(tmp_path / "out"), "--backend", backend]
    assert export_main([*argv, "--precision", precision]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
