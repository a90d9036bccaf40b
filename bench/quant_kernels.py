"""The int8 conv kernel against the float32 ones, layer by layer (ResNet-50 shapes, batch 1).

    python bench/quant_kernels.py [--runs 10] [--json out.json]

For each conv: `qconv` with int8 weights (float activations, as --quantize int8-weights
builds it; on CPU targets lowered onto int8 row panels), the float32 conv on the default
kernels (CPU panel GEMM, Winograd where it applies) and on the direct kernels
(LGC_CPU_PANELS=0 when compiling); interleaved, medians, ratios.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import common  # noqa: F401  (this checkout's lgc on sys.path)
from common import interleaved, load, say, write_json

SHAPES = [  # (C, M, kernel, spatial, stride)
    (64, 64, 3, 56, 1), (256, 64, 1, 56, 1), (128, 128, 3, 28, 1), (256, 256, 3, 14, 1),
    (1024, 256, 1, 14, 1), (512, 512, 3, 7, 1), (256, 256, 3, 28, 2)]


def main(argv=None) -> int:
    import lgc
    from lgc.compress import quantize_graph
    from lgc.trace import bind
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'conv':<28} {'qconv ms':>9} {'panel ms':>9} {'direct ms':>10} {'q/panel':>8} {'q/direct':>9}")
    for C, M, k, S, st in SHAPES:
        w = (rng.standard_normal((M, C, k, k)) * 0.05).astype(np.float32)
        b = np.zeros(M, np.float32)
        x = rng.standard_normal((1, C, S, S)).astype(np.float32)
        g = lgc.make_ir(lambda x: bind("conv", x, w, b, pads=(k // 2,) * 4, strides=(st, st)))(x)
        say(f"compiling {C}->{M} {k}x{k} @{S} s{st}")
        exes = {"q": lgc.compile(quantize_graph(g, None, mode="int8-weights")), "panel": lgc.compile(g)}
        os.environ["LGC_CPU_PANELS"] = "0"
        try:
            exes["direct"] = lgc.compile(g)
        finally:
            del os.environ["LGC_CPU_PANELS"]
        for e in exes.values():
            e(x)
        t = {k2: float(np.median(v)) * 1e3 for k2, v in
             interleaved({k2: (lambda e=e: e(x)) for k2, e in exes.items()}, args.runs).items()}
        name = f"{C}->{M} {k}x{k} @{S} stride {st}"
        rows.append({"conv": name, **{f"{k2}_ms": v for k2, v in t.items()}})
        print(f"{name:<28} {t['q']:>9.3f} {t['panel']:>9.3f} {t['direct']:>10.3f} "
              f"{t['q'] / t['panel']:>8.2f} {t['q'] / t['direct']:>9.2f}")
    print(load())
    write_json(args.json, {"quant_kernels": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
