"""lgc through torch.compile(backend="lgc") against PyTorch eager, on the CPU, batch 1.

The models of tests/torch_nets.py at full size with seeded random weights: ResNet-18,
MobileNetV3-Small, ConvNeXt-T and ViT-B/16 at 224x224, BERT-base and GPT-2 small on 128
tokens, GPT-2 decoding one token after 128 cached ones, a two-layer LSTM over 64 steps.
Both run in this process under torch.no_grad(), timed in interleaved blocks (A A A B B B,
the order swapped every round) after warm-up; prints the median latency of each, the ratio
lgc/eager, the compile and first-call time and the largest difference between the outputs
relative to the largest output. Target: the CNNs within 1.5x of eager.

--threads N gives each side N threads (torch.set_num_threads, PoCL's compute units): on a
loaded machine PyTorch's OpenMP threads, which spin at barriers, lose far more than PoCL's
when there are fewer free cores than threads, so `--threads 1` is the fairer comparison there.

    python bench/torch_models.py [--models resnet18,bert] [--rounds 5] [--block 3] [--threads N]
                                 [--json out.json]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
from common import each_model, load, write_json

CNNS = ("resnet18", "mobilenet_v3", "convnext")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except Exception:
        return "unknown CPU"


def cases():
    """name -> (build, example args), built on demand (transformers loads only if asked)."""
    import torch
    from tests import torch_nets as nets

    def image():
        return (torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)),)

    def ids(n, vocab):
        return (torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(0)),)

    def gpt2_decode():
        lm = nets.gpt2_small(use_cache=True)
        return nets.GPT2WithPast(lm).eval(), ids(1, 50257) + nets.gpt2_past(lm, 1, 128)
    return {
        "resnet18": lambda: (nets.resnet18(), image()),
        "mobilenet_v3": lambda: (nets.mobilenet_v3(), image()),
        "convnext": lambda: (nets.convnext(), image()),
        "vit_b16": lambda: (nets.vit_b16(), image()),
        "bert": lambda: (nets.bert_base(), ids(128, 30522)),
        "gpt2": lambda: (nets.gpt2_small(), ids(128, 50257)),
        "gpt2_decode": gpt2_decode,
        "lstm": lambda: (nets.lstm(), ids(64, 100)),
    }


def first_tensor(out):
    import torch
    return out if isinstance(out, torch.Tensor) else torch.utils._pytree.tree_leaves(out)[0]


def blocks(fns: dict, rounds: int, block: int) -> dict:
    """Per-call wall times of each callable, in blocks of `block` calls, alternating."""
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            for _ in range(block):
                t = time.perf_counter()
                fns[k]()
                times[k].append(time.perf_counter() - t)
    return times


def bench_model(name: str, build, rounds: int, block: int) -> dict:
    import torch
    import lgc.torch
    model, args = build()
    torch._dynamo.config.allow_rnn = True   # else dynamo leaves nn.LSTM to eager
    with torch.no_grad():
        compiled = torch.compile(model, backend=lgc.torch.lgc_backend)
        t = time.perf_counter()
        got = first_tensor(compiled(*args))
        compile_s = time.perf_counter() - t
        want = first_tensor(model(*args))
        err = float((got - want).abs().max() / want.abs().max())
        fns = {"lgc": lambda: compiled(*args), "eager": lambda: model(*args)}
        for f in fns.values():   # warm-up
            f()
        times = blocks(fns, rounds, block)
    lgc_ms = statistics.median(times["lgc"]) * 1e3
    eager_ms = statistics.median(times["eager"]) * 1e3
    return {"model": name, "lgc_ms": lgc_ms, "eager_ms": eager_ms, "ratio": lgc_ms / eager_ms,
            "compile_s": compile_s, "max_rel_diff": err}


def arguments(doc: str, models, block_help: str) -> argparse.ArgumentParser:
    """The options torch_models.py and torch_training.py share."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--models", default=",".join(models))
    ap.add_argument("--rounds", type=int, default=5, help="rounds of one block of each")
    ap.add_argument("--block", type=int, default=3, help=block_help)
    ap.add_argument("--threads", type=int, help="threads for each side (default: theirs)")
    ap.add_argument("--json", help="write the results here")
    return ap


def start(args) -> tuple:
    """(CPU name, lgc's device) after giving each side --threads threads, printed with the
    torch version and the machine's load."""
    import torch
    if args.threads:   # before the OpenCL device is made
        torch.set_num_threads(args.threads)
        os.environ["POCL_MAX_PTHREAD_COUNT"] = os.environ["POCL_CPU_MAX_CU_COUNT"] = str(args.threads)
    import lgc
    dev = lgc.runtime.select_device()
    cpu = cpu_model()
    print(f"CPU: {cpu}; lgc device: {dev.describe()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"start: {load()}")
    return cpu, dev


def main():
    import torch
    table = cases()
    args = arguments(__doc__, table, "calls in a row per block").parse_args()
    cpu, dev = start(args)
    print(f"{'model':<13} {'lgc ms':>9} {'eager ms':>9} {'lgc/eager':>9} {'compile s':>9} "
          f"{'max rel diff':>12}  load", flush=True)
    def show(r):
        print(f"{r['model']:<13} {r['lgc_ms']:>9.1f} {r['eager_ms']:>9.1f} {r['ratio']:>8.2f}x "
              f"{r['compile_s']:>9.1f} {r['max_rel_diff']:>12.2e}  {r['load']}", flush=True)
    rows = each_model(args.models.split(","),
                      lambda name: bench_model(name, table[name], args.rounds, args.block), show)
    cnn = [r for r in rows if r["model"] in CNNS and "ratio" in r]
    if cnn:
        within = [r["model"] for r in cnn if r["ratio"] <= 1.5]
        ratios = ", ".join("{} {:.2f}x".format(r["model"], r["ratio"]) for r in cnn)
        print(f"target CNNs within 1.5x of eager: {len(within)}/{len(cnn)} ({ratios})")
    print(f"end: {load()}")
    write_json(args.json, {"benchmark": "torch_models", "cpu": cpu, "device": dev.describe(),
                           "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "rounds": args.rounds, "block": args.block,
                           "results": rows})


if __name__ == "__main__":
    main()
