"""KServe v2 request/response coding (lgc.serve.protocol), without a server or a device."""
import json

import numpy as np
import pytest

from lgc.serve.backend import TensorSpec, kserve_datatype
from lgc.serve.protocol import ProtocolError, encode_infer_response, parse_infer_request

INPUTS = [TensorSpec("x", "FP32", (-1, 3)), TensorSpec("ids", "INT64", (-1, 2))]
OUTPUTS = [TensorSpec("y", "FP32", (-1, 3)), TensorSpec("flag", "BOOL", (-1,))]


def _body(inputs, **extra):
    return json.dumps({"inputs": inputs, **extra}).encode()


def _x(data=None, shape=(2, 3), **kw):
    d = {"name": "x", "datatype": "FP32", "shape": list(shape), **kw}
    if data is not None:
        d["data"] = data
    return d


IDS = {"name": "ids", "datatype": "INT64", "shape": [2, 2], "data": [[1, 2], [3, 4]]}


def test_json_inputs_nested_and_flat():
    req = parse_infer_request(_body([_x([[1, 2, 3], [4, 5, 6.5]]), IDS], id="r1"), None,
                              INPUTS, OUTPUTS, 8)
    assert req.id == "r1"
    np.testing.assert_array_equal(req.inputs["x"], np.array([[1, 2, 3], [4, 5, 6.5]], np.float32))
    assert req.inputs["x"].dtype == np.float32 and req.inputs["ids"].dtype == np.int64
    assert req.outputs == [("y", False), ("flag", False)]
    flat = parse_infer_request(_body([_x([1, 2, 3, 4, 5, 6.5]), IDS]), None, INPUTS, OUTPUTS, 8)
    np.testing.assert_array_equal(flat.inputs["x"], req.inputs["x"])


def test_binary_inputs_and_output_selection():
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    ids = np.array([[5, -6], [7, 2**40]], np.int64)
    head = json.dumps({"inputs": [
        _x(parameters={"binary_data_size": x.nbytes}),
        {"name": "ids", "datatype": "INT64", "shape": [2, 2], "parameters": {"binary_data_size": 32}}],
        "outputs": [{"name": "flag"}, {"name": "y", "parameters": {"binary_data": True}}]}).encode()
    req = parse_infer_request(head + x.tobytes() + ids.tobytes(), str(len(head)), INPUTS, OUTPUTS, 8)
    np.testing.assert_array_equal(req.inputs["x"], x)
    np.testing.assert_array_equal(req.inputs["ids"], ids)
    assert req.outputs == [("flag", False), ("y", True)]


def test_response_binary_and_json():
    y = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    flag = np.array([True, False])
    body, headers = encode_infer_response("m", "1", "r", {"y": y, "flag": flag},
                                          [("y", True), ("flag", False)])
    n = int(headers["inference-header-content-length"])
    head = json.loads(body[:n])
    assert head["id"] == "r" and head["model_name"] == "m"
    assert head["outputs"][0] == {"name": "y", "datatype": "FP32", "shape": [2, 3],
                                  "parameters": {"binary_data_size": 24}}
    np.testing.assert_array_equal(np.frombuffer(body[n:], np.float32).reshape(2, 3), y)
    assert head["outputs"][1]["data"] == [True, False]
    body, headers = encode_infer_response("m", "1", None, {"y": y, "flag": flag}, [("y", False)])
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["outputs"][0]["data"] == y.reshape(-1).tolist()


@pytest.mark.parametrize("inputs, header, message", [
    ([_x([1] * 6)], None, "missing input 'ids'"),
    ([_x([1] * 6), IDS, {"name": "zz", "datatype": "FP32", "shape": [1], "data": [1]}], None,
     "unknown input 'zz'"),
    ([_x([1] * 6, datatype="FP64"), IDS], None, "datatype 'FP64', expected 'FP32'"),
    ([_x([1] * 8, shape=(2, 4)), IDS], None, "shape [2, 4], expected [-1, 3]"),
    ([_x([1] * 5), IDS], None, "'data' has 5 elements, shape needs 6"),
    ([_x(["a"] * 6), IDS], None, "string values, not FP32"),
    ([_x([1] * 6), dict(IDS, data=[1.5, 2, 3, 4])], None, "floating-point values, not INT64"),
    ([_x([1] * 6), dict(IDS, data=[1, 2, 3, 2**63])], None, "INT64"),
    ([_x([[1, 2, 3], [4, 5]]), IDS], None, "ragged"),
    ([_x([1] * 27, shape=(9, 3)), dict(IDS, shape=[9, 2], data=[1] * 18)], None, "max_batch_size 8"),
    ([_x([1] * 3, shape=(1, 3)), IDS], None, "disagree on the batch size"),
    ([_x(shape=(2, 3), parameters={"binary_data_size": 20}), IDS], "0", "does not match shape"),
    ([_x(shape=(2, 3), parameters={"binary_data_size": 24}), IDS], None, "ends after 0 of 24 bytes"),
    ([_x(shape=(2, 3)), IDS], None, "neither 'data' nor binary_data_size"),
])
def test_bad_requests_name_the_fault(inputs, header, message):
    body = _body(inputs)
    hdr = str(len(body)) if header is not None else None
    with pytest.raises(ProtocolError, match=None) as e:
        parse_infer_request(body, hdr, INPUTS, OUTPUTS, 8)
    assert message in str(e.value) and e.value.status == 400


@pytest.mark.parametrize("body, header, message", [
    (b"{not json", None, "malformed JSON"),
    (b"[1, 2]", None, "must be a JSON object"),
    (b'{"inputs": []}', None, "non-empty list"),
    (b'{"inputs": [1]}', None, "inputs[0] must be an object"),
    (b"{}", "x", "is not an integer"),
    (b"{}", "99", "outside the body"),
])
def test_malformed_bodies(body, header, message):
    with pytest.raises(ProtocolError) as e:
        parse_infer_request(body, header, INPUTS, OUTPUTS, 8)
    assert message in str(e.value)


def test_hostile_shapes_and_nesting():
    specs = [TensorSpec("x", "FP32", (-1, -1))]
    # 2**32 * 2**32 wraps to 0 in int64: the element count must not
    with pytest.raises(ProtocolError, match="shape needs 18446744073709551616"):
        parse_infer_request(_body([_x([], shape=(2**32, 2**32))]), None, specs, OUTPUTS, 0)
    deep = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": ' + \
        b"[" * 100000 + b"]" * 100000 + b"}]}"
    with pytest.raises(ProtocolError, match="nested too deeply"):
        parse_infer_request(deep, None, specs, OUTPUTS, 0)


def test_leftover_binary_and_unknown_output():
    head = _body([_x([1] * 6), IDS])
    with pytest.raises(ProtocolError, match="4 bytes of binary data follow"):
        parse_infer_request(head + b"abcd", str(len(head)), INPUTS, OUTPUTS, 8)
    with pytest.raises(ProtocolError, match="unknown output 'w'"):
        parse_infer_request(_body([_x([1] * 6), IDS], outputs=[{"name": "w"}]), None, INPUTS, OUTPUTS, 8)


def test_unbatched_model_needs_exact_shape():
    specs = [TensorSpec("x", "FP32", (1, 3))]
    ok = parse_infer_request(_body([_x([1, 2, 3], shape=(1, 3))]), None, specs, OUTPUTS, 0)
    assert ok.inputs["x"].shape == (1, 3)
    with pytest.raises(ProtocolError, match="expected \\[1, 3\\]"):
        parse_infer_request(_body([_x([1] * 6)]), None, specs, OUTPUTS, 0)


def test_datatype_names():
    assert kserve_datatype(np.float16) == "FP16" and kserve_datatype(np.bool_) == "BOOL"
    assert kserve_datatype(np.uint64) == "UINT64"
