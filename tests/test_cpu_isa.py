"""The CPU's vector-ISA class picks the panel GEMM's tile from a shipped table; every tile
the tables or the tuner can pick computes the right product (ragged rows and columns, an odd
number of B panels for a two-panel tile, batches, a fused epilogue), checked against NumPy."""
import numpy as np
import pytest

from lgc.api import Executable
from lgc.backends import cpu_isa, cpu_lowering, tuning
from lgc.backends.cpu_gemm import panel_tile
from lgc.backends.program import lower
from lgc.backends.target import Target, use_target
from lgc.backends.tuning import PanelTile
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType

F32 = dtypes.by_name("f32")


@pytest.mark.parametrize("name,driver,want", [
    ("pthread-skylake-avx512-AMD EPYC", "HSTR: pthread-x86_64-pc-linux-gnu-skylake-avx512", "avx512"),
    ("cpu-sapphirerapids-Intel(R) Xeon(R) Platinum 8480+", "", "avx512"),
    ("cpu-znver4-AMD Ryzen 9 7950X", "", "avx512"),
    ("pthread-haswell-AMD EPYC", "HSTR: pthread-x86_64-pc-linux-gnu-haswell", "avx2"),
    ("cpu-skylake-Intel(R) Core(TM) i7-6700", "", "avx2"),
    ("cpu-znver3-AMD EPYC 7763", "", "avx2"),
    ("pthread-penryn-Intel", "HSTR: pthread-x86_64-pc-linux-gnu-penryn", "vec128"),
    ("pthread-AMD EPYC", "HSTR: pthread-x86_64-unknown-linux-gnu-generic", "vec128"),   # pip's PoCL
    ("cpu-cortex-a76-ARM", "", "vec128"),
])
def test_isa_class_from_the_device(name, driver, want):
    target = Target(name=name, key=f"Portable Computing Language|{name}|{driver}|OpenCL 3.0 PoCL")
    assert cpu_isa.isa_class(target) == want


def test_unknown_cpu_falls_back_to_the_host():
    assert cpu_isa.isa_class(Target(name="cpu-futurecore-Someone")) == cpu_isa.host_class()
    assert cpu_isa.host_class() in cpu_isa.CLASSES


@pytest.mark.parametrize("cls,cpu", [("avx512", "skylake-avx512"), ("avx2", "haswell"), ("vec128", "penryn")])
def test_each_class_has_a_table_the_tile_takes(cls, cpu, tmp_path, monkeypatch):
    monkeypatch.setenv("LGC_TUNE_DB", str(tmp_path / "db.json"))
    shipped = tuning._shipped(f"cpu-{cls}")
    with use_target(Target(name=f"pthread-{cpu}-Test CPU")):
        for packed in (0, 1):
            want = PanelTile(**shipped[f"cpu:panels:A{packed}"]["params"])
            assert panel_tile(256, 512, 64, 1, packed) == want
        # a tuned entry for one shape overrides the class default, field by field
        tuning.save_entry(Target(name=f"pthread-{cpu}-Test CPU"), tuning.panel_signature(256, 512, 64, 1, 1),
                          {"rows": 16}, 1e-3)
        assert panel_tile(256, 512, 64, 1, 1).rows == 16
        assert panel_tile(256, 512, 64, 1, 1).acc == shipped["cpu:panels:A1"]["params"]["acc"]


def test_tiles_the_layout_cannot_take_fall_back():
    bad = {"rows": 17, "acc": 3, "panels": 3, "order": 2}
    with tuning.forced({"cpu:panels:A1": bad, "cpu:panels:A0": bad}):
        assert panel_tile(64, 64, 64, 1, 1) == PanelTile(8, 16, 1, 0)
        assert panel_tile(64, 64, 64, 1, 0) == PanelTile(8, 16, 1, 0)
    with tuning.forced({"cpu:panels:A1": {"rows": 16}}):
        assert panel_tile(40, 64, 64, 1, 1).rows == 8       # whole panels past A's padding to 40
        assert panel_tile(48, 64, 64, 1, 1).rows == 16
    with tuning.forced({"cpu:panels:A1": {"rows": 6}, "cpu:panels:A0": {"rows": 8, "panels": 2}}):
        assert panel_tile(40, 64, 64, 1, 1).rows == 6        # a pointer per row: any count
        assert panel_tile(5, 16, 64, 1, 0) == PanelTile(5, 16, 1, 0)       # M and N cap the tile


TILES = [dict(rows=8, acc=16, panels=2, order=1), dict(rows=4, acc=8, panels=1, order=0),
         dict(rows=2, acc=4, panels=1, order=0), dict(rows=12, acc=16, panels=2, order=0),
         dict(rows=16, acc=8, panels=2, order=1), dict(rows=3, acc=4, panels=2, order=1),
         dict(rows=6, acc=8, panels=1, order=0)]


@pytest.mark.parametrize("tile", TILES, ids=lambda t: "{rows}x{panels}/{acc}/o{order}".format(**t))
@pytest.mark.parametrize("M,K,N,batch,const", [(33, 20, 40, (), True), (70, 9, 49, (2,), False),
                                               (24, 31, 16, (), True)])
def test_every_tile_computes_the_product(monkeypatch, tile, M, K, N, batch, const):
    """A @ B + bias, relu: 40 columns are 3 panels (a two-panel tile's second one clamped),
    49 are 4 with a ragged last; 33 and 70 rows leave a ragged row tile."""
    monkeypatch.setattr(cpu_lowering, "MIN_FLOPS", 0)
    monkeypatch.setattr(cpu_lowering, "MIN_M_PACKED", 64)     # A packed at run time from 64 rows
    rng = np.random.default_rng(M + N)
    a = rng.standard_normal(batch + (M, K)).astype(np.float32)
    w = rng.standard_normal((K, N)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    g = GraphBuilder("mm")
    x = g.input("a", TensorType(F32, a.shape))
    y = g.const(w) if const else g.input("b", TensorType(F32, w.shape))
    graph = g.build([g.op("relu", [g.op("add", [g.op("matmul", [x, y]), g.const(bias)])])])
    feeds = {"a": a} if const else {"a": a, "b": w}
    with tuning.forced({"cpu:panels:A0": tile, "cpu:panels:A1": tile}):
        program = lower(graph)
    assert any("matmul_panels" in k for k in program.kernel_names), program.kernel_names
    got = list(Executable(program, graph).run(feeds).values())[0]
    want = np.maximum(a.astype(np.float64) @ w + bias, 0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(K))
