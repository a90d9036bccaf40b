"""Attention on the CPU device: the fused kernel (lgc.backends.cpu_attention) against the
unfused path (LGC_CPU_ATTENTION=0: transpose, pack, GEMM, softmax, pack, GEMM).

    python bench/attention.py [--tokens 64,128,256] [--heads 12] [--dim 64] [--rounds 5] [--causal]

softmax(Q K^T / sqrt(D) + mask) V over [1, heads, tokens, dim], traced with lgc.numpy, the
mask one row per batch broadcast over heads and queries (--causal: a constant causal mask,
which the fused path computes instead of reading). Kernel time is the sum of OpenCL profiling
events per call, the two compiles timed in alternating blocks (the machine is shared: read
the ratio). The first line names the CPU and its load.
"""
from __future__ import annotations

import argparse

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import cpu_model, env, load


def attention_fn(causal: np.ndarray | None):
    import lgc.nn as lnn
    import lgc.numpy as lnp

    def attn(q, k, v, mask):
        s = lnp.matmul(q, lnp.swapaxes(k, -1, -2)) * (1.0 / np.sqrt(q.shape[-1]))
        return lnp.matmul(lnn.softmax(s + (causal if causal is not None else mask), axis=-1), v)
    return attn


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", default="64,128,256", help="sequence lengths, comma-separated")
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--dim", type=int, default=64, help="head dimension")
    ap.add_argument("--rounds", type=int, default=5, help="alternating blocks per path")
    ap.add_argument("--causal", action="store_true", help="a constant causal mask")
    args = ap.parse_args()
    import lgc
    from lgc.trace.jit import make_ir
    print(f"CPU: {cpu_model()}; {load()}")
    rng = np.random.default_rng(0)
    for T in (int(t) for t in args.tokens.split(",")):
        q, k, v = (rng.standard_normal((1, args.heads, T, args.dim)).astype(np.float32) for _ in range(3))
        mask = rng.standard_normal((1, 1, 1, T)).astype(np.float32)
        causal = np.triu(np.full((T, T), -1e9, np.float32), 1) if args.causal else None
        g = make_ir(attention_fn(causal))(q, k, v, mask)
        exes = {}
        for name, on in (("unfused", "0"), ("fused", "1")):
            with env(LGC_CPU_ATTENTION=on):
                exes[name] = lgc.compile(g)
        outs = {n: next(iter(e.run(dict(zip(e.input_names, [q, k, v, mask]))).values())) for n, e in exes.items()}
        err = np.abs(outs["fused"] - outs["unfused"]).max() / np.abs(outs["unfused"]).max()
        times = {n: [] for n in exes}
        for _ in range(args.rounds):
            for n, e in exes.items():
                feeds = dict(zip(e.input_names, [q, k, v, mask]))
                times[n].append(e.launch_times(feeds, runs=5, warmup=1))
        med = {n: np.median(np.array(t), axis=0) * 1e6 for n, t in times.items()}
        for n, e in exes.items():
            parts = ", ".join(f"{ln.kernel.split('_', 1)[1][:24]} {t:.0f}" for ln, t in zip(e.program.launches, med[n]))
            print(f"  T={T} {n}: {med[n].sum():.0f} us  [{parts}]")
        print(f"T={T} H={args.heads} D={args.dim}{' causal' if args.causal else ''}: fused / unfused "
              f"{med['fused'].sum() / med['unfused'].sum():.2f} (max rel diff {err:.1e})")


if __name__ == "__main__":
    main()
