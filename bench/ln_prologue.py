"""Would LayerNorm pay as a prologue of the GEMM that reads it? LN(x) @ W as lgc compiles it
today (the LN row kernel, then the panel GEMM) against two prototypes of the GEMM alone,
made from lgc's own GEMM kernel by adding a row-statistics prologue (each work-item
computes its TM rows' mean and rstd over K in two float16-vector passes: a work-item sees
only its rows, and there is no memory shared between work-items on the CPU schedule):

  loader    each A element read as (a - mean) * rstd (numerically LN itself)
  epilogue  the tile scaled at the end, rstd * (acc - mean * colsum(W)) (cancels when the
            mean is large: the error grows with it)

Kernel time from OpenCL profiling events, the baseline and each prototype interleaved in
rounds (a launch itself costs ~10 us here, docs/HARDWARE.md: what the prototypes save);
errors against a float64 NumPy LayerNorm, on rows with mean 0 and with mean 1000.
gamma and beta fold into W and the bias at compile time in both prototypes, so they are
left out (gamma = 1, beta = 0). Defaults: GPT-2's QKV (64 tokens, 768 -> 2304).

    python bench/ln_prologue.py [--m 64] [--k 768] [--n 2304] [--rounds 10]
"""
from __future__ import annotations

import argparse
import re

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import cpu_model, load


def stats_prologue(rows: int) -> list[str]:
    """Lines giving mu{i}, r{i}: row i's mean and 1/sqrt(var + eps), two passes over K."""
    lines = []
    for i in range(rows):
        fold = ["float8 s8 = s.lo + s.hi; float4 s4 = s8.lo + s8.hi; float2 s2 = s4.lo + s4.hi;",
                f"mu{i} = (s2.x + s2.y) / K_;"]
        lines += [f"float mu{i}, r{i};", "{", "float16 s = (float16)0;",
                  f"for (int k = 0; k < K_; k += 16) s += vload16(0, a{i} + k);", *fold,
                  "s = (float16)0;",
                  f"for (int k = 0; k < K_; k += 16) {{ const float16 d = vload16(0, a{i} + k) - mu{i}; s += d * d; }}",
                  "s8 = s.lo + s.hi; s4 = s8.lo + s8.hi; s2 = s4.lo + s4.hi;",
                  f"r{i} = rsqrt((s2.x + s2.y) / K_ + 1e-5f);", "}"]
    return lines


def prototype(gemm: str, form: str) -> str:
    """lgc's panel GEMM kernel `gemm` with the LN prologue in `form` (loader | epilogue)."""
    rows = len(re.findall(r"__global const float\* a\d+ = ", gemm))
    src = gemm.replace("__kernel void ", f"__kernel void ln_{form}_", 1)
    first_acc = re.search(r"\n  float16 c0_0 =", src).start()
    src = src[:first_acc] + "\n" + "\n".join(stats_prologue(rows)) + src[first_acc:]
    if form == "loader":
        for i in range(rows):
            src = src.replace(f"const float a = a{i}[k];", f"const float a = (a{i}[k] - mu{i}) * r{i};")
        return src
    src = src.replace("__global float* restrict out0)", "__global float* restrict out0, "
                      "__global const float* restrict colsum)", 1)
    vecs = len(re.findall(r"c0_\d+ = \(float16\)0", src))
    fix = [f"const float16 cs{h} = vload16(0, colsum + min(n0 + {16 * h}, N_ - 16));" for h in range(vecs)]
    fix += [f"c{i}_{h} = r{i} * (c{i}_{h} - mu{i} * cs{h});" for i in range(rows) for h in range(vecs)]
    store = src.index("\n  if (n0 + ") if "\n  if (n0 + " in src else src.index("\n  float t_[")
    return src[:store] + "\n" + "\n".join(fix) + src[store:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=64)
    ap.add_argument("--k", type=int, default=768)
    ap.add_argument("--n", type=int, default=2304)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    import pyopencl as cl

    import lgc
    import lgc.nn as lnn
    from lgc.api import Executable
    M, K, N = args.m, args.k, args.n
    if K % 16:
        raise SystemExit("--k must be a multiple of 16 (the prototypes' vector passes)")
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((K, N)) * 0.05).astype(np.float32)
    x0 = rng.standard_normal((M, K)).astype(np.float32)
    exe = Executable.from_graph(lgc.make_ir(lambda x: lnn.layer_norm(x) @ w)(x0), profile=True)
    names = [ln.kernel for ln in exe.program.launches]
    gemm_name = next(n for n in names if "matmul_panels" in n)
    gemm_launch = next(ln for ln in exe.program.launches if ln.kernel == gemm_name)
    body = exe.program.source.split(f"__kernel void {gemm_name}(")[1].split("\n}\n")[0]
    gemm = f"__kernel void {gemm_name}(" + body + "\n}\n"
    ctx = exe.device.context
    queue = cl.CommandQueue(ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
    prg = cl.Program(ctx, prototype(gemm, "loader") + prototype(gemm, "epilogue")).build()
    kernels = {form: cl.Kernel(prg, f"ln_{form}_{gemm_name}") for form in ("loader", "epilogue")}
    mf = cl.mem_flags
    wp = np.ascontiguousarray(np.pad(w, ((0, 0), (0, -N % 16))).reshape(K, -1, 16).transpose(1, 0, 2))
    bw = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=wp)
    bcs = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=w.sum(0).astype(np.float32))
    bo = cl.Buffer(ctx, mf.READ_WRITE, M * N * 4)
    gsize, scalars = gemm_launch.global_size, [np.int32(s) for s in gemm_launch.scalars]
    print(f"CPU: {cpu_model()}; {load()}")
    print(f"LN(x) @ W, M={M} K={K} N={N}; lgc's launches: {', '.join(names)}")
    for shift in (0.0, 1000.0):
        x = (x0 * 3 + shift).astype(np.float32)
        mean = x.astype(np.float64).mean(1, keepdims=True)
        want = (x - mean) / np.sqrt(((x - mean) ** 2).mean(1, keepdims=True) + 1e-5) @ w
        bx = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=x)

        def run(form):
            extra = [bcs] if form == "epilogue" else []
            ev = kernels[form](queue, gsize, gemm_launch.local_size, bx, bw, bo, *extra, *scalars)
            ev.wait()
            return (ev.profile.end - ev.profile.start) * 1e-9
        errs = {"lgc": float(np.abs(exe(x) - want).max())}
        for form in ("loader", "epilogue"):
            run(form)
            got = np.empty((M, N), np.float32)
            cl.enqueue_copy(queue, got, bo)
            errs[form] = float(np.abs(got - want).max())
        times = {"lgc": [], "loader": [], "epilogue": []}
        order = list(times)
        for r in range(args.rounds):
            for form in order[r % 3:] + order[:r % 3]:
                for _ in range(3):
                    times[form].append(float(exe.launch_times({exe.input_names[0]: x}, 1).sum())
                                       if form == "lgc" else run(form))
        med = {f: np.median(t) * 1e3 for f, t in times.items()}
        print(f"row mean {shift:g}: max |LN(x) @ W| {np.abs(want).max():.2f}")
        for f in order:
            print(f"  {f:9s} kernel time {med[f]:7.3f} ms  ({med[f] / med['lgc']:.3f}x lgc)  "
                  f"max abs error {errs[f]:.2e}")


if __name__ == "__main__":
    main()
