"""`lgc plan`: the plan file, --split, compile_from_plan, kernel times and bad specs."""
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import lgc
from lgc.distributed.cost import CostModel, load_kernel_times
from lgc.distributed.graphs import load_graph
from lgc.distributed.shard import compile_from_plan, read_stages
from lgc.distributed.specs import parse_bandwidth, parse_duration, parse_size, parse_workers
from lgc.errors import InputError
from lgc.tools.cli import main

from .conftest import make_small_model


def small_reference(path, x):
    m = onnx.load(str(path))
    w, b = (numpy_helper.to_array(i) for i in m.graph.initializer[:2])
    y = np.maximum(x * w + b, 0)
    return {"y": y, "z": np.exp(y) - 1}


def run_dir(out, feeds):
    doc = read_stages(out)
    for st in doc["stages"]:
        feeds = lgc.load(out / st["artifact"]).run(feeds)
    return feeds


def test_plan_split_and_compile_from_plan(tmp_path, capsys):
    model = tmp_path / "small.onnx"
    make_small_model(model)
    plan_path, out = tmp_path / "plan.json", tmp_path / "stages"
    assert main(["plan", str(model), "--workers", "cpu:1GB*2", "--stages", "2",
                 "--input-shape", "x=3x4", "-o", str(plan_path), "--split", str(out)]) == 0
    text = capsys.readouterr().out
    assert "predicted:" in text and "requests/s" in text and "cut 0|1 -> stage 1" in text
    doc = json.loads(plan_path.read_text())
    assert doc["format"] == "lgc-plan" and doc["version"] == 1
    assert doc["input_shapes"] == {"x": [3, 4]} and len(doc["stages"]) == 2
    assert doc["stages"][0]["sends"] == doc["stages"][1]["receives"]
    assert doc["predicted"]["throughput_per_s"] > 0 and doc["predicted"]["latency_s"] > 0
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    want = small_reference(model, x)
    got = run_dir(out, {"x": x})
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    # the lead's `lgc compile --plan` path: the same stages from the plan file
    again = tmp_path / "again"
    paths = compile_from_plan(model, plan_path, again)
    assert [p.name for p in paths] == ["stage0.lgc", "stage1.lgc"]
    assert read_stages(again)["cuts"] == read_stages(out)["cuts"] == [doc["stages"][1]["nodes"][0]]
    got = run_dir(again, {"x": x})
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    doc["graph"]["fingerprint"] = "0" * 16
    plan_path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="does not give the graph"):
        compile_from_plan(model, plan_path, tmp_path / "x")


def test_lgc_compile_plan_writes_the_stage_artifacts(tmp_path, capsys):
    model = tmp_path / "small.onnx"
    make_small_model(model)
    plan_path, out = tmp_path / "plan.json", tmp_path / "st"
    assert main(["plan", str(model), "--workers", "cpu:1GB*2", "--stages", "2",
                 "--input-shape", "x=3x4", "-o", str(plan_path)]) == 0
    assert main(["compile", str(model), "--plan", str(plan_path), "-o", str(out)]) == 0
    assert "wrote 2 stage artifacts" in capsys.readouterr().out
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    got, want = run_dir(out, {"x": x}), small_reference(model, x)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    assert main(["compile", str(model), "--plan", str(plan_path), "--quantize", "int8-weights",
                 "-o", str(tmp_path / "q")]) == 1
    assert "does not combine" in capsys.readouterr().err


def test_plan_from_artifact_plans_but_does_not_split(tmp_path, capsys):
    model = tmp_path / "small.onnx"
    make_small_model(model, batch=3)
    art = tmp_path / "small.lgc"
    assert main(["compile", str(model), "-o", str(art)]) == 0
    from_onnx, from_lgc = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["plan", str(model), "--workers", "gfx803:8GB", "-o", str(from_onnx)]) == 0
    assert main(["plan", str(art), "--workers", "gfx803:8GB", "-o", str(from_lgc)]) == 0
    a, b = (json.loads(p.read_text()) for p in (from_onnx, from_lgc))
    assert a["graph"] == b["graph"] and a["predicted"] == b["predicted"]
    capsys.readouterr()
    assert main(["plan", str(art), "--workers", "gfx803:8GB", "-o", str(from_lgc),
                 "--split", str(tmp_path / "s")]) == 1
    assert "give the .onnx model" in capsys.readouterr().err


def test_measured_kernel_times(tmp_path, capsys):
    model = tmp_path / "small.onnx"
    make_small_model(model, batch=64)
    times = tmp_path / "times.json"
    assert main(["plan", str(model), "--measure-kernels", str(times), "--runs", "2"]) == 0
    doc = load_kernel_times(times)
    assert doc["nodes"] and all(t > 0 for t in doc["nodes"].values())
    w = parse_workers("cpu:1GB", kernel_times={"*": doc})[0]
    cm = CostModel(load_graph(str(model)))
    assert cm.node_times(w).sum() == pytest.approx(sum(doc["nodes"].values()), rel=1e-9)
    plan = tmp_path / "p.json"
    assert main(["plan", str(model), "--workers", "cpu:1GB", "--kernel-times", f"cpu={times}",
                 "-o", str(plan)]) == 0
    p = json.loads(plan.read_text())
    assert p["workers"][0]["measured"] and p["stages"][0]["compute_s"] == pytest.approx(
        sum(doc["nodes"].values()), rel=1e-9)
    bench_like = tmp_path / "bench.json"
    bench_like.write_text(json.dumps({"kernels": []}))
    with pytest.raises(InputError, match="per-kernel, not per-node"):
        load_kernel_times(bench_like)


def test_spec_parsers():
    assert parse_size("8GB") == 8 * 10**9 and parse_size("8GiB") == 8 * 2**30
    assert parse_size("512 MiB") == 512 * 2**20 and parse_size("4096") == 4096
    assert parse_bandwidth("1Gbit") == parse_bandwidth("1Gbit/s") == parse_bandwidth("1Gbps") == 125e6
    assert parse_bandwidth("125MB/s") == 125e6 and parse_bandwidth("10Gbit") == 1.25e9
    assert parse_duration("10us") == pytest.approx(1e-5) and parse_duration("0") == 0
    ws = parse_workers("gfx803:8GB*2,cpu:16GB:500GFLOPS:40GB/s,mygpu:4GB:2TFLOPS:100GB/s")
    assert [w.name for w in ws] == ["w0-gfx803", "w1-gfx803", "w2-cpu", "w3-mygpu"]
    assert ws[2].target.peak_flops == 500e9 and ws[2].target.bandwidth == 40e9
    assert ws[3].memory_bytes == 4 * 10**9 and ws[3].target.peak_flops == 2e12
    for bad, msg in [("gfx803", "expected KIND:MEMORY"), ("gfx803:8XB", "bad memory"),
                     ("foo:8GB", "unknown kind 'foo'"), ("gfx803:8GB*0", "positive integer"),
                     ("gfx803:8GB,,cpu:1GB", "empty item"), ("cpu:1GB:fast", "bad peak")]:
        with pytest.raises(InputError, match=msg):
            parse_workers(bad)
    for bad in ("1Gbitz", "fast", "-1Gbit", "0Gbit", "1G"):
        with pytest.raises(InputError, match="bad bandwidth"):
            parse_bandwidth(bad)


def test_cli_errors_are_one_line(tmp_path, capsys):
    model = tmp_path / "small.onnx"
    make_small_model(model, batch=2)
    for args, msg in [(["--workers", "gfx803:8QB"], "bad memory in worker 'gfx803:8QB'"),
                      (["--workers", "gfx803:8GB", "--bandwidth", "fast"], "bad --bandwidth 'fast'"),
                      ([], "--workers is required"),
                      (["--workers", "gfx803:10B"], "cannot hold node 0"),
                      (["--workers", "gfx803:8GB", "--stages", "3"], "--stages must be between 1 and 1")]:
        assert main(["plan", str(model), "-o", str(tmp_path / "p.json"), *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("lgc: error: ") and msg in err[-1], err
