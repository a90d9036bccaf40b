"""The autotuner and its database: candidates obey the constraints, winners are stored under
the device and op signature, and compiling picks them up (on PoCL: the CPU tile templates)."""
import json

import numpy as np

from lgc.codegen import gpu_gemm, tuner, tuning
from lgc.codegen.program import lower
from lgc.codegen.target import GFX803, use_target
from lgc.testing import build_op_graph

A = np.ones((33, 40), np.float32)
B = np.ones((40, 48), np.float32)


def test_gpu_candidates_valid_default_first():
    (task,) = tuner.tasks(build_op_graph("matmul", [A, B], {}), GFX803)
    assert task.signature == "matmul:M33:N48:K40:B1"
    assert task.candidates[0] == task.default == gpu_gemm.heuristic(33, 48, 40, 1, GFX803)
    assert len(task.candidates) > 20 and all(gpu_gemm.valid(p, GFX803) for p in task.candidates)


def test_database_overrides_heuristic(tmp_path, monkeypatch):
    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "db.json"))
    graph = build_op_graph("matmul", [A, B], {})
    tuning.save_entry(GFX803, "matmul:M33:N48:K40:B1", {**gpu_gemm.PRESETS["small"].as_dict(), "MWG": 64,
                                                         "MDIMC": 16}, 1e-3)
    with use_target(GFX803):
        assert "__local float4 AlmV[256];" in lower(graph).source     # KWG 16 x MWG 64 / VWM 4
    tuning.save_entry(GFX803, "matmul:M33:N48:K40:B1", {"MWG": 3}, 1e-3)   # invalid: ignored
    with use_target(GFX803):
        assert gpu_gemm.params_for(("matmul:M33:N48:K40:B1", 33, 48, 40, 1), GFX803) == gpu_gemm.heuristic(33, 48, 40, 1, GFX803)


def test_tune_on_device_then_compile_uses_winner(tmp_path, monkeypatch, capsys):
    from lgc.api import Executable
    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "db.json"))
    graph = build_op_graph("matmul", [A, B], {})
    results = tuner.tune(graph, None, budget=5.0)
    assert "tune [" in capsys.readouterr().err                      # the progress bar
    (sig, (params, seconds, base)), = results.items()
    assert seconds <= base < float("inf")
    db = json.loads((tmp_path / "db.json").read_text())
    (entries,) = db.values()
    assert entries[sig]["params"] == params.__dict__
    exe = Executable.from_graph(graph)
    if exe.device.kind == "cpu":   # the CPU template reads the winner
        assert f"acc{params.TM - 1} " in exe.program.source and f"acc{params.TM} " not in exe.program.source
    np.testing.assert_allclose(exe.run({exe.input_names[0]: A, exe.input_names[1]: B})[exe.output_names[0]],
                               A @ B, rtol=1e-5)


def test_shipped_gfx803_defaults_are_valid_and_used(monkeypatch, tmp_path):
    """lgc/codegen/tuned/gfx803.json: ISA-checked heuristic picks (not timings), keyed like the
    database; every entry obeys the constraints and is what a gfx803 compile picks."""
    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "none.json"))
    doc = json.loads((tuning.SHIPPED / "gfx803.json").read_text())
    assert "NOT timings" in doc["note"]
    for sig, entry in doc["entries"].items():
        p = gpu_gemm.GemmParams(**entry["params"])
        assert gpu_gemm.valid(p, GFX803), sig
        assert entry["isa"]["scratch_bytes"] == 0 and entry["isa"]["waves_per_simd"] >= 4
        assert tuning.lookup(GFX803, sig) == entry["params"]


def _onnx_matmul(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.full((40, 48), 0.5, np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [33, 40])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [33, 48])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_cli_tune_and_compile_with_tuning(tmp_path, monkeypatch, capsys):
    from lgc.cli import main
    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "db.json"))
    model = str(tmp_path / "mm.onnx")
    _onnx_matmul(model)
    assert main(["tune", model, "--budget", "3"]) == 0
    out = capsys.readouterr()
    assert "cpu:matmul:33:40:48" in out.out and "tune [" in out.err
    assert (tmp_path / "db.json").exists()
    assert main(["compile", model, "--tune", "--budget", "2", "-o", str(tmp_path / "mm.lgc")]) == 0
    assert "wrote" in capsys.readouterr().out


def test_cli_isa_report(tmp_path, capsys):
    from lgc.codegen import isa
    from lgc.cli import main
    if not isa.available():
        import pytest
        pytest.skip("clang-16/libclc-16 not installed")
    model = str(tmp_path / "mm.onnx")
    _onnx_matmul(model)
    assert main(["compile", model, "--isa-report", "-o", str(tmp_path / "mm.lgc")]) == 0
    out = capsys.readouterr().out
    assert "gemm+matmul" in out and "0 with scratch/spills" in out


def test_gpu_tuning_path_on_pocl(tmp_path, monkeypatch):
    """The GPU branch of the tuner (GemmParams candidates, local-size launches), run on PoCL by
    letting the device pass for a gfx803: winners land under that device's key and a compile
    for it uses them."""
    from dataclasses import replace

    from lgc.codegen import target as target_mod
    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "db.json"))
    fake = replace(GFX803, key="fake-gfx803")
    monkeypatch.setattr(target_mod.Target, "from_device", staticmethod(lambda d: fake))
    graph = build_op_graph("matmul", [A, B], {})
    (sig, (params, seconds, base)), = tuner.tune(graph, None, budget=4.0, batch=4, progress=False).items()
    assert sig == "matmul:M33:N48:K40:B1" and gpu_gemm.valid(params, fake) and seconds <= base
    assert json.loads((tmp_path / "db.json").read_text())["fake-gfx803"][sig]["params"] == params.as_dict()
    assert gpu_gemm.params_for(gpu_gemm.gemm_shape(graph.nodes[-1]), fake) == params
