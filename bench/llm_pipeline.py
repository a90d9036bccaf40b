"""Decoding across workers: the cost model's prediction for TinyLlama-1.1B int4 on an RX 580,
next to llama.cpp's published figure scaled by weight bytes, and predicted vs measured
latency and throughput of a small decoder split over 2 Ray workers on this machine.

    python bench/llm_pipeline.py [--capacity 512] [--skip-measure] [--tokens 48]

Part 1 needs no model: the step graph of a Llama decoder at TinyLlama's shapes (22 layers,
hidden 2048, intermediate 5632, 32 heads, 4 KV heads, vocab 32000) is built from shapes
alone, in lgc's IR, as lgc.generation's fixed-capacity step is after `--quantize
int4-weights:g128`: every projection and the output head qmatmul_nbits (4-bit, a float32
scale and a 4-bit zero point per 128 rows and column), the embedding int8 with a float32
scale per row (one row read per token), the caches float32 [1, 4, capacity, 64]. Its weights
are broadcast views (no memory). lgc.distributed.decode places it on the gfx803 Target
(RX 580: 6.17 TFLOP/s, 256 GB/s, 8 GB) and the roofline gives seconds per token. `--check`
builds it at small shapes next to lgc's own import of an exported decoder quantized with
int4-weights:g128, under the same cost model.

The reference: 34 tokens/s for a 7B Q4_K_M on an RX 580 (the figure the issue quotes), taken
as LLaMA-2-7B Q4_K_M as llama-bench lists it: 3.80 GiB (4.08 GB) of weights, 6.74 B
parameters. Decoding is bound by the weight bytes each token reads, so the figure scales as
34 * 4.08 GB / (the int4 TinyLlama's bytes read per token).

Part 2 exports a small Llama decoder (tests/llama_decoder.py), splits it over 2 workers
whose memory limit is below the model's size, and runs it with Ray (`ray.init(num_cpus=2)`):
one sequence (per-token latency) and 2 in flight (throughput), next to the planner's
prediction from measured parts: PoCL's kernel times (profiling events), the host's time per
launch (a single-process step less its kernels' time, over its launches) and Ray's share (a
chain of empty actor calls, one per stage) as the link latency. A measuring round is: the
single-process step, the Ray chain, the pipeline with 1 sequence, with 2; interleaved over
rounds, as the machine's load moves every figure.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import lgc  # noqa: E402
from lgc.backends.target import GFX803  # noqa: E402
from lgc.distributed.cost import CostModel, Link, Worker  # noqa: E402
from lgc.distributed.decode import decode_table, find_layers, place_layers  # noqa: E402
from lgc.ir import registry  # noqa: E402
from lgc.ir.dtypes import from_numpy  # noqa: E402
from lgc.ir.graph import Graph, Node, TensorType, Value  # noqa: E402

TINYLLAMA = dict(vocab=32000, hidden=2048, intermediate=5632, layers=22, heads=32, kv_heads=4)
LLAMA_CPP_TOKENS_PER_S = 34.0
LLAMA_CPP_7B_Q4_K_M_BYTES = 3.80 * 2**30          # llama-bench's "3.80 GiB" for LLaMA-2-7B Q4_K_M


class ShapeGraph:
    """A graph built from shapes: weights are broadcast views of one zero (no memory)."""

    def __init__(self):
        self.inputs, self.names, self.nodes = [], [], []

    def input(self, name, dtype, shape):
        v = Value(TensorType(from_numpy(np.dtype(dtype)), tuple(shape)), name)
        self.inputs.append(v)
        self.names.append(name)
        return v

    def weight(self, dtype, shape, name=None):
        arr = np.broadcast_to(np.zeros((), dtype), shape)
        v = Value(TensorType(from_numpy(arr.dtype), tuple(shape)), name)
        self.nodes.append(Node("const", [], {"value": arr}, [v], name))
        return v

    def op(self, op, inputs, **attrs):
        d = registry.get(op)
        attrs = d.normalize_attrs(attrs)
        outs = [Value(t) for t in d.infer([v.type for v in inputs], attrs)]
        self.nodes.append(Node(op, list(inputs), attrs, outs))
        return outs[0]


def llama_int4_step(capacity: int, block: int = 128, **shape) -> tuple[Graph, list[str]]:
    """The decode step of a Llama decoder with 4-bit projections, on fixed-capacity caches
    (inputs as lgc.generation.fixed_cache's step; outputs logits and the written caches)."""
    c = {**TINYLLAMA, **shape}
    H, F, V, L, NH, KV = c["hidden"], c["intermediate"], c["vocab"], c["layers"], c["heads"], c["kv_heads"]
    D = H // NH
    b = ShapeGraph()
    ids = b.input("input_ids", np.int64, (1, 1))
    mask_in = b.input("attention_mask", np.float32, (1, capacity))
    pos_in = b.input("position_ids", np.int64, (1, 1))
    caches = []
    for i in range(L):
        for kind in ("key", "value"):
            caches.append(b.input(f"past_key_values.{i}.{kind}", np.float32, (1, KV, capacity, D)))
    index = b.input("write_index", np.int64, (1,))

    def scalar(_value):             # a float32 constant (its value does not change the cost)
        return b.weight(np.float32, ())

    def linear(x, k, n):
        g = -(-k // block)
        return b.op("qmatmul_nbits", [x, b.weight(np.uint8, (n, g, block // 2)),
                                      b.weight(np.float32, (n, g)), b.weight(np.uint8, (n, -(-g // 2)))],
                    k=k, block_size=block)

    def rms(x):
        var = b.op("reduce_mean", [b.op("mul", [x, x])], axes=(2,))
        inv = b.op("div", [scalar(1), b.op("sqrt", [b.op("add", [var, scalar(1)])])])
        return b.op("mul", [b.weight(np.float32, (H,)), b.op("mul", [x, inv])])

    # side values: rotary tables from the position, the additive mask from attention_mask
    pos = b.op("cast", [b.op("reshape", [pos_in], shape=(1, 1, 1))], to="f32")
    freqs = b.op("mul", [pos, b.weight(np.float32, (1, 1, D // 2))])
    emb = b.op("concat", [freqs, freqs], axis=2)
    cos = b.op("reshape", [b.op("cos", [emb])], shape=(1, 1, 1, D))
    sin = b.op("reshape", [b.op("sin", [emb])], shape=(1, 1, 1, D))
    mask = b.op("reshape", [b.op("mul", [b.op("add", [mask_in, scalar(1)]), scalar(1)])],
                shape=(1, 1, 1, capacity))

    def rope(x, heads):
        half = (1, heads, 1, D // 2)
        lo = b.op("slice", [x], starts=(0, 0, 0, 0), steps=(1, 1, 1, 1), shape=half)
        hi = b.op("slice", [x], starts=(0, 0, 0, D // 2), steps=(1, 1, 1, 1), shape=half)
        rot = b.op("concat", [b.op("neg", [hi]), lo], axis=3)
        return b.op("add", [b.op("mul", [x, cos]), b.op("mul", [rot, sin])])

    def heads_first(x, heads):
        return b.op("transpose", [b.op("reshape", [x], shape=(1, 1, heads, D))], perm=(0, 2, 1, 3))

    def repeat_kv(cache):
        x = b.op("reshape", [cache], shape=(1, KV, 1, capacity, D))
        x = b.op("broadcast_to", [x], shape=(1, KV, NH // KV, capacity, D))
        return b.op("reshape", [x], shape=(1, NH, capacity, D))

    # the embedding as lgc's int4 mode leaves it: int8 rows with a float32 scale per row
    rows = b.op("gather", [b.weight(np.int8, (V, H)), ids], axis=0)
    row_scale = b.op("gather", [b.weight(np.float32, (V, 1)), ids], axis=0)
    h = b.op("mul", [b.op("cast", [rows], to="f32"), row_scale])
    presents = []
    for i in range(L):
        x = rms(h)
        q = rope(heads_first(linear(x, H, H), NH), NH)
        k = rope(heads_first(linear(x, H, KV * D), KV), KV)
        v = heads_first(linear(x, H, KV * D), KV)
        kc = b.op("tensor_scatter", [caches[2 * i], k, index], axis=2)
        vc = b.op("tensor_scatter", [caches[2 * i + 1], v, index], axis=2)
        presents += [kc, vc]
        scores = b.op("matmul", [q, b.op("transpose", [repeat_kv(kc)], perm=(0, 1, 3, 2))])
        p = b.op("softmax", [b.op("add", [b.op("mul", [scores, scalar(1)]), mask])], axis=3)
        att = b.op("matmul", [p, repeat_kv(vc)])
        att = b.op("reshape", [b.op("transpose", [att], perm=(0, 2, 1, 3))], shape=(1, 1, H))
        h = b.op("add", [h, linear(att, H, H)])
        x = rms(h)
        gate = linear(x, H, F)
        act = b.op("mul", [b.op("mul", [gate, b.op("sigmoid", [gate])]), linear(x, H, F)])
        h = b.op("add", [h, linear(act, F, H)])
    logits = linear(rms(h), H, V)
    names = [n for n in b.names if n.startswith("past_")]
    graph = Graph("llama_int4_step", b.inputs, [logits, *presents], b.nodes, b.names,
                  ["logits"] + [n.replace("past_key_values", "present") for n in names])
    return graph, names


def prediction(capacity: int) -> None:
    graph, caches = llama_int4_step(capacity)
    layers = find_layers(graph, caches)
    rx580 = Worker("rx580", GFX803, 8 * 10**9)
    pcie = Link(12e9)                 # one card: the logits come back over PCIe 3.0 x16
    plan = place_layers(layers, [rx580], pcie, sequences=1, capacity=capacity)
    lc_weights = plan.stages[0].weight_bytes
    embed = TINYLLAMA["vocab"] * (TINYLLAMA["hidden"] + 4)              # int8 rows, f32 scales
    read = lc_weights - embed + TINYLLAMA["hidden"] + 4                 # one row per token
    scaled = LLAMA_CPP_TOKENS_PER_S * LLAMA_CPP_7B_Q4_K_M_BYTES / read
    print(f"TinyLlama-1.1B int4-weights:g128 step at capacity {capacity}: {layers.count} layers, "
          f"weights stored {lc_weights / 1e9:.3f} GB (int8 embedding {embed / 1e9:.3f} GB), "
          f"read per token {read / 1e9:.3f} GB, KV cache {plan.stages[0].kv_bytes / 1e6:.1f} MB")
    print(decode_table(plan))
    cm = CostModel(graph)
    by_op: dict[str, float] = {}
    for label, t in zip(cm.labels, cm.node_times(rx580)):
        by_op[label] = by_op.get(label, 0.0) + float(t)
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:6]
    print("roofline time by op: " + ", ".join(f"{op} {t * 1e3:.3f} ms" for op, t in top))
    predicted = plan.tokens_per_s
    print(f"cost model (roofline, efficiency 1), gfx803 RX 580 256 GB/s: {predicted:.0f} tokens/s "
          f"({plan.latency_s * 1e3:.3f} ms per token)")
    print(f"llama.cpp: {LLAMA_CPP_TOKENS_PER_S:.0f} tokens/s for 7B Q4_K_M "
          f"({LLAMA_CPP_7B_Q4_K_M_BYTES / 1e9:.2f} GB) on an RX 580, scaled by weight bytes "
          f"(34 * {LLAMA_CPP_7B_Q4_K_M_BYTES / 1e9:.2f} / {read / 1e9:.3f}): {scaled:.0f} tokens/s; "
          f"scaled by bytes stored instead (34 * {LLAMA_CPP_7B_Q4_K_M_BYTES / 1e9:.2f} / "
          f"{lc_weights / 1e9:.3f}): {LLAMA_CPP_TOKENS_PER_S * LLAMA_CPP_7B_Q4_K_M_BYTES / lc_weights:.0f}"
          f" tokens/s")
    print(f"ratio predicted / llama.cpp scaled: {predicted / scaled:.2f} "
          f"(llama.cpp reaches {LLAMA_CPP_TOKENS_PER_S * LLAMA_CPP_7B_Q4_K_M_BYTES / 256e9:.0%} of "
          f"256 GB/s on the 7B: the roofline is an upper bound)")
    two = place_layers(layers, [Worker("rx580-a", GFX803, 8 * 10**9), Worker("rx580-b", GFX803, 8 * 10**9)],
                       Link(125e6), sequences=2, stages=2, capacity=capacity)
    print(f"the same over 2 RX 580s (1 Gbit/s link), 2 sequences in flight: "
          f"{two.tokens_per_s:.0f} tokens/s, {two.latency_s * 1e3:.3f} ms per token")


def check_against_import(capacity: int) -> None:
    """The shape-built step against lgc's own: a small Llama decoder exported with torch,
    imported as lgc.generate imports it and quantized with `int4-weights:g128`, and the
    builder at the same shapes, side by side under the same cost model."""
    from lgc.compress import quantize_graph
    from lgc.generation import OnnxDecoder
    from tests.llama_decoder import export_llama_decoder

    small = dict(vocab=512, hidden=256, intermediate=512, layers=2, heads=4, kv_heads=2)
    path = os.path.join(tempfile.mkdtemp(prefix="lgc-llm-check-"), "decoder.onnx")
    export_llama_decoder(path, vocab_size=512, hidden_size=256, intermediate_size=512,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    dec = OnnxDecoder(path, capacity)
    step, _ = dec.step_graph()
    rx580 = Worker("rx580", GFX803, 8 * 10**9)
    print(f"check at {small}, capacity {capacity}, on gfx803:")
    for what, graph, caches in [("lgc import + int4-weights:g128", quantize_graph(step, None, "int4-weights:g128"),
                                 dec.pasts),
                                ("built from shapes", *llama_int4_step(capacity, **small))]:
        stage = place_layers(find_layers(graph, caches), [rx580], capacity=capacity).stages[0]
        cm = CostModel(graph)
        print(f"  {what:<31} weights {stage.weight_bytes:>9,} B  KV {stage.kv_bytes:>8,} B  "
              f"FLOPs {int(cm.flops.sum()):>10,}  launches {cm.launches(GFX803):>3}  "
              f"roofline {stage.compute_s * 1e6:.2f} us")


def measure(tokens: int, rounds: int) -> None:
    import ray

    from lgc.cluster.decode import DecodePipeline
    from lgc.distributed.cost import measure_kernel_times
    from lgc.distributed.specs import parse_workers
    from lgc.generation import OnnxDecoder, Sampling
    from tests.llama_decoder import export_llama_decoder

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?")
    print(f"\nCPU: {name}, {os.cpu_count()} cores")
    folder = tempfile.mkdtemp(prefix="lgc-llm-pipeline-")
    path = os.path.join(folder, "decoder.onnx")
    export_llama_decoder(path, num_hidden_layers=4, hidden_size=128, intermediate_size=384,
                         vocab_size=512, initializer_range=0.1)
    capacity, prompt = 16 + tokens, 16
    dec = OnnxDecoder(path, capacity)
    step, _ = dec.step_graph()
    kernel_times = measure_kernel_times(step)
    device = sum(kernel_times["nodes"].values())
    launches = CostModel(step).launches(workers_target())
    lgc.generate(dec, list(range(1, prompt + 1)), 4, greedy=True)      # compile and warm up
    limit = int(os.path.getsize(path) * 0.6)              # each worker holds ~60% of the model
    print(f"small Llama decoder: 4 layers, hidden 128, vocab 512, {os.path.getsize(path) / 1e6:.2f} MB "
          f"of ONNX; worker memory limit {limit / 1e6:.2f} MB; step kernels {device * 1e3:.3f} ms "
          f"(profiling events), {launches} launches; {tokens} new tokens after {prompt}")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    try:
        pipe = DecodePipeline(path, parse_workers(f"cpu:{limit},cpu:{limit}"), capacity, sequences=2)
        S = len(pipe.plan.stages)
        prompts = [list(range(1, prompt + 1)), list(range(5, prompt + 5))]
        pipe.generate(prompts, 4, Sampling(greedy=True))                 # compile and warm up
        print(f"{'round':<6} {'1 proc ms':>9} {'Ray ms':>7} | {'latency ms':>21} | {'tokens/s, 1 seq':>21} | "
              f"{'tokens/s, 2 seqs':>21}")
        print(f"{'':<6} {'':>9} {'':>7} | {'pred':>6} {'meas':>6} {'p/m':>6} | {'pred':>6} {'meas':>6} "
              f"{'p/m':>6} | {'pred':>6} {'meas':>6} {'p/m':>6}")
        ratios, inside = [], []
        for r in range(rounds):        # interleaved: the parts, then the pipeline, each round
            wall = _step_s(dec, prompt, tokens)
            chain = _ray_chain_s(ray, S)
            pipe.step_stats(reset=True)
            one = pipe.generate(prompts[:1], tokens, Sampling(greedy=True))
            inside.append(sum(st["mean_step_s"] for st in pipe.step_stats()))
            two = pipe.generate(prompts, tokens, Sampling(greedy=True))
            assert one.generations[0].tokens == two.generations[0].tokens
            # the prediction from this round's parts: kernels + the host's time per launch (a
            # single-process step less its kernels, over its launches), and a chain of S empty
            # actor calls (Ray's share, spread over the S + 1 transfers the model counts)
            workers = parse_workers(f"cpu:{limit},cpu:{limit}", kernel_times={"*": kernel_times},
                                    launch_overhead_s=max(wall - device, 0.0) / launches)
            plan = place_layers(pipe.layers, workers, Link(10e9, chain / (S + 1)), sequences=2, stages=S)
            row = [(plan.latency_s * 1e3, one.latency_ms), (1 / plan.latency_s, one.tokens_per_s),
                   (plan.tokens_per_s, two.tokens_per_s)]
            ratios.append([p / m for p, m in row])
            print(f"{r:<6} {wall * 1e3:>9.3f} {chain * 1e3:>7.3f} | "
                  + " | ".join(f"{p:>6.1f} {m:>6.1f} {p / m:>6.2f}" for p, m in row))
        print("time inside the stages' step calls, 1 sequence (sum over stages, ms per token): "
              + ", ".join(f"{t * 1e3:.2f}" for t in inside))
        med = np.median(np.array(ratios), axis=0)
        print(f"median predicted/measured: latency {med[0]:.2f}, tokens/s 1 sequence {med[1]:.2f}, "
              f"tokens/s 2 sequences {med[2]:.2f}")
        print(f"roofline only (cpu Target 200 GFLOP/s, 20 GB/s, no overheads, 1 Gbit/s): "
              + decode_table(pipe.plan).splitlines()[-1])
        pipe.shutdown()
    finally:
        ray.shutdown()


def workers_target():
    from lgc.distributed.cost import CPU_WORKER
    return CPU_WORKER


def _step_s(dec, prompt: int, tokens: int) -> float:
    r = lgc.generate(dec, list(range(1, prompt + 1)), tokens, greedy=True)
    return r.decode_ms / 1e3 / r.steps


def _ray_chain_s(ray, stages: int) -> float:
    """Median seconds of a chain of `stages` empty actor calls, each taking the previous
    one's ObjectRef, with a hidden-state-sized array: Ray's share of a token."""
    @ray.remote(num_cpus=0)
    class Echo:
        def call(self, x):
            return x

    actors = [Echo.remote() for _ in range(stages)]
    ts = []
    for i in range(60):
        t = time.perf_counter()
        x = np.zeros((1, 1, 128), np.float32)
        for a in actors:
            x = a.call.remote(x)
        ray.get(x)
        if i >= 10:
            ts.append(time.perf_counter() - t)
    for a in actors:
        ray.kill(a)
    return float(np.median(ts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capacity", type=int, default=128,
                    help="KV cache positions (default 128: the 128 tokens of llama-bench's tg128)")
    ap.add_argument("--skip-measure", action="store_true", help="only the TinyLlama prediction")
    ap.add_argument("--check", action="store_true",
                    help="also compare the shape-built step with lgc's own int4 import at small shapes")
    ap.add_argument("--tokens", type=int, default=48, help="new tokens per sequence when measuring")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved measuring rounds")
    args = ap.parse_args()
    prediction(args.capacity)
    if args.check:
        check_against_import(args.capacity)
    if not args.skip_measure:
        measure(args.tokens, args.rounds)


if __name__ == "__main__":
    main()
