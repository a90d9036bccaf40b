"""Whole-model kernel time with the CPU's fused attention off and on (LGC_CPU_ATTENTION=0/1),
or another switch (--switch LGC_CPU_GEMM_RESHAPE: GEMM epilogues through reshapes), on ONNX
files bench/zoo.py --keep DIR exported (vit_small, gpt2, t5_encoder).

    python bench/attention_models.py DIR [--models vit_small,gpt2,t5_encoder] [--rounds 5]
                                         [--switch LGC_CPU_ATTENTION] [--top N]

Both compiles of a model run in alternating blocks (the machine is shared: read the ratio);
kernel time is the sum of OpenCL profiling events of one call, its attention part the
launches that the fused path replaces (what differs between the two programs). --top N also
prints the N kernels with the most time, summed over their launches, in each program (a switch
that changes code, not launches: LGC_CPU_TANH, the GELU epilogue of GPT-2's MLP).
"""
from __future__ import annotations

import argparse
import os

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import cpu_model, env, load


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="where bench/zoo.py --keep put the ONNX files")
    ap.add_argument("--models", default="vit_small,gpt2,t5_encoder")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--switch", default="LGC_CPU_ATTENTION",
                    help="the LGC_* setting compared off (=0, 'unfused') against on (=1, 'fused')")
    ap.add_argument("--top", type=int, default=0, help="also print the N kernels with the most time")
    args = ap.parse_args()
    import lgc
    print(f"CPU: {cpu_model()}; {load()}")
    for name in args.models.split(","):
        exes = {}
        for mode, on in (("unfused", "0"), ("fused", "1")):
            with env(**{args.switch: on}):
                m = lgc.Model(os.path.join(args.folder, f"{name}.onnx"))
                exes[mode] = m.executable(m.default_types())
        feeds = {n: np.asarray(v) for n, v in _feeds(m).items()}
        outs = {k: next(iter(e.run(feeds).values())) for k, e in exes.items()}
        err = np.abs(outs["fused"] - outs["unfused"]).max() / np.abs(outs["unfused"]).max()
        times = {k: [] for k in exes}
        for _ in range(args.rounds):
            for k, e in exes.items():
                times[k].append(e.launch_times(feeds, runs=3, warmup=1))
        med = {k: np.median(np.array(t), axis=0) * 1e3 for k, t in times.items()}
        kinds = {k: [ln.kernel.split("_", 1)[1] for ln in e.program.launches] for k, e in exes.items()}
        common_kernels = set(kinds["fused"]) & set(kinds["unfused"])
        part = {k: sum(t for kn, t in zip(kinds[k], med[k]) if kn not in common_kernels) for k in med}
        print(f"{name}: kernel time unfused {med['unfused'].sum():.2f} ms ({len(kinds['unfused'])} launches), "
              f"fused {med['fused'].sum():.2f} ms ({len(kinds['fused'])}), fused / unfused "
              f"{med['fused'].sum() / med['unfused'].sum():.3f}; launches that differ {part['unfused']:.2f} -> "
              f"{part['fused']:.2f} ms; max rel diff {err:.1e}")
        if args.top:
            _top_kernels(kinds, med, args.top)


def _top_kernels(kinds: dict, med: dict, top: int) -> None:
    """The `top` kernels of the unfused program by time, and each one's time in both."""
    per = {k: {} for k in med}
    for k in med:
        for kn, t in zip(kinds[k], med[k]):
            per[k][kn] = per[k].get(kn, 0.0) + t
    for kn in sorted(per["unfused"], key=per["unfused"].get, reverse=True)[:top]:
        on = per["fused"].get(kn)
        ratio = f"{on / per['unfused'][kn]:.3f}" if on is not None else "-"
        on = f"{on:8.3f}" if on is not None else f"{'-':>8}"
        print(f"  {kn[:48]:48s} {kinds['unfused'].count(kn):3d}x  off {per['unfused'][kn]:8.3f} ms  "
              f"on {on} ms  on / off {ratio}")


def _feeds(model):
    """Token ids (int64) or an image, as bench/zoo.py feeds them."""
    rng = np.random.default_rng(0)
    out = {}
    for n, t in model.default_types().items():
        shape = t.shape
        out[n] = (rng.integers(0, 1000, shape) if t.dtype.name == "i64"
                  else rng.standard_normal(shape)).astype(t.dtype.name.replace("f", "float").replace("i", "int"))
    return out


if __name__ == "__main__":
    main()
