"""Generation speed: lgc's KV-cache decoding against onnxruntime on the same ONNX decoder.

A Llama decoder with random weights (tests/llama_decoder.py: transformers' LlamaConfig,
exported with past_key_values) is run greedily by
  lgc           lgc.generation.OnnxDecoder: the cache resident on the device, written in
                place; one step program, one prefill program
  onnxruntime   the same ONNX, its own KV loop (present fed back as past each token)
for the same prompt and number of new tokens, in each weight format asked for, all peers
interleaved round by round (order rotating), each warmed up first. Prefill (prompt -> first
logits) and decode (tokens/s of the steps after it) are timed apart; the best and the median
round of each are kept, and the table gives lgc / onnxruntime per format. lgc and
onnxruntime must produce the same tokens in each format (checked, and printed).

    python bench/generate.py [--model tiny|tinyllama|FILE.onnx] [--layers N]
                             [--prompt-len 32] [--new-tokens 32] [--rounds 3]
                             [--quantize none[,int4]] [--ort-spinning] [--profile]
                             [--json out.json]

`--model tinyllama` has TinyLlama-1.1B's shapes (hidden 2048, 32 heads, 4 KV heads,
intermediate 5632, vocab 32000) with --layers of its 22 (default 2: the weights are random
and float32, 4.4 GB at 22 layers). `--quantize`: the weight formats both peers run (each
QUANTIZERS entry maps an ONNX file to its quantized copy): int4 is onnxruntime's
MatMulNBits (4-bit, block 128, zero points, written by onnxruntime's own quantizer; its
default accuracy level, float32 compute). onnxruntime runs with every core as intra-op
threads and spinning off (--ort-spinning: on, its default).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import load, say, write_json



def int4_matmulnbits(path: str, folder: str, block: int = 128) -> str:
    """The decoder with every MatMul over a constant weight as onnxruntime's MatMulNBits
    (4-bit, block 128, zero points: onnxruntime's own quantizer and defaults), which both
    peers then run: lgc imports MatMulNBits as qmatmul_nbits."""
    import logging
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    say(f"quantizing MatMul weights to int4 (MatMulNBits, block {block}) ...")
    q = MatMulNBitsQuantizer(onnx.load(path), bits=4, block_size=block, is_symmetric=False)
    q.process()
    out = os.path.join(folder, f"int4-g{block}.onnx")
    q.model.save_model_to_file(out, use_external_data_format=True)
    return out


# name -> function(float32 ONNX path, output folder) -> ONNX path of that weight format
QUANTIZERS = {"none": lambda path, folder: path, "int4": int4_matmulnbits}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


class LgcPeer:
    def __init__(self, path: str, capacity: int, prompt_len: int):
        from lgc.generation import OnnxDecoder
        self.decoder = OnnxDecoder(path, max_seq_len=capacity)
        self.decoder.prepare(prompt_len)

    def prefill(self, prompt) -> np.ndarray:
        return self.decoder.prefill(np.asarray(prompt))

    def step(self, token: int) -> np.ndarray:
        return self.decoder.step(token)

    def step_kernels(self, runs: int = 5) -> str:
        """The decode step's per-kernel table (`lgc bench`'s, from profiling events on a
        queue of its own; inputs zero but the mask)."""
        from lgc.runtime.executable import Executable
        from lgc.tools.bench import kernel_table, profile_kernels
        from lgc.trace.eager import runtime
        exe = Executable(self.decoder._step.executor.program, device=runtime().device)
        feeds = {n: (np.ones if n == "attention_mask" else np.zeros)(t.shape, t.dtype.np)
                 for n, t in exe.input_types().items()}
        return kernel_table(profile_kernels(exe, feeds, runs), exe.device.target, top=12)


class OrtPeer:
    """onnxruntime's own loop: present outputs fed back as the next step's past."""

    def __init__(self, path: str, spinning: bool = False):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = os.cpu_count() or 1
        if not spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.pasts = [i for i in self.session.get_inputs() if i.name.startswith("past")]

    def prefill(self, prompt) -> np.ndarray:
        n = len(prompt)
        feeds = {p.name: np.zeros((1, p.shape[1], 0, p.shape[3]), np.float32) for p in self.pasts}
        self.position = 0
        return self._run(np.asarray(prompt, np.int64)[None], feeds)

    def step(self, token: int) -> np.ndarray:
        return self._run(np.array([[token]], np.int64), self.past)

    def _run(self, ids, past) -> np.ndarray:
        n, pos = ids.shape[1], self.position
        outs = self.session.run(None, {"input_ids": ids, "position_ids": np.arange(pos, pos + n)[None],
                                       "attention_mask": np.ones((1, pos + n), np.int64), **past})
        self.past = {p.name: o for p, o in zip(self.pasts, outs[1:])}
        self.position = pos + n
        return outs[0][0, -1]


def one_round(peer, prompt, new_tokens: int) -> tuple[float, float, list[int]]:
    """(prefill seconds, decode tokens/s, greedy tokens)."""
    t0 = time.perf_counter()
    logits = peer.prefill(prompt)
    prefill = time.perf_counter() - t0
    tokens = [int(np.argmax(logits))]
    t0 = time.perf_counter()
    for _ in range(new_tokens - 1):
        tokens.append(int(np.argmax(peer.step(tokens[-1]))))
    return prefill, (new_tokens - 1) / (time.perf_counter() - t0), tokens


def model_path(args, folder: str) -> tuple[str, str]:
    """(ONNX path, description) of the float32 decoder to measure."""
    if args.model not in ("tiny", "tinyllama"):
        return args.model, os.path.basename(args.model)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.llama_decoder import TINY, TINYLLAMA, export_llama_decoder
    shape = dict(TINYLLAMA if args.model == "tinyllama" else TINY)
    if args.layers:
        shape["num_hidden_layers"] = args.layers
    elif args.model == "tinyllama":
        shape["num_hidden_layers"] = 2
    path = os.path.join(folder, f"{args.model}.onnx")
    say(f"exporting {args.model} ({shape}) ...")
    export_llama_decoder(path, **shape)
    return path, (f"{args.model}: {shape['num_hidden_layers']} layers, hidden {shape['hidden_size']}, "
                  f"{shape['num_attention_heads']} heads ({shape['num_key_value_heads']} KV), "
                  f"intermediate {shape['intermediate_size']}, vocab {shape['vocab_size']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", help="tiny, tinyllama or an ONNX decoder file")
    ap.add_argument("--layers", type=int, default=0, help="decoder layers of tiny/tinyllama")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quantize", default="none",
                    help="weight formats both peers run, comma-separated, all in the same interleaved "
                         f"rounds ({', '.join(QUANTIZERS)}; none: float32; int4: MatMulNBits, block 128)")
    ap.add_argument("--ort-spinning", action="store_true",
                    help="leave onnxruntime's intra-op spinning on (its default; off otherwise)")
    ap.add_argument("--profile", action="store_true",
                    help="also print each lgc peer's per-kernel table of one decode step")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    formats = args.quantize.split(",")
    bad = [f for f in formats if f not in QUANTIZERS]
    if bad:
        ap.error(f"--quantize {bad[0]!r}: not one of {', '.join(QUANTIZERS)}")

    prompt = list(np.random.default_rng(0).integers(1, 200, args.prompt_len))
    capacity = args.prompt_len + args.new_tokens
    peers, compile_s = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        base, what = model_path(args, folder)
        for fmt in formats:
            path = QUANTIZERS[fmt](base, folder)
            say(f"compiling and warming up lgc ({fmt}) ...")
            t0 = time.perf_counter()
            peers[f"lgc {fmt}"] = LgcPeer(path, capacity, args.prompt_len)
            compile_s[fmt] = time.perf_counter() - t0
            peers[f"onnxruntime {fmt}"] = OrtPeer(path, args.ort_spinning)
        results = {k: [] for k in peers}
        names = list(peers)
        for r in range(args.rounds):
            for k in names[r % len(names):] + names[:r % len(names)]:
                one_round(peers[k], prompt, min(4, args.new_tokens))       # its own steady state
                results[k].append(one_round(peers[k], prompt, args.new_tokens))
            say(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{k} prefill {results[k][-1][0] * 1e3:.1f} ms, {results[k][-1][1]:.1f} tokens/s"
                for k in names))
        tables = {k: p.step_kernels() for k, p in peers.items() if args.profile and isinstance(p, LgcPeer)}
    same = {f: results[f"lgc {f}"][0][2] == results[f"onnxruntime {f}"][0][2] for f in formats}
    rows = {k: (min(p for p, _, _ in v) * 1e3, max(t for _, t, _ in v),
                float(np.median([p for p, _, _ in v])) * 1e3, float(np.median([t for _, t, _ in v])))
            for k, v in results.items()}
    print(f"{what}; prompt {args.prompt_len}, {args.new_tokens} new tokens (cache of {capacity}); "
          f"{args.rounds} interleaved rounds")
    print(f"CPU: {cpu_name()} ({load()}); onnxruntime {os.cpu_count()} intra-op threads, spinning "
          f"{'on' if args.ort_spinning else 'off'}; lgc compile + warm-up " +
          ", ".join(f"{f} {s:.1f} s" for f, s in compile_s.items()))
    print("same greedy tokens, lgc and onnxruntime: " + ", ".join(f"{f} {'yes' if v else 'NO'}" for f, v in same.items()))
    print("| peer | prefill ms (best) | decode tokens/s (best) | prefill ms (median) | decode tokens/s (median) |")
    print("|---|---|---|---|---|")
    for k, (p, t, pm, tm) in rows.items():
        print(f"| {k} | {p:.1f} | {t:.1f} | {pm:.1f} | {tm:.1f} |")
    for f in formats:
        lp, lt, lpm, ltm = rows[f"lgc {f}"]
        op, ot, opm, otm = rows[f"onnxruntime {f}"]
        print(f"| lgc / onnxruntime, {f} | {lp / op:.2f}x time | {lt / ot:.2f}x speed | "
              f"{lpm / opm:.2f}x time | {ltm / otm:.2f}x speed |")
    for k, table in tables.items():
        print(f"\n{k}, one decode step:\n{table}")
    write_json(args.json, {"model": what, "cpu": cpu_name(), "load": load(), "ort_spinning": args.ort_spinning,
                           "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
                           "same_tokens": same, "compile_s": compile_s,
                           "peers": {k: {"prefill_ms": p, "tokens_per_s": t, "prefill_ms_median": pm,
                                         "tokens_per_s_median": tm} for k, (p, t, pm, tm) in rows.items()}})
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
