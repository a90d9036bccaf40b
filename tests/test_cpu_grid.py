"""CPU elementwise kernels on a 2-D grid and concats kept in memory (lgc.backends.cpu_grid),
checked against NumPy; GPU targets keep the flat launch."""
import numpy as np
import pytest

from lgc.api import Executable
from lgc.backends.program import lower
from lgc.backends.target import GFX803, use_target
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType

F32 = dtypes.f32
RNG = np.random.default_rng(0)


def _bn_relu(b, x, c, seed):
    """relu(x * scale + shift), per channel: a batch norm folded, as ONNX import makes it."""
    r = np.random.default_rng(seed)
    s, t = (r.standard_normal((1, c, 1, 1)).astype(np.float32) for _ in range(2))
    y = b.op("relu", [b.op("add", [b.op("mul", [x, b.const(s)]), b.const(t)])])
    return y, (lambda v: np.maximum(v * s + t, 0))


def dense_block(shape=(1, 4, 8, 8), layers=3):
    """A DenseNet block in miniature: a stem conv, then layers that each take bn-relu of the
    concat so far, then a 1x1
    conv (a reshape into the GEMM's [N, C, P]) whose output joins the concat."""
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, shape))
    stem = np.random.default_rng(9).standard_normal((shape[1], shape[1], 1, 1)).astype(np.float32)
    cat = b.op("relu", [b.op("conv", [x, b.const(stem)], {"pads": (0,) * 4})])  # a temp, not the input
    ref_layers = []
    for i in range(layers):
        y, bn = _bn_relu(b, cat, cat.shape[1], i)
        wt = np.random.default_rng(10 + i).standard_normal((4, cat.shape[1], 1, 1)).astype(np.float32)
        new = b.op("conv", [y, b.const(wt)], {"pads": (0,) * 4})
        ref_layers.append((bn, wt))
        cat = b.op("concat", [cat, new], {"axis": 1})
    g = b.build([b.op("neg", [cat])])

    def reference(xv):
        cat = np.maximum(np.einsum("nchw,mc->nmhw", xv, stem[:, :, 0, 0]), 0)
        for bn, wt in ref_layers:
            cat = np.concatenate([cat, np.einsum("nchw,mc->nmhw", bn(cat), wt[:, :, 0, 0])], axis=1)
        return -cat
    return g, reference


def _compile(g):
    return Executable(lower(g), g)


def test_elementwise_kernel_launches_on_a_grid():
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (2, 5, 7, 9)))
    y, ref = _bn_relu(b, x, 5, 0)
    g = b.build([y])
    exe = _compile(g)
    [ln] = exe.program.launches
    assert ln.global_size == (7 * 9, 2 * 5)
    xv = RNG.standard_normal((2, 5, 7, 9)).astype(np.float32)
    [out] = exe.run({"x": xv}).values()
    np.testing.assert_allclose(out, ref(xv), rtol=1e-6, atol=1e-6)
    assert "in0[gid]" in exe.program.source     # the same-shaped read uses the flat id


def test_rank_two_and_switch_off(monkeypatch):
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (6, 40)))
    g = b.build([b.op("relu", [b.op("add", [x, b.const(np.arange(40, dtype=np.float32))])])])
    xv = RNG.standard_normal((6, 40)).astype(np.float32)
    for grid, launch in (("1", (40, 6)), ("0", (240,))):
        monkeypatch.setenv("LGC_CPU_GRID", grid)
        exe = _compile(g)
        assert [ln.global_size for ln in exe.program.launches] == [launch]
        [out] = exe.run({"x": xv}).values()
        np.testing.assert_allclose(out, np.maximum(xv + np.arange(40), 0), rtol=1e-6)


def test_split_axis():
    from lgc.backends.cpu_grid import split_axis
    assert [split_axis(d) for d in [(1, 64, 56, 56), (1, 64, 1, 1), (1, 1000), (8, 4), (2, 3, 4, 5, 6),
                                    (2, 3, 2, 2, 2)]] == [2, 1, 1, 0, 3, 1]


@pytest.mark.parametrize("shape", [(1, 4, 8, 8), (1, 16, 4, 4)])
def test_dense_block_concats_stay_in_memory(shape):
    """Each concat is written in place and read contiguously by the next bn-relu: no
    kernel computes a concat, and the values match NumPy. (The blocks are whole multiples
    of the device's sub-buffer alignment, else the runtime copies.)"""
    g, ref = dense_block(shape)
    exe = _compile(g)
    xv = RNG.standard_normal(shape).astype(np.float32)
    [out] = exe.run({"x": xv}).values()
    np.testing.assert_allclose(out, ref(xv.astype(np.float64)), rtol=1e-4, atol=1e-4)
    concats = {t for t, ln in enumerate(exe.program.launches) if "concat" in ln.kernel}
    assert len(concats) == 3 and concats <= exe.executor.skipped


def test_gpu_target_keeps_the_flat_launch():
    """Lowered (not run) for gfx803: the fused bn-relu is one flat dimension, the concat
    inlined into its readers as before."""
    g, _ = dense_block()
    with use_target(GFX803):
        prog = lower(g)
    bn = [ln for ln in prog.launches if "mul_add_relu" in ln.kernel]
    assert len(bn) == 3 and all(len(ln.global_size) == 1 for ln in bn)
    assert sum("concat_mul_add_relu" in ln.kernel for ln in bn) == 2
