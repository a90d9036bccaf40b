"""Each class of bad ONNX model is refused before import with one ModelError line naming the
node, attribute, tensor, input or output at fault (lgc/frontend/onnx/validate.py)."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lgc
from lgc.errors import ModelError, UnsupportedOp
from tests.conftest import make_small_model

F32 = TensorProto.FLOAT


def one_node_model(node, in_shape=(2, 3), out_shape=(2, 3), opset=17, inits=(), out_type=F32):
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F32, list(in_shape))],
                          [helper.make_tensor_value_info("y", out_type, list(out_shape))], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def refused(model, match, *, via_load=False):
    """The ModelError, checked to be one line and to match."""
    with pytest.raises(ModelError, match=match) as e:
        if via_load:
            lgc.onnx.load(model)
        else:
            m = lgc.compile(model)
            m.executable(m.default_types())
    assert "\n" not in str(e.value)
    return e.value


# ---- node schemas ------------------------------------------------------------------------------

def test_unknown_attribute_is_refused_naming_node_and_attribute():
    node = helper.make_node("Relu", ["x"], ["y"], name="act", slope=0.1)
    refused(one_node_model(node), r"node 'act' \(Relu\): unknown attribute 'slope'")
    refused(one_node_model(node), r"unknown attribute 'slope'", via_load=True)


def test_attribute_of_wrong_type_is_refused():
    node = helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1.5)
    refused(one_node_model(node), r"node 'sm' \(Softmax\): attribute 'axis' is FLOAT, Softmax-13 wants INT")


def test_missing_required_attribute_is_refused():
    node = helper.make_node("Transpose", ["x"], ["y"], name="t")   # perm is optional: fine
    lgc.compile(one_node_model(node, out_shape=(3, 2)))
    cast = helper.make_node("Cast", ["x"], ["y"], name="c")          # `to` is required
    refused(one_node_model(cast), r"node 'c' \(Cast\): required attribute 'to' is missing")


def test_wrong_input_count_and_empty_required_input_are_refused():
    refused(one_node_model(helper.make_node("Add", ["x"], ["y"], name="add1")),
            r"node 'add1' \(Add\): Add-14 takes 2 inputs, the node has 1")
    refused(one_node_model(helper.make_node("Add", ["x", ""], ["y"], name="add2")),
            r"node 'add2' \(Add\): input 1 \(B\) is required but given as ''")


def test_opset_out_of_range_and_op_newer_than_opset_are_refused():
    refused(one_node_model(helper.make_node("Relu", ["x"], ["y"]), opset=0), r"opset 0")
    refused(one_node_model(helper.make_node("Relu", ["x"], ["y"]), opset=999), r"opset 999")
    node = helper.make_node("Where", ["x", "x", "x"], ["y"], name="w")   # Where is from opset 9
    refused(one_node_model(node, opset=8), r"node 'w' uses Where, which ONNX opset 8")


def test_a_name_assigned_twice_is_refused():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="first"),
             helper.make_node("Neg", ["x"], ["y"], name="second")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F32, [2])],
                          [helper.make_tensor_value_info("y", F32, [2])])
    refused(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
            r"node 'second' \(Neg\) writes 'y', which is already defined")


def test_unreadable_tensor_attribute_is_refused_naming_node():
    bad = numpy_helper.from_array(np.ones(4, np.float32))
    bad.dims[:] = [2**40]
    node = helper.make_node("Constant", [], ["c"], name="k", value=bad)
    add = helper.make_node("Add", ["x", "c"], ["y"], name="a")
    g = helper.make_graph([node, add], "g", [helper.make_tensor_value_info("x", F32, [4])],
                          [helper.make_tensor_value_info("y", F32, [4])])
    refused(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
            r"node 'k' \(Constant\): attribute 'value' cannot be read")


def test_unsupported_initializer_dtype_names_the_initializer():
    init = numpy_helper.from_array(np.ones(3, np.complex128), "w")   # complex64 is supported
    node = helper.make_node("Identity", ["x"], ["y"], name="i")
    with pytest.raises(UnsupportedOp, match=r"initializer 'w': element type COMPLEX128"):
        m = lgc.compile(one_node_model(node, inits=[init]))
        m.executable(m.default_types())


# ---- declared outputs --------------------------------------------------------------------------

def test_wrong_declared_output_shape_is_refused_naming_the_output():
    node = helper.make_node("Relu", ["x"], ["y"], name="act")
    e = refused(one_node_model(node, out_shape=(2, 7)), r"graph output 'y' is declared with "
                r"shape \(2, 7\), but the model computes \(2, 3\)")
    assert isinstance(e, ModelError)
    refused(one_node_model(node, out_shape=(2, 3, 1)), r"graph output 'y'.*\(2, 3\)")
    # symbolic and unset dimensions match anything
    lgc.compile(one_node_model(node, out_shape=("N", None)))(np.ones((2, 3), np.float32))


def test_wrong_declared_output_dtype_is_refused():
    node = helper.make_node("Relu", ["x"], ["y"], name="act")
    refused(one_node_model(node, out_type=TensorProto.INT64),
            r"graph output 'y' is declared INT64, but the model computes float32")


# ---- absurd shapes -----------------------------------------------------------------------------

def test_absurd_input_shape_is_refused_before_allocation():
    node = helper.make_node("Relu", ["x"], ["y"], name="act")
    refused(one_node_model(node, in_shape=(2**20, 2**20), out_shape=(2**20, 2**20)),
            r"input 'x': shape \(1048576, 1048576\) has 1099511627776 elements, over lgc's limit")


def test_absurd_intermediate_shape_is_refused_naming_the_node():
    shape = numpy_helper.from_array(np.array([2**20, 2**20, 2**20], np.int64), "shape")
    node = helper.make_node("Expand", ["x", "shape"], ["y"], name="grow")
    refused(one_node_model(node, in_shape=(1,), out_shape=(2**20, 2**20, 2**20), inits=[shape]),
            r"node 'grow' \(Expand\).*2\*\*31 per tensor")


def test_overflowing_shape_does_not_wrap_round():
    """2**40 * 2**40 * 2**40 overflows int64; the check uses exact integers."""
    shape = numpy_helper.from_array(np.array([2**40, 2**40, 2**40, 16], np.int64), "shape")
    node = helper.make_node("ConstantOfShape", ["shape"], ["y"], name="fill")
    g = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", F32, None)], [shape])
    refused(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
            r"node 'fill' \(ConstantOfShape\).*over lgc's limit")


# ---- damaged files -----------------------------------------------------------------------------

def test_truncated_and_non_regular_files_are_refused(tmp_path):
    data = make_small_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    refused(str(path), r"cut.onnx: not a readable ONNX model")
    refused(data[:7], r"model bytes: not a readable ONNX model|empty graph")
    refused(str(tmp_path), r"not a regular file")
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    refused(str(fifo), r"pipe.onnx: not a regular file")   # refused, not read (which would hang)


# ---- external data ------------------------------------------------------------------------------

def _external_model(folder, location: str):
    """The small model with initializer 'w' stored externally at `location`, saved in folder."""
    model = make_small_model()
    w = next(t for t in model.graph.initializer if t.name == "w")
    w.ClearField("raw_data")
    del w.float_data[:]
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        e = w.external_data.add()
        e.key, e.value = k, v
    path = os.path.join(folder, "model.onnx")
    onnx.save(model, path)
    return path


def test_external_data_inside_the_folder_loads(tmp_path):
    (tmp_path / "sub").mkdir()
    w = numpy_helper.to_array(next(t for t in make_small_model().graph.initializer if t.name == "w"))
    (tmp_path / "sub" / "w.bin").write_bytes(w.tobytes())
    model = lgc.compile(_external_model(str(tmp_path), "sub/w.bin"))
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(model(x)[0], lgc.compile(make_small_model())(x)[0])


@pytest.mark.parametrize("location", ["/etc/passwd", "../secret.bin", "sub/../../secret.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    path = _external_model(str(folder), location)
    refused(path, rf"tensor 'w': external data location '{location}' is not a relative path")
    refused(path, r"tensor 'w'", via_load=True)


def test_external_data_through_a_symlink_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    os.symlink(tmp_path / "secret.bin", folder / "w.bin")
    refused(_external_model(str(folder), "w.bin"),
            r"tensor 'w': external data location 'w.bin' resolves to .*secret.bin, outside")


def test_external_data_in_a_model_given_as_bytes_is_refused(tmp_path):
    path = _external_model(str(tmp_path), "w.bin")
    refused(open(path, "rb").read(), r"tensor 'w'.*given as bytes cannot read external data")
