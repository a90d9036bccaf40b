"""Splitting a graph into pipeline stages: the stages run in sequence equal the whole model."""
import json
import os
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lgc
from lgc.distributed.graphs import load_graph
from lgc.distributed.shard import (compile_stages, live_across, load_stages, read_stages,
                                   run_stages, schedule, split, tensor_names)
from lgc.errors import InputError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from random_weights import light_model_path, randomize  # noqa: E402


def skip_model():
    """x -> a = relu(x * w); b = a * a; c = b + x (x skips ahead); outputs a (early) and c."""
    w = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    nodes = [helper.make_node("Mul", ["x", "w"], ["xw"]),
             helper.make_node("Relu", ["xw"], ["a"]),
             helper.make_node("Mul", ["a", "a"], ["b"]),
             helper.make_node("Exp", ["b"], ["e"]),
             helper.make_node("Add", ["e", "x"], ["c"])]
    g = helper.make_graph(nodes, "skip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 8]),
                           helper.make_tensor_value_info("c", TensorProto.FLOAT, [2, 8])],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def compile_and_run(stages, feeds):
    for st in stages:
        exe = lgc.compile(st.graph)
        assert exe.input_names == st.receives and exe.output_names == st.sends
        feeds = exe.run(feeds)
    return feeds


def test_every_cut_of_a_small_graph_equals_the_whole():
    g = load_graph(skip_model(), opt_level=0)   # unfused: one dynamic node per op
    n = len(schedule(g))
    assert n == 5
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    want = lgc.compile(g).run({"x": x})
    w = numpy_helper.to_array(skip_model().graph.initializer[0])
    a = np.maximum(x * w, 0)
    np.testing.assert_allclose(want["a"], a, rtol=1e-6)
    np.testing.assert_allclose(want["c"], np.exp(a * a) + x, rtol=1e-5)
    for cuts in ([1], [2], [3], [4], [1, 2, 3, 4], [2, 4]):
        stages = split(g, cuts)
        assert [s.nodes for s in stages] == list(zip([0, *cuts], [*cuts, n]))
        for a_st, b_st in zip(stages, stages[1:]):     # sends feed the next stage by name
            assert a_st.sends == b_st.receives
        assert stages[0].receives == ["x"] and stages[-1].sends == ["a", "c"]
        got = compile_and_run(stages, {"x": x})
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"cuts {cuts}, output {k}")
    # x is read by the last node, so it passes through every cut; a is a graph output
    names = tensor_names(g)
    live = live_across(g)
    assert all("x" in [names[v] for v in lv] for lv in live[:n])
    assert all("a" in [names[v] for v in lv] for lv in live[2:])
    assert sorted(names[v] for v in live[n]) == ["a", "c"]


def test_bad_cuts_are_refused():
    g = load_graph(skip_model(), opt_level=0)
    for cuts in ([0], [5], [3, 2], [2, 2], [-1]):
        with pytest.raises(InputError, match="cut positions"):
            split(g, cuts)


def test_weights_stay_inside_stages():
    """Constants and what is computed from them are copied into each stage that reads them."""
    g = load_graph(skip_model(), opt_level=0)
    stages = split(g, [1])
    assert all(v.name != "w" for st in stages for v in st.graph.inputs)
    assert any(n.op == "const" for n in stages[0].graph.nodes)
    assert not any(n.op == "const" for n in stages[1].graph.nodes)


def _resnet_logits():
    m = randomize(onnx.load(light_model_path("resnet50")), 0)
    last = m.graph.node[-1]
    assert last.op_type == "Softmax"                 # compare logits: softmax saturates
    m.graph.output[0].name = last.input[0]
    del m.graph.node[-1]
    return m


@pytest.mark.slow
def test_resnet50_stage_artifacts_equal_the_whole_model(tmp_path):
    import onnxruntime as ort
    m = _resnet_logits()
    g = load_graph(m)
    n = len(schedule(g))
    cuts = [n // 3, 2 * n // 3]
    paths = compile_stages(g, cuts, tmp_path, model="resnet50")
    assert [p.name for p in paths] == ["stage0.lgc", "stage1.lgc", "stage2.lgc"]
    doc = read_stages(tmp_path)
    assert doc["stage_count"] == 3 and doc["cuts"] == cuts
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    feeds = {"gpu_0/data_0": x}
    for st, p in zip(doc["stages"], paths):
        exe = lgc.load(p)
        assert exe.input_names == [t["name"] for t in st["receives"]] == list(feeds)
        feeds = exe.run(feeds)
        assert list(feeds) == [t["name"] for t in st["sends"]]
        for t in st["sends"]:
            assert list(feeds[t["name"]].shape) == t["shape"]
    again = run_stages(load_stages(tmp_path), {"gpu_0/data_0": x})
    np.testing.assert_array_equal(again[next(iter(again))], feeds[next(iter(again))])
    whole = lgc.compile(g).run({"gpu_0/data_0": x})
    ref = ort.InferenceSession(m.SerializeToString()).run(None, {"gpu_0/data_0": x})[0]
    (name, want), = whole.items()
    np.testing.assert_allclose(feeds[name], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(feeds[name], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # a tampered stage is refused before anyone loads it
    with open(paths[1], "ab") as f:
        f.write(b"x")
    with pytest.raises(InputError, match="stage 1 .* checksum"):
        read_stages(tmp_path)


def test_stages_file_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_stages(tmp_path)
    (tmp_path / "stages.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        read_stages(tmp_path)
    (tmp_path / "stages.json").write_text(json.dumps({"format": "lgc-stages", "version": 9}))
    with pytest.raises(InputError, match="unknown stages file version 9"):
        read_stages(tmp_path)
