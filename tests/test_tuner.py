"""The autotuner and its database: candidates obey the constraints, winners are stored under
the device and op signature, and compiling picks them up. On a CPU target the tuned entries
are the kernels that run after cpu_lowering (panel GEMM rows, Winograd or im2col, and the
direct kernels only for the ops left to them), and a wrong candidate never wins."""
import dataclasses
import json

import numpy as np
import pytest

from lgc.backends import gpu_gemm, tuner, tuning
from lgc.runtime import select_device
from lgc.runtime import tuner as device_tuner
from lgc.backends.program import lower
from lgc.backends.target import GFX803, use_target
from lgc.testing import build_op_graph

# random, not ones: a tuned kernel that swaps an index or a transpose must give a wrong product
_rng = np.random.default_rng(7)
A = _rng.standard_normal((33, 40)).astype(np.float32)
B = _rng.standard_normal((40, 48)).astype(np.float32)
W = _rng.standard_normal((40, 48)).astype(np.float32)    # the ONNX model's constant B


cpu_only = pytest.mark.device("cpu")   # the CPU lowering's tasks


def _check_product(exe, a, b):
    """exe (a one-matmul Executable) computes a @ b, against float64."""
    got = exe.run({exe.input_names[0]: a, exe.input_names[1]: b})[exe.output_names[0]]
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


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
    results = device_tuner.tune(graph, None, budget=5.0)
    assert "tune [" in capsys.readouterr().err                      # the progress bar
    (sig, (params, seconds, base)), = results.items()
    assert seconds <= base < float("inf")
    db = json.loads((tmp_path / "db.json").read_text())
    (entries,) = db.values()
    assert entries[sig]["params"] == params.__dict__
    exe = Executable.from_graph(graph)
    if exe.device.kind == "cpu":   # the CPU template reads the winner
        assert f"c{params.TM - 1}_0 " in exe.program.source and f"c{params.TM}_0 " not in exe.program.source
    _check_product(exe, A, B)


def test_shipped_gfx803_defaults_are_valid_and_used(monkeypatch, tmp_path):
    """lgc/backends/tuned/gfx803.json: ISA-checked heuristic picks (not timings), keyed like the
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
    w = numpy_helper.from_array(W, "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [33, 40])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [33, 48])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_cli_tune_and_compile_with_tuning(tmp_path, monkeypatch, capsys):
    from lgc.tools.cli import main
    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "db.json"))
    model = str(tmp_path / "mm.onnx")
    _onnx_matmul(model)
    assert main(["tune", model, "--budget", "3"]) == 0
    out = capsys.readouterr()
    # a constant B runs on the panel GEMM on a CPU: its rows are what is tuned
    assert "cpu:panels:M33:N48:K40:B1:A0" in out.out and "cpu:matmul" not in out.out
    assert "tune [" in out.err
    (entries,) = json.loads((tmp_path / "db.json").read_text()).values()
    assert list(entries) == ["cpu:panels:M33:N48:K40:B1:A0"]
    assert main(["compile", model, "--tune", "--budget", "2", "-o", str(tmp_path / "mm.lgc")]) == 0
    assert "wrote" in capsys.readouterr().out
    import lgc
    (y,) = lgc.load(tmp_path / "mm.lgc").run({"x": A}).values()            # the tuned rows
    np.testing.assert_allclose(y, A.astype(np.float64) @ W, rtol=1e-5, atol=1e-5)


def test_cli_isa_report(tmp_path, capsys):
    from lgc.tools.cli import main
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

    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "db.json"))
    fake = replace(GFX803, key="fake-gfx803")
    graph = build_op_graph("matmul", [A, B], {})
    device = select_device(None).retargeted(fake)
    (sig, (params, seconds, base)), = device_tuner.tune(graph, device, budget=4.0, batch=4,
                                                        progress=False).items()
    assert sig == "matmul:M33:N48:K40:B1" and gpu_gemm.valid(params, fake) and seconds <= base
    assert json.loads((tmp_path / "db.json").read_text())["fake-gfx803"][sig]["params"] == params.as_dict()
    assert gpu_gemm.params_for(gpu_gemm.gemm_shape(graph.nodes[-1]), fake) == params
    from lgc.api import Executable
    _check_product(Executable.from_graph(graph, device), A, B)     # the winner's kernel, run here


# ---- CPU: the tasks are the kernels that run after cpu_lowering -------------------------------

def _mixed_graph():
    """A constant-B matmul (panel GEMM, A read by rows), a 3x3 conv (Winograd, a batched panel
    GEMM with packed A), a small runtime matmul and a grouped conv (direct kernels) and a
    trans_b matmul (the direct dot-product kernel, which has no tiles)."""
    from lgc.ir import dtypes
    from lgc.ir.builder import GraphBuilder
    from lgc.ir.graph import TensorType
    f32, rng = dtypes.by_name("f32"), np.random.default_rng(3)
    b = GraphBuilder("mixed")
    x = b.input("x", TensorType(f32, (33, 40)))
    img = b.input("img", TensorType(f32, (1, 16, 32, 32)))
    s1 = b.input("s1", TensorType(f32, (6, 10)))
    s2 = b.input("s2", TensorType(f32, (10, 12)))
    bt = b.input("bt", TensorType(f32, (48, 40)))
    y1 = b.op("matmul", [x, b.const(rng.standard_normal((40, 48)).astype(np.float32))], {})
    y2 = b.op("conv", [img, b.const(rng.standard_normal((16, 16, 3, 3)).astype(np.float32)),
                       b.const(rng.standard_normal(16).astype(np.float32))], {"pads": (1, 1, 1, 1)})
    y3 = b.op("matmul", [s1, s2], {})
    y4 = b.op("conv", [img, b.const(rng.standard_normal((16, 8, 3, 3)).astype(np.float32))], {"group": 2})
    y5 = b.op("matmul", [x, bt], {"trans_b": 1})
    return b.build([y1, y2, y3, y4, y5])


def _device_target():
    """The CPU device the tests marked cpu_only run on (tests/conftest.py skips them elsewhere)."""
    device = select_device(None)
    assert device.kind == "cpu"
    return device, device.target


def _in_source(kernel, source: str) -> bool:
    """Whether `kernel` (under any name) is one of a program's kernels: its text after the
    name, with its size parameters as constants in the body or as arguments (a program
    passes them as arguments where one text serves several layers)."""
    import inspect
    from dataclasses import replace

    from lgc.backends.kernel import render
    k = replace(kernel, name="KERNEL")
    texts = [render(k)]
    if "generic" in inspect.signature(render).parameters:
        texts.append(render(k, generic=True))
    return any(t.split("KERNEL", 1)[1] in source for t in texts)


@cpu_only
def test_cpu_tasks_are_the_kernels_that_run(tmp_path, monkeypatch):
    """Each task's default kernel is in the untuned program; storing a non-default candidate
    for every task puts each one's kernel in the program instead (the source changes)."""
    from dataclasses import asdict
    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "db.json"))
    _, target = _device_target()
    graph = _mixed_graph()
    todo = tuner.tasks(graph, target)
    sigs = [t.signature for t in todo]
    assert sigs[0].startswith("cpu:winograd:X1x16x32x32:W16x16x3x3") and todo[0].kind == "lowering"
    assert set(sigs[1:]) == {"cpu:panels:M33:N48:K40:B1:A0", "cpu:panels:M16:N256:K16:B16:A1",
                             "cpu:matmul:6:10:12", "cpu:conv:8:30:1:9"}, sigs
    with use_target(target):
        untuned = lower(graph).source
    kernel_tasks = [t for t in todo if t.kind == "kernel"]
    for t in kernel_tasks:
        assert len(t.candidates) > 1 and t.candidates[0] == t.default
        assert _in_source(tuner.kernel_for(t, t.default, target, "x"), untuned), t.signature
        assert not _in_source(tuner.kernel_for(t, t.candidates[1], target, "x"), untuned), t.signature
        tuning.save_entry(target, t.signature, asdict(t.candidates[1]), 1e-3)
    with use_target(target):
        tuned = lower(graph).source
    for t in kernel_tasks:
        assert _in_source(tuner.kernel_for(t, t.candidates[1], target, "x"), tuned), t.signature


@cpu_only
def test_cpu_winograd_decision_is_stored_and_used(tmp_path, monkeypatch):
    """A stored im2col win takes the conv off Winograd: the program has no Winograd kernels,
    the conv's panel GEMM task becomes the im2col one, and the result still matches NumPy."""
    from lgc.api import Executable
    from lgc.ops.nn import conv_ref
    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "db.json"))
    device, target = _device_target()
    graph = _mixed_graph()
    (decision,) = [t for t in tuner.tasks(graph, target) if t.kind == "lowering"]
    assert decision.candidates == [tuning.ConvChoice(1), tuning.ConvChoice(0)]
    with use_target(target):
        assert "winograd_input" in lower(graph).source
    tuning.save_entry(target, decision.signature, {"winograd": 0}, 1e-3)
    sigs = {t.signature for t in tuner.tasks(graph, target)}
    assert "cpu:panels:M16:N1024:K144:B1:A1" in sigs and "cpu:panels:M16:N256:K16:B16:A1" not in sigs
    with use_target(target):
        program = lower(graph)
    assert "winograd" not in program.source and "im2col_panels" in program.source
    conv = graph.nodes[[n.op for n in graph.nodes].index("conv")]
    consts = graph.constants()
    img = np.random.default_rng(0).standard_normal((1, 16, 32, 32)).astype(np.float32)
    feeds = {"x": np.zeros((33, 40), np.float32), "img": img, "s1": np.zeros((6, 10), np.float32),
             "s2": np.zeros((10, 12), np.float32), "bt": np.zeros((48, 40), np.float32)}
    got = list(Executable(program, graph, device).run(feeds).values())[1]
    want = conv_ref([img.astype(np.float64)] + [consts[v].astype(np.float64) for v in conv.inputs[1:]],
                    conv.attrs)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@cpu_only
def test_cpu_tune_end_to_end(tmp_path, monkeypatch, capsys):
    """Within its budget the tuner times every task on the device, stores each winner, and a
    compile afterwards runs exactly the winners' kernels and still computes the right thing."""
    from lgc.api import Executable
    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "db.json"))
    device, target = _device_target()
    graph = _mixed_graph()
    results = device_tuner.tune(graph, device, budget=60.0)
    assert "tune [" in capsys.readouterr().err
    todo = tuner.tasks(graph, target)           # after the decision: the kernels that run now
    assert set(results) == {t.signature for t in todo}
    (entries,) = json.loads((tmp_path / "db.json").read_text()).values()
    assert set(entries) == set(results)
    for sig, (params, seconds, base) in results.items():
        assert entries[sig]["params"] == params.__dict__ and seconds <= base < float("inf")
    exe = Executable.from_graph(graph, device)
    for t in todo:
        if t.kind == "kernel":
            assert _in_source(tuner.kernel_for(t, results[t.signature][0], target, "x"), exe.program.source)
    rng = np.random.default_rng(1)
    feeds = {name: rng.standard_normal(s.shape).astype(np.float32)
             for name, s in zip(exe.input_names, exe.program.inputs)}
    got = exe.run(feeds)
    x, bt = feeds["x"], feeds["bt"]
    np.testing.assert_allclose(got[exe.output_names[4]], x @ bt.T, rtol=1e-4, atol=1e-4)
    w = graph.constants()[graph.nodes[[n.op for n in graph.nodes].index("matmul")].inputs[1]]
    np.testing.assert_allclose(got[exe.output_names[0]], x @ w, rtol=1e-4, atol=1e-4)


@cpu_only
def test_wrong_candidate_never_wins(tmp_path, monkeypatch, capsys):
    """A candidate that skips half of K is faster and wrong: the output check rejects it."""
    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "db.json"))
    device, target = _device_target()
    graph = build_op_graph("matmul", [np.ones((64, 512), np.float32), np.ones((512, 64), np.float32)], {})
    from lgc.ir.builder import GraphBuilder
    b = GraphBuilder("mm")
    x = b.input("x", graph.inputs[0].type)
    graph = b.build([b.op("matmul", [x, b.const(np.random.default_rng(0).standard_normal((512, 64))
                                                .astype(np.float32))], {})])
    make = tuner.kernel_for

    def kernel_for(task, params, target, name):
        k = make(task, params, target, name)
        if params == cheat:          # the k loop cut to half: less work, a wrong product
            k.body = [ln.replace("k < 512;", "k < 256;").replace("k < K_;", "k < K_ / 2;") for ln in k.body]
            assert any("k < 256;" in ln or "k < K_ / 2;" in ln for ln in k.body)
        return k
    monkeypatch.setattr(device_tuner, "kernel_for", kernel_for)   # what tune() calls
    (task,) = tuner.tasks(graph, target)
    cheat = dataclasses.replace(task.default, rows=16)
    assert cheat in task.candidates
    (sig, (params, seconds, base)), = device_tuner.tune(graph, device, budget=30.0, progress=False).items()
    assert params != cheat
    assert f"{sig}: {cheat!r} computed a different result; rejected" in capsys.readouterr().err


@cpu_only
def test_stored_panel_rows_checked_against_the_layout(tmp_path, monkeypatch):
    """cpu_gemm.tile_rows takes a stored row count only where its A layout allows it (6 rows
    of packed A: a pointer per row)."""
    from lgc.backends.cpu_gemm import tile_rows
    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "db.json"))
    _, target = _device_target()
    cases = [((40, 64, 64, 1, 1), 16, 8),     # packed A padded to 40 rows: 16 does not divide
             ((48, 64, 64, 1, 1), 16, 16), ((48, 64, 64, 1, 1), 12, 12), ((48, 64, 64, 1, 1), 6, 6),
             ((33, 64, 64, 1, 0), 12, 12), ((33, 64, 64, 1, 0), 32, 8), ((5, 64, 64, 1, 0), 0, 5)]
    with use_target(target):
        for shape, stored, want in cases:
            tuning.save_entry(target, tuning.panel_signature(*shape), {"rows": stored}, 1e-3)
            assert tile_rows(*shape) == want, (shape, stored)
