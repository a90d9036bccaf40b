"""What GPT-2's GELU costs as the epilogue of its c_fc GEMM, with float32 tanh as PoCL's
tanh() (LGC_CPU_TANH=0: a scalar call per lane) and as lgc_tanh (a rational the epilogue's
row loop vectorises), against the same GEMM with no epilogue.

    python bench/gelu_epilogue.py [--m 64] [--k 768] [--n 3072] [--rounds 15]

Each program is one panel-GEMM launch; kernel time from OpenCL profiling events, the three
interleaved in rotating order (the machine is shared: read the differences and ratios).
"""
from __future__ import annotations

import argparse

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import cpu_model, env, load


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=64)
    ap.add_argument("--k", type=int, default=768)
    ap.add_argument("--n", type=int, default=3072)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    import lgc
    import lgc.numpy as lnp
    from lgc.api import Executable
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.m, args.k)).astype(np.float32)
    w = (rng.standard_normal((args.k, args.n)) * 0.05).astype(np.float32)

    def gelu(x):
        h = x @ w
        return 0.5 * h * (1.0 + lnp.tanh(0.7978846 * (h + 0.044715 * h * h * h)))
    exes = {"gemm": Executable.from_graph(lgc.make_ir(lambda x: x @ w)(x))}
    for name, on in (("gelu tanh()", "0"), ("gelu lgc_tanh", "1")):
        with env(LGC_CPU_TANH=on):
            exes[name] = Executable.from_graph(lgc.make_ir(gelu)(x))
    h = x.astype(np.float64) @ w
    want = 0.5 * h * (1 + np.tanh(0.7978846 * (h + 0.044715 * h ** 3)))
    print(f"CPU: {cpu_model()}; {load()}")
    print(f"x [{args.m}, {args.k}] @ W [{args.k}, {args.n}]; launches: "
          + ", ".join(f"{k} {len(e.program.launches)}" for k, e in exes.items()))
    times, names = {k: [] for k in exes}, list(exes)
    for r in range(args.rounds):
        for k in names[r % 3:] + names[:r % 3]:
            times[k].append(exes[k].launch_times({exes[k].input_names[0]: x}, runs=3, warmup=1).sum())
    med = {k: np.median(t) * 1e3 for k, t in times.items()}
    for k in names:
        err = "" if k == "gemm" else f"  max abs error {np.abs(np.asarray(exes[k](x)) - want).max():.1e}"
        extra = "" if k == "gemm" else f"  epilogue {med[k] - med['gemm']:+.3f} ms"
        print(f"  {k:14s} {med[k]:7.3f} ms{extra}{err}")


if __name__ == "__main__":
    main()
