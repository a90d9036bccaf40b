"""Fused CPU attention (lgc.backends.cpu_attention) with other query rows per work-item
(ROWS) and key panels per online-softmax step (STEP), timed interleaved in one process on
the attention shapes of ViT (197 tokens) or others, to choose those constants.

    python bench/attention_tiles.py [--shapes 197x3x64,197x12x64] [--tiles 4/2,4/4] [--rounds 5] [--causal]

A shape is TxHxD: [1, H, T, D] queries, keys and values, no mask (ViT's; --causal: GPT-2's
causal mask). Kernel time per call is the attention kernel's OpenCL profiling event (median
over rounds); outputs are checked against NumPy. The first line names the CPU and its load.
"""
from __future__ import annotations

import argparse

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import cpu_model, load


def causal_mask(T: int) -> np.ndarray:
    return np.triu(np.full((T, T), -1e9, np.float32), 1)


def attention_fn(causal: bool):
    import lgc.nn as lnn
    import lgc.numpy as lnp

    def attention(q, k, v):
        s = lnp.matmul(q, lnp.swapaxes(k, -1, -2)) * (1.0 / np.sqrt(q.shape[-1]))
        return lnp.matmul(lnn.softmax(s + causal_mask(q.shape[-2]) if causal else s, axis=-1), v)
    return attention


def reference(q, k, v, causal: bool = False):
    s = q.astype(np.float64) @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        s = s + causal_mask(q.shape[-2])
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="197x3x64,197x12x64,197x6x32")
    ap.add_argument("--tiles", default="4/2,4/1,2/2,6/1,8/1", help="ROWS/STEP pairs, the first the reference")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--causal", action="store_true", help="a causal mask (GPT-2's), which the kernel computes")
    args = ap.parse_args()
    import lgc
    from lgc.backends import cpu_attention
    from lgc.trace.jit import make_ir
    print(f"CPU: {cpu_model()}; {load()}")
    tiles = [tuple(map(int, t.split("/"))) for t in args.tiles.split(",")]
    rng = np.random.default_rng(0)
    print(f"{'shape':<12}" + "".join(f"{f'{r}/{s} us':>12}" for r, s in tiles) + "   (GFLOP/s of the first)")
    for shape in args.shapes.split(","):
        T, H, D = map(int, shape.split("x"))
        qkv = [rng.standard_normal((1, H, T, D)).astype(np.float32) for _ in range(3)]
        g = make_ir(attention_fn(args.causal))(*qkv)
        exes, ref = [], reference(*qkv, args.causal)
        saved = cpu_attention.ROWS, cpu_attention.STEP
        for r, s in tiles:
            cpu_attention.ROWS, cpu_attention.STEP = r, s
            try:
                exes.append(lgc.compile(g))
            finally:
                cpu_attention.ROWS, cpu_attention.STEP = saved
        bad = []
        for (r, s), e in zip(tiles, exes):
            out = next(iter(e.run(dict(zip(e.input_names, qkv))).values()))
            if not np.allclose(out, ref, rtol=1e-4, atol=1e-5):
                bad.append(f"{r}/{s}")
        times = [[] for _ in exes]
        for _ in range(args.rounds):
            for i, e in enumerate(exes):
                feeds = dict(zip(e.input_names, qkv))
                kinds = [ln.kernel for ln in e.program.launches]
                t = e.launch_times(feeds, runs=5, warmup=1)
                times[i].append(sum(x for k, x in zip(kinds, t) if "attention" in k))
        med = [np.median(t) * 1e6 for t in times]
        flops = 4.0 * H * T * T * D / (2 if args.causal else 1)
        print(f"{shape:<12}" + "".join(f"{m:>12.0f}" for m in med) + f"   ({flops / med[0] / 1e3:.1f})"
              + (f"  WRONG: {', '.join(bad)}" if bad else ""))
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
