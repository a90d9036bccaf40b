"""4-bit weights against float32 weights, and against onnxruntime's MatMulNBits, on this CPU:
x [M, K] @ W [K, N] for decode (M = 1, a GEMV) and small M.

    python bench/int4.py [--shapes 1x4096x4096,4x4096x4096] [--block 128] [--runs 10] [--json out.json]

Four peers per shape, from ONNX models so each runtime picks its own kernels: lgc and
onnxruntime on a MatMulNBits model (4-bit, block 128, zero points) and on the float32 MatMul
it was quantized from; interleaved, medians; GB/s counts the weight bytes read once.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np

import common  # noqa: F401  (this checkout's lgc on sys.path)
from common import interleaved, load, say, write_json

SHAPES = "1x4096x4096,1x4096x11008,4x4096x4096,16x4096x4096,64x4096x4096"


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def models(M: int, K: int, N: int, block: int, rng):
    """(float32 MatMul model, MatMulNBits model, weight bytes of each)."""
    from onnx import TensorProto, helper, numpy_helper
    from lgc.compress.int4 import quantize_blocks
    from lgc.ops.quant import pack_nbits
    w = (rng.standard_normal((K, N)) * 0.02).astype(np.float32)
    b, s, z = pack_nbits(*quantize_blocks(w, block), block)

    def model(node, inits):
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("com.microsoft", 1)])
    f32 = model(helper.make_node("MatMul", ["x", "w"], ["y"]), {"w": w})
    q4 = model(helper.make_node("MatMulNBits", ["x", "b", "s", "z"], ["y"], domain="com.microsoft", K=K, N=N,
                                bits=4, block_size=block), {"b": b, "s": s.reshape(-1), "z": z.reshape(-1)})
    return f32, q4, w.nbytes, b.nbytes + s.nbytes + z.nbytes


def main(argv=None) -> int:
    import lgc
    import onnxruntime as ort
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default=SHAPES, help="MxKxN,... (default %(default)s)")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"CPU: {cpu_name()}; onnxruntime {ort.__version__} (its default threads)")
    print(f"{'M x K x N':<18} {'lgc int4':>9} {'lgc f32':>9} {'ort int4':>9} {'ort f32':>9}   "
          f"{'int4/f32':>8} {'lgc/ort int4':>12} {'int4 GB/s':>9}")
    rows = []
    for shape in args.shapes.split(","):
        M, K, N = (int(v) for v in shape.split("x"))
        say(f"building {shape}")
        f32, q4, f32_bytes, q4_bytes = models(M, K, N, args.block, rng)
        x = rng.standard_normal((M, K)).astype(np.float32)
        sessions = {k: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                    for k, m in (("ort_int4", q4), ("ort_f32", f32))}
        exes = {"lgc_int4": lgc.compile(q4), "lgc_f32": lgc.compile(f32)}
        fns = {k: (lambda e=e: e(x=x)) for k, e in exes.items()}
        fns.update({k: (lambda s=s: s.run(None, {"x": x})) for k, s in sessions.items()})
        outs = {k: np.asarray(f() if k.startswith("lgc") else f()[0]) for k, f in fns.items()}
        err = np.abs(outs["lgc_int4"] - outs["ort_int4"]).max() / np.abs(outs["ort_int4"]).max()
        assert err < 1e-4, f"{shape}: lgc's int4 differs from onnxruntime's by {err:.2g} (relative)"
        t = {k: float(np.median(v)) * 1e3 for k, v in interleaved(fns, args.runs).items()}
        gbs = q4_bytes / t["lgc_int4"] / 1e6
        rows.append({"shape": shape, **{f"{k}_ms": v for k, v in t.items()}, "int4_bytes": q4_bytes,
                     "f32_bytes": f32_bytes})
        print(f"{shape:<18} {t['lgc_int4']:>9.3f} {t['lgc_f32']:>9.3f} {t['ort_int4']:>9.3f} {t['ort_f32']:>9.3f}   "
              f"{t['lgc_int4'] / t['lgc_f32']:>8.2f} {t['lgc_int4'] / t['ort_int4']:>12.2f} {gbs:>9.1f}")
    print(f"times in ms (medians of {args.runs}); weights {rows[-1]['int4_bytes'] / rows[-1]['f32_bytes']:.3f}x "
          f"of float32 at block {args.block}; {load()}")
    write_json(args.json, {"int4": rows, "cpu": cpu_name()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
