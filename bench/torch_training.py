"""Training through torch.compile(backend="lgc") against PyTorch eager, on the CPU.

The models of tests/test_torch_training.py: a small CNN (conv, training-mode batch norm,
relu, max pool, linear; batch 8 of 3x16x16) and a GPT-2 LM (2 layers, width 64, 256
tokens, sequences of 64, batch 2, dropouts 0), trained by torch.optim.SGD (lr 0.1).

First both train `--steps` steps from the same weights on the same batches: printed are the
largest step-1 gradient difference (relative to each parameter's largest gradient) and the
largest loss difference over the steps. Then each side keeps training on fresh copies of
the batches (as new data would arrive), timed per step in interleaved blocks (A A A B B B,
the order swapped every round); printed are the median step times, their ratio, the first
compiled step (tracing and compiling) and the bytes lgc moved per step (host to device,
device to host) with what they were.

    python bench/torch_training.py [--models cnn,gpt2] [--steps 20] [--rounds 5] [--block 3]
                                   [--threads N] [--json out.json]
"""
from __future__ import annotations

import copy
import statistics
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
from common import each_model, load, write_json
from torch_models import arguments, blocks, start


def cases():
    """name -> (model, batches(steps), loss(model, batch))."""
    import torch
    from tests import torch_nets as nets

    def cnn():
        torch.manual_seed(0)
        return nets.SmallCNN()
    return {
        "cnn": (lambda: (cnn(), lambda n: nets.image_batches(n), nets.cnn_loss)),
        "gpt2": (lambda: (nets.train_gpt2(), lambda n: nets.counting_batches(n), nets.lm_loss)),
    }


def train(model, batches, loss_of, lr=0.1):
    """(step-1 gradients, losses, seconds of each step) of SGD over `batches`."""
    import torch
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    grads, losses, seconds = None, [], []
    for b in batches:
        t = time.perf_counter()
        opt.zero_grad()
        loss = loss_of(model, b)
        loss.backward()
        opt.step()
        seconds.append(time.perf_counter() - t)
        losses.append(loss.item())
        if grads is None:
            grads = [p.grad.clone() for p in model.parameters()]
    return grads, losses, seconds


def stepper(model, batches, loss_of, lr=0.1):
    """One SGD step per call, on a fresh copy of the next batch."""
    import torch
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    it = iter(range(10 ** 9))

    def step():
        b = batches[next(it) % len(batches)]
        b = tuple(t.clone() for t in b) if isinstance(b, tuple) else b.clone()
        opt.zero_grad()
        loss_of(model, b).backward()
        opt.step()
    return step


def bench_model(name: str, build, steps: int, rounds: int, block: int) -> dict:
    import torch
    from lgc.torch import resident
    model, batches_of, loss_of = build()
    model.train()
    twin = copy.deepcopy(model)
    batches = batches_of(steps)
    compiled = torch.compile(twin, backend="lgc")
    want_g, want_l, _ = train(model, batches, loss_of)
    got_g, got_l, seconds = train(compiled, batches, loss_of)
    grad_err = max(float((g - w).abs().max() / w.abs().max()) for g, w in zip(got_g, want_g))
    loss_diff = max(abs(g - w) for g, w in zip(got_l, want_l))
    fns = {"lgc": stepper(compiled, batches, loss_of), "eager": stepper(model, batches, loss_of)}
    times = blocks(fns, rounds, block)
    moved = []
    for _ in range(3):
        resident.reset_transfers()
        fns["lgc"]()
        moved.append(resident.transfers())
    params = sum(p.numel() * p.element_size() for p in twin.parameters())
    lgc_ms, eager_ms = (statistics.median(times[k]) * 1e3 for k in ("lgc", "eager"))
    return {"model": name, "lgc_ms": lgc_ms, "eager_ms": eager_ms, "ratio": lgc_ms / eager_ms,
            "first_step_s": seconds[0], "grad_err": grad_err, "loss_diff": loss_diff,
            "loss_first": got_l[0], "loss_last": got_l[-1], "param_bytes": params,
            "uploaded": statistics.median(m.uploaded for m in moved),
            "downloaded": statistics.median(m.downloaded for m in moved),
            "reused": statistics.median(m.reused for m in moved)}


def main():
    import torch
    table = cases()
    ap = arguments(__doc__, table, "steps in a row per block")
    ap.add_argument("--steps", type=int, default=20, help="steps of the accuracy comparison")
    args = ap.parse_args()
    cpu, dev = start(args)
    print(f"{'model':<6} {'lgc ms':>8} {'eager ms':>9} {'lgc/eager':>9} {'1st step s':>10} "
          f"{'grad err':>9} {'loss diff':>9} {'loss 1st->last':>15} {'up KB':>7} {'down KB':>8} "
          f"{'params KB':>9}  load", flush=True)

    def show(r):
        print(f"{r['model']:<6} {r['lgc_ms']:>8.1f} {r['eager_ms']:>9.1f} {r['ratio']:>8.2f}x "
              f"{r['first_step_s']:>10.1f} {r['grad_err']:>9.1e} {r['loss_diff']:>9.1e} "
              f"{r['loss_first']:>7.3f}->{r['loss_last']:<7.3f} {r['uploaded'] / 1e3:>7.1f} "
              f"{r['downloaded'] / 1e3:>8.1f} {r['param_bytes'] / 1e3:>9.1f}  {r['load']}", flush=True)
    rows = each_model(args.models.split(","),
                      lambda name: bench_model(name, table[name], args.steps, args.rounds,
                                               args.block), show)
    print("up KB: host to device per step (the parameters the step changed, the new batch, "
          "the loss gradient torch computed, batch-norm buffers); down KB: device to host "
          "(the gradients, and the forward's outputs and saved activations)")
    print(f"end: {load()}")
    write_json(args.json, {"benchmark": "torch_training", "cpu": cpu, "device": dev.describe(),
                           "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "results": rows})


if __name__ == "__main__":
    main()
