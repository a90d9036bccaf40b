"""lgc against onnxruntime on small, mobile, recurrent and transformer models built with torch.

Each model is a torch.nn module with seeded random weights (no download), shaped like a
known one, exported to ONNX in a temporary folder (torch.onnx.export, the TorchScript
exporter): MobileNetV2, MobileNetV3-small, ShuffleNetV2 x1.0, SqueezeNet 1.1 (224x224,
batch 1), an LSTM+GRU sequence model (64 steps), a small ViT (patch 16, 224x224, 6 blocks of
width 192) and ViT-B/16 (12 blocks of width 768, 12 heads, 197 tokens), GPT-2 (transformers' GPT2Config: 12 layers of 768, 64 tokens) and a T5-small
encoder (transformers' T5Config: 6 layers of 512, 64 tokens). torchvision is not used. Needs
torch and, for gpt2 and t5_encoder, transformers (pip install torch transformers); a model
that fails to build or export gets a line saying why and the table goes on.

lgc runs on its default device; onnxruntime on the CPU with as many threads as the OpenCL
CPU device has compute units and spinning off (session.intra_op.allow_spinning=0), both
in this process, timed in blocks (lgc x block, onnxruntime x block, the order alternating
each round) after warm-up. Prints the CPU, then per model the median latency of each and
the ratio lgc/onnxruntime, the same for the process's CPU time (all threads; steadier than
wall time where other work loads the machine), lgc's compile and first-run times, its
launches per inference and the largest difference between the two outputs relative to the
largest output.

    python bench/zoo.py [--models mobilenet_v2,gpt2] [--rounds 5] [--block 3] [--keep DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import first_run_against, load, say, write_json


# ---- the models (torch.nn, random weights) ----------------------------------------------------

def _torch_models():
    """{name: (module factory, example inputs factory)}; torch imported only when asked."""
    import torch
    from torch import nn

    def cbr(i, o, k=3, s=1, g=1, act=nn.ReLU):
        return [nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o)] + ([act()] if act else [])

    class InvertedResidual(nn.Module):            # MobileNetV2's block
        def __init__(self, i, o, s, t):
            super().__init__()
            h = i * t
            layers = (cbr(i, h, 1, act=nn.ReLU6) if t != 1 else []) + cbr(h, h, 3, s, h, nn.ReLU6) + cbr(h, o, 1, act=None)
            self.body, self.res = nn.Sequential(*layers), s == 1 and i == o

        def forward(self, x):
            return x + self.body(x) if self.res else self.body(x)

    def mobilenet_v2():
        cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        layers, c = cbr(3, 32, 3, 2, act=nn.ReLU6), 32
        for t, o, n, s in cfg:
            for j in range(n):
                layers.append(InvertedResidual(c, o, s if j == 0 else 1, t))
                c = o
        layers += cbr(c, 1280, 1, act=nn.ReLU6) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000)]
        return nn.Sequential(*layers)

    def divisible(v):
        return max(8, int(v + 4) // 8 * 8)

    class SqueezeExcite(nn.Module):
        def __init__(self, c):
            super().__init__()
            s = divisible(c // 4)
            self.f = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, s, 1), nn.ReLU(), nn.Conv2d(s, c, 1),
                                   nn.Hardsigmoid())

        def forward(self, x):
            return x * self.f(x)

    class V3Block(nn.Module):                     # MobileNetV3's block
        def __init__(self, i, k, h, o, se, act, s):
            super().__init__()
            layers = (cbr(i, h, 1, act=act) if h != i else []) + cbr(h, h, k, s, h, act)
            layers += ([SqueezeExcite(h)] if se else []) + cbr(h, o, 1, act=None)
            self.body, self.res = nn.Sequential(*layers), s == 1 and i == o

        def forward(self, x):
            return x + self.body(x) if self.res else self.body(x)

    def mobilenet_v3_small():
        RE, HS = nn.ReLU, nn.Hardswish
        cfg = [(3, 16, 16, 1, RE, 2), (3, 72, 24, 0, RE, 2), (3, 88, 24, 0, RE, 1), (5, 96, 40, 1, HS, 2),
               (5, 240, 40, 1, HS, 1), (5, 240, 40, 1, HS, 1), (5, 120, 48, 1, HS, 1), (5, 144, 48, 1, HS, 1),
               (5, 288, 96, 1, HS, 2), (5, 576, 96, 1, HS, 1), (5, 576, 96, 1, HS, 1)]
        layers, c = cbr(3, 16, 3, 2, act=HS), 16
        for k, h, o, se, act, s in cfg:
            layers.append(V3Block(c, k, h, o, se, act, s))
            c = o
        layers += cbr(c, 576, 1, act=HS) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(576, 1024), HS(),
                                             nn.Linear(1024, 1000)]
        return nn.Sequential(*layers)

    class ShuffleBlock(nn.Module):                # ShuffleNetV2's block
        def __init__(self, i, o, s):
            super().__init__()
            h = o // 2
            self.s = s
            self.left = nn.Sequential(*cbr(i, i, 3, s, i, None), *cbr(i, h, 1)) if s == 2 else None
            self.right = nn.Sequential(*cbr(i if s == 2 else h, h, 1), *cbr(h, h, 3, s, h, None), *cbr(h, h, 1))

        def forward(self, x):
            if self.s == 1:
                a, b = x.chunk(2, dim=1)
                y = torch.cat((a, self.right(b)), 1)
            else:
                y = torch.cat((self.left(x), self.right(x)), 1)
            n, c, hh, ww = y.shape
            return y.view(n, 2, c // 2, hh, ww).transpose(1, 2).reshape(n, c, hh, ww)

    def shufflenet_v2():
        layers, c = cbr(3, 24, 3, 2) + [nn.MaxPool2d(3, 2, 1)], 24
        for reps, o in zip((4, 8, 4), (116, 232, 464)):
            for j in range(reps):
                layers.append(ShuffleBlock(c, o, 2 if j == 0 else 1))
                c = o
        layers += cbr(c, 1024, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000)]
        return nn.Sequential(*layers)

    class Fire(nn.Module):
        def __init__(self, i, s, e):
            super().__init__()
            self.sq = nn.Sequential(nn.Conv2d(i, s, 1), nn.ReLU())
            self.e1 = nn.Sequential(nn.Conv2d(s, e, 1), nn.ReLU())
            self.e3 = nn.Sequential(nn.Conv2d(s, e, 3, padding=1), nn.ReLU())

        def forward(self, x):
            x = self.sq(x)
            return torch.cat((self.e1(x), self.e3(x)), 1)

    def squeezenet1_1():
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)     # noqa: E731
        return nn.Sequential(nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(), Fire(64, 16, 64), Fire(128, 16, 64), pool(),
                             Fire(128, 32, 128), Fire(256, 32, 128), pool(), Fire(256, 48, 192), Fire(384, 48, 192),
                             Fire(384, 64, 256), Fire(512, 64, 256), nn.Conv2d(512, 1000, 1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())

    class Recurrent(nn.Module):                   # an LSTM and a GRU over 64 steps
        def __init__(self):
            super().__init__()
            self.lstm, self.gru, self.head = nn.LSTM(64, 128, 2), nn.GRU(128, 128), nn.Linear(128, 10)

        def forward(self, x):
            return self.head(self.gru(self.lstm(x)[0])[0])

    class Attention(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.h, self.qkv, self.out = heads, nn.Linear(d, 3 * d), nn.Linear(d, d)

        def forward(self, x):
            n, t, d = x.shape
            q, k, v = self.qkv(x).view(n, t, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.h) ** 0.5, -1)
            return self.out((a @ v).transpose(1, 2).reshape(n, t, d))

    class Block(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.n1, self.att, self.n2 = nn.LayerNorm(d), Attention(d, heads), nn.LayerNorm(d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

        def forward(self, x):
            x = x + self.att(self.n1(x))
            return x + self.mlp(self.n2(x))

    class ViT(nn.Module):
        def __init__(self, d=192, depth=6, heads=3):
            super().__init__()
            self.patch = nn.Conv2d(3, d, 16, 16)
            self.cls, self.pos = nn.Parameter(torch.randn(1, 1, d) * 0.02), nn.Parameter(torch.randn(1, 197, d) * 0.02)
            self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(depth)])
            self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 1000)

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2)
            x = torch.cat((self.cls.expand(x.shape[0], -1, -1), x), 1) + self.pos
            return self.head(self.norm(self.blocks(x))[:, 0])

    def gpt2():
        from transformers import GPT2Config, GPT2LMHeadModel
        cfg = GPT2Config(use_cache=False, attn_implementation="eager")
        return _logits(GPT2LMHeadModel(cfg))

    def t5_encoder():
        from transformers import T5Config, T5EncoderModel
        cfg = T5Config(d_model=512, d_ff=2048, num_layers=6, num_heads=8, use_cache=False,
                       attn_implementation="eager")
        return _logits(T5EncoderModel(cfg))

    class _logits(nn.Module):                     # a transformers model's first output, as a tensor
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids):     # a mask of ones: transformers' packed-sequence check does not export
            return self.m(input_ids=ids, attention_mask=torch.ones_like(ids), return_dict=False)[0]

    g = torch.Generator().manual_seed(0)
    image = lambda: (torch.randn(1, 3, 224, 224, generator=g),)      # noqa: E731
    tokens = lambda v: lambda: (torch.randint(0, v, (1, 64), generator=g),)   # noqa: E731
    return {"mobilenet_v2": (mobilenet_v2, image), "mobilenet_v3_small": (mobilenet_v3_small, image),
            "shufflenet_v2": (shufflenet_v2, image), "squeezenet1_1": (squeezenet1_1, image),
            "lstm_gru": (Recurrent, lambda: (torch.randn(64, 1, 64, generator=g),)),
            "vit_small": (ViT, image), "vit_b16": (lambda: ViT(768, 12, 12), image), "gpt2": (gpt2, tokens(50257)), "t5_encoder": (t5_encoder, tokens(32128))}


MODELS = ["mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2", "squeezenet1_1", "lstm_gru", "vit_small",
          "vit_b16", "gpt2", "t5_encoder"]


def export(name: str, folder: str) -> tuple[str, dict]:
    """The model as an ONNX file in `folder`, and its inputs as NumPy arrays."""
    import torch
    make, inputs = _torch_models()[name]
    torch.manual_seed(0)
    module = make().eval()
    args = inputs()
    path = os.path.join(folder, f"{name}.onnx")
    names = [f"input{i}" for i in range(len(args))]
    with torch.no_grad():
        torch.onnx.export(module, args, path, input_names=names, dynamo=False, opset_version=17)
    return path, {n: a.numpy() for n, a in zip(names, args)}


# ---- timing -----------------------------------------------------------------------------------

def blocks(fns: dict, rounds: int, block: int) -> tuple[dict, dict]:
    """Wall times and process CPU times (all threads: the runtime's workers too) of each
    callable, run `block` times in a row per round (A A A B B B), the order of the peers
    rotating each round; the first call of each block is a lead-in, not timed (a peer that
    ran just before may still hold the cores). On a machine others load, CPU time is the
    steadier figure: what a run costs, not how long it waited for a core."""
    wall, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            fns[k]()
            for _ in range(block):
                t, c = time.perf_counter(), time.process_time()
                fns[k]()
                cpu[k].append(time.process_time() - c)
                wall[k].append(time.perf_counter() - t)
    return wall, cpu


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def bench_model(name: str, folder: str, rounds: int, block: int, threads: int) -> dict:
    import onnxruntime as ort

    import lgc
    t = time.perf_counter()
    path, feeds = export(name, folder)
    t_export = time.perf_counter() - t
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    t = time.perf_counter()
    model = lgc.Model(path)
    exe = model.executable(model.default_types())
    t_compile = time.perf_counter() - t
    t_first, err = first_run_against(exe, sess, feeds)
    peers = {"lgc": lambda: exe.run(feeds), "ort": lambda: sess.run(None, feeds)}
    for fn in peers.values():   # warm-up
        fn()
    times, cpu = blocks(peers, rounds, block)
    lg, rt = float(np.median(times["lgc"])), float(np.median(times["ort"]))
    lc, rc = float(np.median(cpu["lgc"])), float(np.median(cpu["ort"]))
    return {"model": name, "lgc_ms": lg * 1e3, "ort_ms": rt * 1e3, "ratio": lg / rt,
            "lgc_cpu_ms": lc * 1e3, "ort_cpu_ms": rc * 1e3, "cpu_ratio": lc / rc, "export_s": t_export,
            "compile_s": t_compile, "first_run_s": t_first, "launches": len(exe.program.launches),
            "max_rel_diff": err, "lgc_times_ms": [x * 1e3 for x in times["lgc"]],
            "ort_times_ms": [x * 1e3 for x in times["ort"]]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=3)
    ap.add_argument("--keep", metavar="DIR", help="export the ONNX files here and keep them (lgc bench reads them)")
    ap.add_argument("--json")
    args = ap.parse_args()
    from lgc.runtime import select_device
    device = select_device(None)
    threads = device.cl_device.max_compute_units
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores); lgc device: {device.describe()}")
    print(f"onnxruntime: {threads} threads, spinning off; {args.rounds} rounds of blocks of {args.block}; {load()}")
    print(f"{'':<20} {'wall time, median':^28} {'CPU time, all threads':^28}")
    print(f"{'model':<20} {'lgc ms':>9} {'ort ms':>9} {'lgc/ort':>8} {'lgc ms':>9} {'ort ms':>9} {'lgc/ort':>8} "
          f"{'compile s':>9} {'1st run s':>9} {'launches':>8} {'max rel diff':>12}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or tmp
        os.makedirs(folder, exist_ok=True)
        for name in args.models.split(","):
            say(f"{name}: export, compile, time ...")
            try:
                r = bench_model(name, folder, args.rounds, args.block, threads)
            except Exception as e:     # one model failing (export, import) does not stop the table
                print(f"{name:<20} failed: {type(e).__name__}: {str(e).splitlines()[0][:150]}")
                rows.append({"model": name, "error": f"{type(e).__name__}: {e}"})
                continue
            rows.append(r)
            print(f"{name:<20} {r['lgc_ms']:>9.2f} {r['ort_ms']:>9.2f} {r['ratio']:>7.2f}x {r['lgc_cpu_ms']:>9.2f} "
                  f"{r['ort_cpu_ms']:>9.2f} {r['cpu_ratio']:>7.2f}x {r['compile_s']:>9.2f} {r['first_run_s']:>9.2f} "
                  f"{r['launches']:>8} {r['max_rel_diff']:>12.2e}", flush=True)
    done = [(r["ratio"], r["cpu_ratio"]) for r in rows if "ratio" in r]
    if done:
        wall, cpu = np.exp(np.mean(np.log(done), axis=0))
        print(f"geometric mean lgc/ort {wall:.2f}x by wall time, {cpu:.2f}x by CPU time over {len(done)} models; "
              f"{load()}")
    write_json(args.json, {"benchmark": "zoo", "cpu": cpu_name(), "device": device.describe(),
                           "ort_threads": threads, "models": rows})


if __name__ == "__main__":
    main()
