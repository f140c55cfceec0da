"""Graph cleanup and the TensorRT-readiness check (no TensorRT needed): every exported graph of every
preset passes the checked-in support table, and the check catches what TensorRT's parser rejects."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from vhs.export.cleanup import clean_graph
from vhs.export.tensorrt_support import check_tensorrt_readiness, load_support_table
from vhs.modes import all_engines

EPSILON = 1e-15


@pytest.fixture(scope="module")
def table():
    return load_support_table()


@pytest.mark.slow  # exports every graph of two presets
@pytest.mark.parametrize("name", all_engines())
@pytest.mark.parametrize("preset", ["tiny-random", "shapes"])
def test_every_exported_graph_of_every_preset_is_tensorrt_ready(request, table, preset, name):
    folder = request.getfixturevalue("exported_tiny" if preset == "tiny-random" else "exported_shapes")
    assert check_tensorrt_readiness(folder / "onnx" / f"{name}.onnx", table) == []


def test_the_support_table_names_its_tensorrt_and_container(table):
    assert table.tensorrt_version.startswith("10.14.")
    assert table.container == "nvcr.io/nvidia/tritonserver:25.11-py3"
    assert not table.operators["SplitToSequence"]["supported"]
    assert table.operators["ReduceMean"]["initializer_inputs"] == {"1": "axes"}


def exporter_style_graph() -> onnx.ModelProto:
    """What torch's exporter writes: ReduceMean axes through Reshape(Constant), an aten.split as
    SplitToSequence + SequenceAt, and a linear-attention style `x / (y + 1e-15)`."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    nodes = [
        helper.make_node(
            "Constant", [], ["axes_flat"], value=numpy_helper.from_array(np.array([1], np.int64))
        ),
        helper.make_node(
            "Constant", [], ["axes_shape"], value=numpy_helper.from_array(np.array([1], np.int64))
        ),
        helper.make_node("Reshape", ["axes_flat", "axes_shape"], ["axes"], name="axes_reshape"),
        helper.make_node("ReduceMean", ["x", "axes"], ["mean"], name="mean", keepdims=1),
        helper.make_node(
            "Constant", [], ["split"], value=numpy_helper.from_array(np.array([2, 2], np.int64))
        ),
        helper.make_node("SplitToSequence", ["x", "split"], ["parts"], name="split", axis=1),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(np.array(1, np.int64))),
        helper.make_node("SequenceAt", ["parts", "zero"], ["left"], name="at0"),
        helper.make_node("SequenceAt", ["parts", "one"], ["right"], name="at1"),
        helper.make_node("Relu", ["right"], ["denominator"], name="relu"),
        helper.make_node(
            "Constant", [], ["eps"], value=numpy_helper.from_array(np.array(EPSILON, np.float32))
        ),
        helper.make_node("Add", ["denominator", "eps"], ["safe_denominator"], name="add_eps"),
        helper.make_node("Div", ["left", "safe_denominator"], ["ratio"], name="div"),
        helper.make_node("Mul", ["ratio", "mean"], ["y"], name="scale"),
    ]
    graph = helper.make_graph(nodes, "exporter_style", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def run(path, feed):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def test_cleanup_makes_an_exporter_graph_tensorrt_ready_and_keeps_it_equal(tmp_path, table):
    path = tmp_path / "graph.onnx"
    onnx.save(exporter_style_graph(), str(path))
    before = check_tensorrt_readiness(path, table)
    assert any("'mean' (ReduceMean): input 1 ('axes') must be an initializer" in p for p in before)
    assert any("(SplitToSequence): unsupported" in p for p in before)
    assert sum("(SequenceAt): unsupported" in p for p in before) == 2
    # A zero denominator row: only the epsilon keeps 0 / (0 + 1e-15) finite.
    feed = {"x": np.array([[1.0, 2.0, -3.0, 0.5], [0.0, 1.0, 0.0, 0.0]], np.float32)}
    expected = run(path, feed)

    result = clean_graph(path)
    assert check_tensorrt_readiness(path, table) == []
    assert result.op_counts["Split"] == 1 and "SequenceAt" not in result.op_counts
    np.testing.assert_array_equal(run(path, feed), expected)
    assert np.isfinite(expected).all()
    cleaned = onnx.load(str(path))
    epsilons = [
        numpy_helper.to_array(i) for i in cleaned.graph.initializer if i.data_type == TensorProto.FLOAT
    ]
    assert any(value.size == 1 and value == np.float32(EPSILON) for value in epsilons)


def single_node_model(node, inputs, outputs, initializers=()):
    graph = helper.make_graph([node], "one", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_the_check_names_each_rule_a_graph_breaks(table):
    tensor = helper.make_tensor_value_info
    resize = single_node_model(
        helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", mode="cubic"),
        [tensor("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [tensor("y", TensorProto.FLOAT, [1, 1, 4, 4])],
        [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")],
    )
    assert check_tensorrt_readiness(resize, table) == [
        "node 'up' (Resize): attribute 'mode' = 'cubic' not in ['nearest', 'linear']"
    ]
    custom = single_node_model(
        helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example"),
        [tensor("x", TensorProto.FLOAT, [2])],
        [tensor("y", TensorProto.FLOAT, [2])],
    )
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    assert check_tensorrt_readiness(custom, table) == [
        "node 'fancy' (FancyOp): domain 'com.example' needs a plugin"
    ]
    unknown = single_node_model(
        helper.make_node("Hardmax", ["x"], ["y"], name="hard"),
        [tensor("x", TensorProto.FLOAT, [2])],
        [tensor("y", TensorProto.FLOAT, [2])],
    )
    assert check_tensorrt_readiness(unknown, table) == [
        "node 'hard' (Hardmax): not in the TensorRT 10.14.1.48 support table"
    ]
    double = single_node_model(
        helper.make_node("Relu", ["x"], ["y"], name="relu"),
        [tensor("x", TensorProto.DOUBLE, [2])],
        [tensor("y", TensorProto.DOUBLE, [2])],
    )
    problems = check_tensorrt_readiness(double, table)
    assert "node 'relu' (Relu): input type DOUBLE not in" in problems[0]
    assert "tensor 'x': type DOUBLE is not a TensorRT type here" in problems
