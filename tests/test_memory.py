"""Memory planner: temps share buffers only when their lifetimes are disjoint, aliases extend
lifetimes, the peak stays within 1.25x the lower bound on every light model, and results do
not change (ResNet-50 with random weights against onnxruntime)."""
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from lgc.backends.memory import ALIGN, live_ranges, plan, planned_ranges
from lgc.backends.program import lower
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType
from lgc.passes import optimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from random_weights import LIGHT_MODELS, light_model_path, randomize  # noqa: E402

F32 = dtypes.f32


def check_plan(program):
    """Temps live at the same launch never overlap in the arena; offsets are aligned. (A
    concat made in place is one tensor with its inputs: lgc.backends.memory.planned_ranges.)"""
    ranges = planned_ranges(program.buffers, program.launches)
    p = plan(program.buffers, program.launches)
    assert set(p.offsets) == set(ranges)
    span = {b: (p.offsets[b], p.offsets[b] + program.buffers[b].nbytes) for b in ranges}
    assert all(o % ALIGN == 0 and e <= p.peak_bytes for o, e in span.values())
    items = sorted(ranges)
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            (la, ha), (lb, hb) = ranges[a], ranges[b]
            if not (ha < lb or hb < la):
                assert span[a][1] <= span[b][0] or span[b][1] <= span[a][0], (a, b)
    assert p.lower_bound_bytes <= p.peak_bytes
    assert p.peak_bytes <= sum(-(-program.buffers[b].nbytes // ALIGN) * ALIGN for b in ranges)
    return p


def chain_graph(alias_late=False):
    """A chain of opaque ops (one kernel each, whatever fusion does)."""
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (64, 64)))
    t = b.op("softmax", [x], {"axis": 0})
    r = b.op("reshape", [t], {"shape": (4096,)})
    v = t
    for k in range(6):
        v = b.op("softmax", [v], {"axis": k % 2})
    if alias_late:   # the reshape of t is read at the very end: t's buffer must stay live
        v = b.op("cumsum", [b.op("add", [b.op("reshape", [v], {"shape": (4096,)}), r])], {"axis": 0})
    return b.build([v])


def test_chain_reuses_two_buffers():
    program = lower(chain_graph(), share_buffers=False)
    p = check_plan(program)
    assert p.lower_bound_bytes == 2 * 64 * 64 * 4
    assert p.peak_bytes == p.lower_bound_bytes


def test_alias_extends_the_life_of_its_buffer():
    program = lower(chain_graph(alias_late=True), share_buffers=False)
    p = check_plan(program)
    first = program.launches[0].args[-1]
    ranges = live_ranges(program.buffers, program.launches)
    assert ranges[first][0] == 0 and ranges[first][1] >= len(program.launches) - 2
    assert p.lower_bound_bytes == 3 * 64 * 64 * 4


def test_sizes_are_aligned():
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (3,)))
    y = b.op("softmax", [b.op("softmax", [x], {"axis": 0})], {"axis": 0})
    p = check_plan(lower(b.build([y]), share_buffers=False))
    assert p.peak_bytes == ALIGN and p.lower_bound_bytes == 12


def test_shared_buffers_give_the_same_results(tmp_path):
    import lgc
    from lgc.api import Executable
    graph = chain_graph(alias_late=True)
    x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    shared = lower(graph)
    arena = shared.buffers[-1]
    views = [s for s in shared.buffers if s.arena >= 0]
    assert len(views) == 8 and all(v.arena == len(shared.buffers) - 1 for v in views)
    assert arena.nbytes == 3 * 64 * 64 * 4 < sum(v.nbytes for v in views)
    a = Executable(shared, graph)(x)
    b = Executable(lower(graph, share_buffers=False), graph)(x)
    np.testing.assert_array_equal(a, b)
    exe = lgc.compile(graph)
    np.testing.assert_array_equal(exe(x), a)
    exe.save(tmp_path / "m.lgc")                     # the arena travels in the artifact
    loaded = lgc.load(tmp_path / "m.lgc")
    assert [(s.arena, s.offset) for s in loaded.program.buffers] == \
        [(s.arena, s.offset) for s in exe.program.buffers]
    np.testing.assert_array_equal(loaded(x), a)


def test_artifact_refuses_a_view_outside_its_arena():
    from lgc.artifact import ArtifactError, program_from
    from lgc.backends.program import BufferSpec
    prog = lower(chain_graph())
    manifest = {"buffers": [dict(nbytes=s.nbytes, role=s.role, name=s.name, arena=s.arena,
                                 offset=s.offset + (s.nbytes if s.arena >= 0 else 0))
                            for s in prog.buffers],
                "launches": [], "constants": [], "inputs": [], "outputs": []}
    with pytest.raises(ArtifactError, match="outside its arena"):
        program_from(manifest, {"kernels.cl": prog.source.encode(), "weights.bin": b""})
    assert BufferSpec(4, "temp").arena == -1


def _graph(name, random):
    from lgc.frontend.onnx.importer import default_input_types, import_graph
    m = onnx.load(light_model_path(name))
    if random:
        m = randomize(m, 0)
    return m, optimize(import_graph(m, default_input_types(m)), 2)


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_models_peak_within_125_percent_of_lower_bound(name):
    for random in (False, True):
        _, graph = _graph(name, random)
        p = check_plan(lower(graph, share_buffers=False))
        assert p.peak_bytes <= 1.25 * p.lower_bound_bytes, (name, random, p.summary())


@pytest.mark.slow
def test_resnet50_with_shared_buffers_matches_onnxruntime():
    import onnxruntime as ort

    import lgc
    m, _ = _graph("resnet50", True)
    last = m.graph.node[-1]                  # compare logits: a saturated softmax hides errors
    assert last.op_type == "Softmax"
    m.graph.output[0].name = last.input[0]
    del m.graph.node[-1]
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"gpu_0/data_0": x})[0]
    model = lgc.compile(m.SerializeToString())
    got = model(x)
    exe = next(iter(model._cache.values()))
    views = [s for s in exe.program.buffers if s.arena >= 0]
    assert len(views) > 50 and exe.program.buffers[-1].nbytes < sum(v.nbytes for v in views) / 2
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_cli_inspect_memory(small_model_path, capsys):
    from lgc.tools.cli import main
    assert main(["inspect", str(small_model_path), "--no-ir", "--memory"]) == 0
    out = capsys.readouterr().out
    assert "peak activation bytes" in out and "lower bound" in out and "ratio: " in out
