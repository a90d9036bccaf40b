"""Concats made in place: producers write straight into their block of the concat's output
(lgc.backends.program._concats_in_place), the planner treats the blocks as one tensor, and the
runtime skips the concat's kernel; where that is not legal the copy stays."""
import numpy as np
import pytest

from lgc.api import Executable
from lgc.backends.memory import in_place_launches
from lgc.backends.program import lower
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType

F32 = dtypes.f32


def _weights(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def conv_np(x, w, pad):
    """Stride-1 NCHW convolution in plain NumPy (the reference)."""
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    out = np.zeros((n, m, oh, ow), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nchw,mc->nmhw", xp[:, :, i:i + oh, j:j + ow], w[:, :, i, j])
    return out


def fire(extra_use=False, concat_input=False, batch=1, output_branch=False):
    """Fire-module shape: relu(conv1x1(x)) and relu(conv3x3(x)) concatenated on channels,
    then a max_pool (so the concat's output is a temp). extra_use: the 1x1 branch also feeds
    second graph output (through neg); output_branch: the 1x1 branch is itself a graph
    output; concat_input: the graph input x is a third concat input."""
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (batch, 4, 8, 8)))
    w1, w3 = _weights((6, 4, 1, 1), 1), _weights((5, 4, 3, 3), 2)
    e1 = b.op("relu", [b.op("conv", [x, b.const(w1)], {"pads": (0,) * 4})])
    e3 = b.op("relu", [b.op("conv", [x, b.const(w3)], {"pads": (1,) * 4})])
    parts = [e1, e3] + ([x] if concat_input else [])
    cat = b.op("concat", parts, {"axis": 1})
    pooled = b.op("max_pool", [cat], {"kernel": (2, 2), "strides": (2, 2)})
    outs = [pooled] + ([b.op("neg", [e1])] if extra_use else []) + ([e1] if output_branch else [])
    g = b.build(outs)

    def reference(xv):
        r1 = np.maximum(conv_np(xv, w1, 0), 0)
        r3 = np.maximum(conv_np(xv, w3, 1), 0)
        c = np.concatenate([r1, r3] + ([xv] if concat_input else []), axis=1)
        n, ch, h, w = c.shape
        p = c.reshape(n, ch, h // 2, 2, w // 2, 2).max(axis=(3, 5))
        return [p] + ([-r1] if extra_use else []) + ([r1] if output_branch else [])
    return g, reference


def run(graph, reference, batch=1):
    x = np.random.default_rng(0).standard_normal((batch, 4, 8, 8)).astype(np.float32)
    exe = Executable(lower(graph), graph)
    got = exe.run({"x": x})
    for out, ref in zip(got.values(), reference(x.astype(np.float64))):
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    return exe


def concat_launches(exe):
    return [t for t, ln in enumerate(exe.program.launches) if "concat" in ln.kernel]


def test_conv_relu_outputs_are_written_into_the_concat():
    exe = run(*fire())
    ex = exe.executor
    [t] = concat_launches(exe)
    assert t in in_place_launches(exe.program.buffers, exe.program.launches)
    assert t in ex.skipped and t not in ex._steps   # no concat kernel runs


def test_concat_input_read_elsewhere_is_read_from_its_block():
    """Another kernel reading an input reads it from its block of the concat's output: no
    kernel writes its inputs, so the values are the same."""
    exe = run(*fire(extra_use=True))
    [t] = concat_launches(exe)
    assert t in exe.executor.skipped


def test_concat_input_that_is_a_graph_output_keeps_the_copy():
    exe = run(*fire(output_branch=True))
    [t] = concat_launches(exe)
    assert not in_place_launches(exe.program.buffers, exe.program.launches)
    assert t in exe.executor._steps


def test_concat_of_a_graph_input_keeps_the_copy():
    exe = run(*fire(concat_input=True))
    [t] = concat_launches(exe)
    assert not in_place_launches(exe.program.buffers, exe.program.launches)
    assert t in exe.executor._steps


def test_batch_two_keeps_the_copy():
    """At batch 2 an input is not one contiguous block of the output."""
    g, ref = fire(batch=2)
    exe = run(g, ref, batch=2)
    assert not in_place_launches(exe.program.buffers, exe.program.launches)


def test_switch_off(monkeypatch):
    monkeypatch.setenv("LGC_CONCAT_INPLACE", "0")
    exe = run(*fire())
    assert not exe.executor.skipped


@pytest.mark.parametrize("share", [True, False])
def test_in_place_with_and_without_the_memory_plan(share):
    g, ref = fire()
    exe = Executable(lower(g, share_buffers=share), g)
    x = np.random.default_rng(3).standard_normal((1, 4, 8, 8)).astype(np.float32)
    [out] = exe.run({"x": x}).values()
    np.testing.assert_allclose(out, ref(x.astype(np.float64))[0], rtol=1e-4, atol=1e-4)
    assert exe.executor.skipped


def test_artifact_round_trip_keeps_the_concat_in_place(tmp_path):
    """The buffer table alone says which launches are in-place concats (no new field), so
    a saved and loaded program skips them too."""
    from lgc.artifact import load_artifact, save_artifact
    g, ref = fire()
    exe = Executable(lower(g), g)
    save_artifact(tmp_path / "fire.lgc", exe)
    loaded = load_artifact(tmp_path / "fire.lgc")
    x = np.random.default_rng(4).standard_normal((1, 4, 8, 8)).astype(np.float32)
    [out] = loaded.run({"x": x}).values()
    np.testing.assert_allclose(out, ref(x.astype(np.float64))[0], rtol=1e-4, atol=1e-4)
    assert loaded.executor.skipped == exe.executor.skipped != set()


@pytest.mark.parametrize("side", [8, 6])
def test_nested_concats_are_one_buffer(side):
    """concat(concat(a, b), c) with the inner concat also read elsewhere (DenseNet's
    pattern): every block lands in the outer output. At 6x6 the second block's byte offset
    in the inner concat (576) is not aligned for a sub-buffer on the devices here, so that
    concat runs as a copy (into its real view in the outer output, which can still be
    skipped); the results are the same."""
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (1, 4, side, side)))
    convs = [b.op("relu", [b.op("conv", [x, b.const(_weights((4, 4, 1, 1), s))],
                                {"pads": (0,) * 4})]) for s in range(3)]
    inner = b.op("concat", convs[:2], {"axis": 1})
    inner_pool = b.op("max_pool", [inner], {"kernel": (2, 2), "strides": (2, 2)})
    outer = b.op("concat", [inner, convs[2]], {"axis": 1})
    top = b.op("max_pool", [outer], {"kernel": (2, 2), "strides": (2, 2)})
    g = b.build([top, inner_pool])
    xv = np.random.default_rng(5).standard_normal((1, 4, side, side)).astype(np.float32)
    exe = Executable(lower(g), g)
    got = list(exe.run({"x": xv}).values())
    rs = [np.maximum(conv_np(xv.astype(np.float64), _weights((4, 4, 1, 1), s), 0), 0)
          for s in range(3)]
    pool = lambda c: c.reshape(1, c.shape[1], side // 2, 2, side // 2, 2).max(axis=(3, 5))  # noqa: E731
    np.testing.assert_allclose(got[0], pool(np.concatenate(rs, 1)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[1], pool(np.concatenate(rs[:2], 1)), rtol=1e-4, atol=1e-4)
    cats = concat_launches(exe)
    align = exe.executor.device.cl_device.mem_base_addr_align // 8
    assert len(cats) == 2
    if side == 8 and 4 * 64 * 4 % align == 0:
        assert set(cats) <= exe.executor.skipped
    elif side == 6:
        assert cats[0] not in exe.executor.skipped and cats[0] in exe.executor._steps
