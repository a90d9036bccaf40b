"""Shape-generic CPU kernels: sizes passed as kernel arguments (Kernel.params), so layers that
differ only in sizes share one kernel (PoCL compiles each kernel again at its first launch).

Checked against NumPy: each launch gets its own sizes, a kernel used with one set of sizes
keeps them as constants, LGC_GENERIC_KERNELS=0 gives the same numbers with one kernel per
layer, and artifacts carry the sizes (format version 3) and refuse bad ones.
"""
import json
import zipfile

import numpy as np
import pytest

import lgc
from lgc.api import Executable
from lgc.backends import cpu_lowering
from lgc.backends.program import lower
from lgc.errors import ArtifactError
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType
from lgc.ops.nn import conv_ref
from lgc.runtime.artifact import CONTENT, write_artifact

F32 = dtypes.by_name("f32")


@pytest.fixture(autouse=True)
def always_pack(monkeypatch):
    monkeypatch.setattr(cpu_lowering, "MIN_FLOPS", 0)
    monkeypatch.setattr(cpu_lowering, "MIN_N", 1)
    monkeypatch.setattr(cpu_lowering, "MIN_M", 1)
    monkeypatch.setattr(cpu_lowering, "MIN_WINOGRAD_CHANNELS", 1)


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def two_matmuls(rng):
    """relu(a1 @ b1) and relu(a2 @ b2): same kind, different K and N, B packed at run time."""
    a1, b1, a2, b2 = rand(rng, (8, 23)), rand(rng, (23, 37)), rand(rng, (8, 40)), rand(rng, (40, 20))
    g = GraphBuilder("two")
    ins = [g.input(n, TensorType(F32, v.shape)) for n, v in (("a1", a1), ("b1", b1), ("a2", a2), ("b2", b2))]
    outs = [g.op("relu", [g.op("matmul", [ins[0], ins[1]])]), g.op("relu", [g.op("matmul", [ins[2], ins[3]])])]
    feeds = {"a1": a1, "b1": b1, "a2": a2, "b2": b2}
    want = [np.maximum(a1.astype(np.float64) @ b1, 0), np.maximum(a2.astype(np.float64) @ b2, 0)]
    return g.build(outs), feeds, want


def by_kind(program, kind):
    return [ln for ln in program.launches if ln.kernel.split("_", 1)[1] == kind]


def test_layers_share_kernels_with_their_own_sizes():
    graph, feeds, want = two_matmuls(np.random.default_rng(0))
    program = lower(graph)
    for kind in ("pack_panels", "matmul_panels_relu"):
        lns = by_kind(program, kind)
        assert len(lns) == 2 and lns[0].kernel == lns[1].kernel, program.launches
        assert lns[0].scalars and lns[0].scalars != lns[1].scalars
    assert len(program.kernel_names) == 2
    got = Executable(program, graph).run(feeds)
    for g, w in zip(got.values(), want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_switched_off_one_kernel_per_layer_same_numbers(monkeypatch):
    graph, feeds, want = two_matmuls(np.random.default_rng(0))
    monkeypatch.setenv("LGC_GENERIC_KERNELS", "0")
    program = lower(graph)
    assert len(program.kernel_names) == 4 and not any(ln.scalars for ln in program.launches)
    assert "const int K_ = 23;" in program.source and "const int K_ = 40;" in program.source
    got = Executable(program, graph).run(feeds)
    for g, w in zip(got.values(), want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_a_kernel_used_once_keeps_constant_sizes():
    rng = np.random.default_rng(1)
    a, b = rand(rng, (8, 23)), rand(rng, (23, 37))
    g = GraphBuilder("one")
    x, y = g.input("a", TensorType(F32, a.shape)), g.input("b", TensorType(F32, b.shape))
    graph = g.build([g.op("matmul", [x, y])])
    program = lower(graph)
    assert not any(ln.scalars for ln in program.launches)
    assert "const int K_ = 23;" in program.source and "const int N_ = 37;" in program.source
    got = list(Executable(program, graph).run({"a": a, "b": b}).values())[0]
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def test_winograd_layers_of_two_sizes_share_kernels():
    """conv -> relu -> 2x2 max pool -> conv -> relu: both 3x3 convs on Winograd, the second on
    a smaller image with other channel counts, through the same output transform kernel (the
    input transform keeps constant sizes: one kernel per layer shape)."""
    rng = np.random.default_rng(2)
    x, w1, w2 = rand(rng, (1, 4, 10, 12)), rand(rng, (6, 4, 3, 3)), rand(rng, (5, 6, 3, 3))
    pad = {"strides": (), "pads": (1, 1, 1, 1), "dilations": (), "group": 1}
    g = GraphBuilder("wino2")
    xv = g.input("x", TensorType(F32, x.shape))
    h = g.op("relu", [g.op("conv", [xv, g.const(w1)], {"pads": (1, 1, 1, 1)})])
    h = g.op("max_pool", [h], {"kernel": (2, 2), "strides": (2, 2)})
    graph = g.build([g.op("relu", [g.op("conv", [h, g.const(w2)], {"pads": (1, 1, 1, 1)})])])
    program = lower(graph)
    lns = by_kind(program, "winograd_output_relu")
    assert len(lns) == 2 and lns[0].kernel == lns[1].kernel and lns[0].scalars != lns[1].scalars
    lns = by_kind(program, "winograd_input")
    assert len(lns) == 2 and lns[0].kernel != lns[1].kernel and not lns[0].scalars
    y = np.maximum(conv_ref([x.astype(np.float64), w1.astype(np.float64)], pad)[0], 0)
    y = y.reshape(1, 6, 5, 2, 6, 2).max(axis=(3, 5))
    y = np.maximum(conv_ref([y, w2.astype(np.float64)], pad)[0], 0)
    got = list(Executable(program, graph).run({"x": x}).values())[0]
    np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-4)


def test_artifact_keeps_the_sizes(tmp_path):
    graph, feeds, want = two_matmuls(np.random.default_rng(0))
    exe = Executable(lower(graph), graph)
    path = tmp_path / "g.lgc"
    exe.save(path)
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        members = {n: z.read(n) for n in z.namelist()}
    assert manifest["format_version"] == 4
    assert sum(1 for ln in manifest["launches"] if ln.get("scalars")) == 4
    got = lgc.load(path).run(feeds)
    for g, w in zip(got.values(), want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    next(ln for ln in manifest["launches"] if ln.get("scalars"))["scalars"][0] = -1
    members["manifest.json"] = json.dumps(manifest).encode()
    bad = tmp_path / "bad.lgc"
    write_artifact(bad, {k: members[k] for k in CONTENT})        # the digest table recomputed
    with pytest.raises(ArtifactError, match=r"launches\[\d+\]\.scalars\[0\] is -1"):
        lgc.load(bad)
