"""`lgc bench`: help, a tiny model benchmarked from .onnx (with --batch) and from .lgc."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lgc.tools.cli import main


@pytest.fixture
def tiny_onnx(tmp_path):
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [w])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--batch", "--runs", "--warmup", "--json"):
        assert flag in out


def test_bench_onnx_with_batch(tiny_onnx, tmp_path, capsys):
    out_json = tmp_path / "r.json"
    assert main(["bench", str(tiny_onnx), "--batch", "3", "--runs", "3", "--warmup", "1",
                 "--profile-runs", "1", "--json", str(out_json)]) == 0
    cap = capsys.readouterr()
    assert "latency over 3 runs: median" in cap.out and "p95" in cap.out
    assert "throughput" in cap.out and "total kernel time" in cap.out
    assert "compiling" in cap.err                  # progress goes to stderr
    r = json.loads(out_json.read_text())
    assert r["batch"] == 3 and r["runs"] == 3 and len(r["latencies_ms"]) == 3
    assert r["latency_median_ms"] > 0 and r["throughput_per_s"] > 0
    assert r["kernels"] and abs(sum(k["share"] for k in r["kernels"]) - 1) < 1e-6
    mm = [k for k in r["kernels"] if k["flops"]]
    assert mm and mm[0]["flops"] == 2 * 3 * 8 * 4 and mm[0]["gflops"] > 0
    assert r["target"]["peak_gflops"] > 0


def test_bench_artifact(tiny_onnx, tmp_path, capsys):
    art = tmp_path / "tiny.lgc"
    assert main(["compile", str(tiny_onnx), "-o", str(art), "--input-shape", "x=2x8"]) == 0
    assert main(["bench", str(art), "--runs", "2", "--warmup", "1", "--profile-runs", "1"]) == 0
    assert "shapes as declared" in capsys.readouterr().out
    assert main(["bench", str(art), "--batch", "5", "--runs", "1"]) == 1   # fixed shapes
    assert "--batch needs the .onnx model" in capsys.readouterr().err
