"""The digits CNN with 16 and 14 conv1 channels: CPU time under cpu_lowering's Winograd rule
and under the previous one (every 3x3 conv with 16+ channels on Winograd), interleaved.

examples/cnn_digits.py's CNN with its seeded untrained weights, written as ONNX by
bench/search.py. Its conv2 (16 -> 32 at 4x4 outputs) has 4 Winograd tiles per image, a
quarter of a panel of 16: the previous rule took Winograd there, and pruning conv1 to 14
channels (under MIN_WINOGRAD_CHANNELS) took im2col and ran the model 45% faster. The
previous rule is restored for its compile by patching cpu_lowering._winograd_fewer_products.
Prints the CPU, the kernels of each compile and per (channels, batch) the median time
of each rule and their ratio; the compiled-program cache is off. --sweep instead times single
3x3 pad-1 convs (batch x C x M x side) on Winograd and off it (LGC_CPU_WINOGRAD=0: im2col, or
the direct kernel under MIN_FLOPS), with the path the rule now picks: the rule's calibration.

    python bench/digits_winograd.py [--batches 64,1] [--runs 200]
    python bench/digits_winograd.py --sweep 64x16x32x4,64x16x32x6,1x512x512x4
"""
from __future__ import annotations

import argparse
import os
import tempfile
from unittest import mock

import common  # noqa: F401  (this checkout's lgc on sys.path)
import numpy as np
from common import cpu_model, env, interleaved, say
from search import _cnn_digits, write_digits_onnx


def compile_at(path: str, batch: int, previous: bool):
    import lgc
    from lgc.backends import cpu_lowering
    rule = (lambda out_hw: True) if previous else cpu_lowering._winograd_fewer_products
    with mock.patch.object(cpu_lowering, "_winograd_fewer_products", rule):
        m = lgc.Model(path, device="cpu")
        t = m.default_types()["x"]
        return m.executable({"x": type(t)(t.dtype, (batch, 1, 8, 8))})


def sweep(shapes: str, runs: int) -> None:
    from lgc.api import Executable
    from lgc.backends import cpu_lowering
    from lgc.backends.program import lower
    from lgc.ir import dtypes
    from lgc.ir.builder import GraphBuilder
    from lgc.ir.graph import TensorType
    for n, c, m, side in (tuple(map(int, s.split("x"))) for s in shapes.split(",")):
        rng = np.random.default_rng(0)
        g = GraphBuilder("conv3x3")
        xv = g.input("x", TensorType(dtypes.by_name("f32"), (n, c, side, side)))
        w = (rng.standard_normal((m, c, 3, 3)) * 0.2).astype(np.float32)
        graph = g.build([g.op("relu", [g.op("conv", [xv, g.const(w)], {"pads": (1, 1, 1, 1)})])])
        with mock.patch.object(cpu_lowering, "_winograd_fewer_products", lambda out_hw: True):
            wino = lower(graph)
        with env(LGC_CPU_WINOGRAD="0"):
            off = lower(graph)
        picks = "winograd" if any("winograd" in k for k in lower(graph).kernel_names) else "off"
        x = {"x": rng.standard_normal((n, c, side, side)).astype(np.float32)}
        exes = {"winograd": Executable(wino, graph), "off": Executable(off, graph)}
        t = interleaved({k: (lambda e=e: e.run(x)) for k, e in exes.items()}, runs, lead_in_s=0.01)
        med = {k: float(np.median(v)) * 1e3 for k, v in t.items()}
        off_kind = "im2col" if any("im2col" in k for k in off.kernel_names) else "direct"
        say(f"{n}x{c}x{m}x{side}: winograd {med['winograd']:.3f} ms  {off_kind} {med['off']:.3f} ms  rule picks {picks}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="64,1")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--sweep", metavar="NxCxMxSIDE,...", help="time single convs instead")
    args = ap.parse_args()
    os.environ["LGC_CACHE_COMPILED"] = "0"
    say(f"CPU: {cpu_model()}")
    if args.sweep:
        return sweep(args.sweep, args.runs)
    folder = tempfile.mkdtemp()
    for c1 in (16, 14):
        path = os.path.join(folder, f"digits{c1}.onnx")
        write_digits_onnx(path, _cnn_digits().init(0, c1=c1))
        for batch in map(int, args.batches.split(",")):
            exes = {"previous": compile_at(path, batch, True), "now": compile_at(path, batch, False)}
            x = {"x": np.random.default_rng(0).standard_normal((batch, 1, 8, 8)).astype(np.float32)}
            outs = {k: list(e.run(x).values())[0] for k, e in exes.items()}
            np.testing.assert_allclose(outs["now"], outs["previous"], rtol=1e-4, atol=1e-4)
            for k, e in exes.items():
                kernels = [n.split("_", 1)[1] for n in e.program.kernel_names]
                say(f"  c1={c1} batch={batch} {k}: {' '.join(kernels)}")
            t = interleaved({k: (lambda e=e: e.run(x)) for k, e in exes.items()}, args.runs, lead_in_s=0.01)
            med = {k: float(np.median(v)) * 1e3 for k, v in t.items()}
            say(f"c1={c1:2d} batch={batch:3d}  previous {med['previous']:.3f} ms  now {med['now']:.3f} ms"
                f"  now/previous {med['now'] / med['previous']:.2f}")


if __name__ == "__main__":
    main()
