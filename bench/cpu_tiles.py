"""Panel-GEMM tiles on this CPU: the kernel time of each candidate tile on GEMM shapes, timed
interleaved (lgc.runtime.tuner.time_kernels: one launch of each per round, best of the
rounds), to choose the defaults of lgc/backends/tuned/cpu-<class>.json.

A tile is rows/acc/panels/order (lgc.backends.tuning.PanelTile): rows of C, accumulator
lanes, B panels of 16 columns, launch order (1: rows first). Shapes are MxNxKxA[xB]: C is
B x M x N, K deep, A packed in row panels (1, a constant such as conv weights) or read by
rows (0). Every candidate's output is checked against the first's (a '!' marks a mismatch).
The default shapes are ResNet-50's panel GEMMs at batch 1 (`lgc tune`'s list) and three of
GPT-2's / ViT's. Other vector ISAs of the same machine: PoCL's kernel library by name, e.g.
POCL_KERNELLIB_NAME=avx2 (haswell code) or sse41 (penryn).

    python bench/cpu_tiles.py [--tiles 8/16/1/0,8/16/2/1] [--shapes 2048x2048x2048x1] [--runs 6]
"""
from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import load

RESNET50 = ("256x64x256x1x16,1024x196x256x1,256x196x1024x1,256x3136x64x1,512x784x128x1,128x208x128x1x16,"
            "64x784x64x1x16,128x784x512x1,2048x49x512x1,512x16x512x1x16,64x12544x147x1,128x784x1152x1,"
            "256x196x2304x1,512x49x4608x1,64x3136x256x1,64x3136x64x1")
TRANSFORMER = "64x2304x768x0,64x768x3072x0,197x768x768x0"
TILES = "8/16/1/0,8/16/2/1,12/16/2/1,16/16/1/1,4/8/1/0,6/8/1/0,2/4/1/0"


def panel_node(M, N, K, packed, B, target):
    """The matmul_panels node lgc makes of A [B, M, K] @ X [B, K, N] (A a constant when packed)."""
    from lgc.backends.backend import backend_for
    from lgc.backends.target import use_target
    from lgc.ir import dtypes
    from lgc.ir.builder import GraphBuilder
    from lgc.ir.graph import TensorType
    f32 = dtypes.by_name("f32")
    lead = (B,) if B > 1 else ()
    g = GraphBuilder("mm")
    a = g.const(np.random.default_rng(0).standard_normal(lead + (M, K)).astype(np.float32)) if packed \
        else g.input("a", TensorType(f32, lead + (M, K)))
    x = g.input("x", TensorType(f32, lead + (K, N)))
    with use_target(target):
        graph = backend_for(target).rewrite(g.build([g.op("matmul", [a, x])]))
    return next(n for n in graph.nodes if n.op == "matmul_panels")


def main():
    from lgc.backends import tuner, tuning
    from lgc.backends.cpu_isa import isa_class
    from lgc.backends.tuning import PanelTile
    from lgc.runtime.device import select_device
    from lgc.runtime.tuner import time_kernels
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", default=TILES)
    ap.add_argument("--shapes", default=f"{RESNET50},{TRANSFORMER}")
    ap.add_argument("--runs", type=int, default=6)
    args = ap.parse_args()
    dev = select_device(None)
    target = dev.target
    tiles = [PanelTile(*map(int, c.split("/"))) for c in args.tiles.split(",")]
    names = [f"{t.rows}/{t.acc}/{t.panels}/{t.order}" for t in tiles]
    print(f"device: {dev.describe()}, ISA class {isa_class(target)}; {load()}")
    print(f"GFLOP/s per tile (rows/acc/panels/order), best of {args.runs} interleaved rounds")
    print(f"{'shape':<26}" + "".join(f"{n:>12}" for n in names))
    total = np.zeros(len(tiles))
    for shape in args.shapes.split(","):
        M, N, K, packed, *rest = map(int, shape.split("x"))
        B = rest[0] if rest else 1
        node = panel_node(M, N, K, packed, B, target)
        task = tuner.Task(tuning.panel_signature(*tuner.panel_shape(node)), node, tiles, tiles[0], 0)
        timed = time_kernels(dev, [tuner.kernel_for(task, t, target, f"tile{i}") for i, t in enumerate(tiles)],
                             args.runs)
        ref = timed[0][1].astype(np.float64)
        flops = 2.0 * M * N * K * B
        cells = [f"{flops / t / 1e9:11.1f}{'' if tuner.outputs_agree(o, ref) else '!'}" for t, o in timed]
        total += [t for t, _ in timed]
        print(f"{shape:<26}" + "".join(f"{c:>12}" for c in cells), flush=True)
    print(f"{'sum of times, ms':<26}" + "".join(f"{t * 1e3:>12.2f}" for t in total))
    print(f"{'relative to the first':<26}" + "".join(f"{t / total[0]:>12.2f}" for t in total))
    print(f"end: {load()}, {time.strftime('%H:%M:%S')}")


if __name__ == "__main__":
    main()
