"""lgc on a GPU through its OpenCL, against cuBLAS and PyTorch eager on the same GPU.

Issue 4's GPU targets: 4096x4096 SGEMM >= 70% of cuBLAS FP32 (torch, TF32 off), and
torchvision's ResNet-50 at batch 16 <= 2x PyTorch eager FP32. Sections, each timed against
its peer in the same run, interleaved (A B A B):

  sgemm   lgc's untuned default on the N^3 product (the parameters a compile picks with no
          tuning database), compiled through lgc, checked against torch in float64, and
          timed against torch.matmul (TF32 off): kernel time (profiling events / CUDA
          events) and wall time with operands already on the device. The out-of-the-box
          figure, reported first.
  sgemm_sweep  a tuned figure, reported apart: a staged sweep of about 50 of gpu_gemm's
          parameter sets on this exact shape (tile shapes first, then the staging knobs on
          the best tile, then the best knobs on the best tiles); the winner is stored in a
          database of its own and checked and timed as above.
  resnet  torchvision's resnet50 (seeded random weights, batch-norm statistics randomised)
          exported to ONNX at --batch; lgc's compile time, its output against torch's, and
          its latency with the input on the device (the buffers path lgc.jit runs) against
          torch eager FP32 (TF32 off; TF32 on, torch's default for convolutions, for scale);
          also lgc with LGC_GPU_CONV_FOLD=0, with the 4x4-medium wide heuristic and with
          LGC_GPU_SPLIT_K=0, and a per-kernel table.
  resnet1 the same at batch 1, lgc with and without split-K.
  tune    `lgc tune` (lgc.runtime.tuner.tune) on the ResNet-50 graph within --tune-budget
          seconds, then the resnet timings again with the tuned database.

Results go to --out (gpu.json, kernel tables, the tuning databases) and a summary to stdout;
the resnet sections are untuned unless the tune section ran.
On the GPU machine (../shared/gpu/README.md):

    source .whl/gpu-setup.sh && LGC_DEVICE=gpu python3 bench/gpu.py --out $OUT

--smoke runs every section small on any device, with the GPU kernels forced (a check of this
script on PoCL, no figures).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, replace

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import env, interleaved, say
from matmul import matmul_graph

RESULTS: dict = {}


def save(out: str) -> None:
    with open(os.path.join(out, "gpu.json"), "w") as f:
        json.dump(RESULTS, f, indent=1, default=str)


def section(name: str, out: str, fn, *args) -> None:
    """Run one section; a failure is recorded with its traceback and the next section runs."""
    t = time.perf_counter()
    say(f"== {name}")
    try:
        RESULTS[name] = fn(*args)
    except Exception as e:   # noqa: BLE001 (a benchmark keeps going and reports)
        RESULTS[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        say(traceback.format_exc())
    RESULTS.setdefault("seconds", {})[name] = time.perf_counter() - t
    save(out)


# ---- set-up -----------------------------------------------------------------------------------

def gpu_target(device, smoke: bool):
    """The device's Target; --smoke on a CPU device pretends to be a 32-wide GPU."""
    t = device.target
    if smoke and not t.is_gpu:
        t = replace(t, name="smoke-gpu", device_type="gpu", wave_width=32, local_mem_bytes=49152,
                    max_work_group=1024, key="smoke-gpu")
    return t


def torch_setup():
    import torch
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return torch


def info(device, target) -> dict:
    import pyopencl as cl
    d = device.cl_device
    out = {"device": device.describe(), "driver": d.driver_version, "opencl": d.version,
           "compute_units": d.max_compute_units, "clock_mhz": d.max_clock_frequency,
           "local_mem": d.local_mem_size, "max_work_group": d.max_work_group_size,
           "base_addr_align_bits": d.mem_base_addr_align, "target": asdict(target),
           "platforms": [p.name for p in cl.get_platforms()]}
    torch = torch_setup()
    if torch is not None:
        out["torch"] = torch.__version__
        out["torch_device"] = torch.cuda.get_device_name()
    return out


# ---- SGEMM ------------------------------------------------------------------------------------

# (MWG, NWG, MDIMC, NDIMC, VWM, VWN): 8x8 register tiles in several work-group shapes, and the
# presets' 4x8 and 4x4 tiles
TILES = [(128, 128, 16, 16, 4, 4), (64, 128, 8, 16, 4, 4), (128, 64, 16, 8, 4, 4),
         (64, 64, 8, 8, 4, 4), (128, 128, 16, 16, 2, 4), (64, 128, 16, 16, 4, 4),
         (128, 128, 32, 16, 4, 4), (64, 64, 16, 16, 4, 4)]
def _params(tile, kwg, **knobs):
    from lgc.backends.gpu_gemm import GemmParams
    m, n, md, nd, vm, vn = tile
    return GemmParams(MWG=m, NWG=n, KWG=kwg, MDIMC=md, NDIMC=nd, VWM=vm, VWN=vn, **knobs)


def time_candidates(device, target, node, cands, runs: int = 5) -> list[tuple]:
    """[(params, seconds)] for the valid candidates, kernels built 8 to a program and timed
    by lgc tune's own timer (profiling events, candidates interleaved per round)."""
    from lgc.backends import gpu_gemm
    from lgc.runtime import tuner
    cands = [p for p in dict.fromkeys(cands) if gpu_gemm.valid(p, target)]
    out = []
    for i in range(0, len(cands), 8):
        chunk = cands[i:i + 8]
        kernels = [gpu_gemm.matmul_kernels(node, f"cand{j}", target, params=p)[0] for j, p in enumerate(chunk)]
        out += [(p, t) for p, (t, _) in zip(chunk, tuner.time_kernels(device, kernels, runs=runs))]
    return out


def _tflops(n: int):
    return lambda s: 2.0 * n ** 3 / s / 1e12


def sgemm(device, target, n: int, out: str) -> dict:
    """lgc's untuned default on the N^3 product, the out-of-the-box figure: the parameters a
    compile picks with no tuning database (the shipped defaults, else the heuristic)."""
    from lgc.backends import gpu_gemm
    graph = matmul_graph(n)
    with env(LGC_TUNE_DB=os.path.join(out, "no-tuning-database.json")):    # never written
        params = gpu_gemm.params_for(gpu_gemm.gemm_shape(graph.nodes[0]), target)
    res = {"n": n, "figure": "untuned: lgc's default parameters, no tuning database",
           "params": asdict(params)}
    say(f"  untuned default {params}")
    return sgemm_check_and_time(device, target, graph, params, res, _tflops(n))


def sgemm_sweep(device, target, n: int, out: str) -> dict:
    """A tuned figure, reported apart from the default: a staged sweep of about 50 candidates
    on this exact shape (tile shapes first, then the staging knobs on the best tile, then the
    best knobs on the best tiles), timed by lgc tune's timer; the winner is stored in a
    database of its own (sgemm_sweep.json, read by no other section), compiled, timed."""
    from pathlib import Path

    from lgc.backends import gpu_gemm, tuner, tuning
    graph = matmul_graph(n)
    node = graph.nodes[0]
    tf = _tflops(n)
    t0 = time.perf_counter()
    stage1 = time_candidates(device, target, node, [_params(t, k, **gpu_gemm.WIDE_KNOBS) for t in TILES for k in (8, 16)])
    stage1.sort(key=lambda r: r[1])
    best_tile = stage1[0][0]
    say("  stage 1 (tiles): " + ", ".join(f"{p.MWG}x{p.NWG}/{p.MDIMC}x{p.NDIMC}/k{p.KWG}/v{p.VWM}: "
                                          f"{tf(s):.1f}" for p, s in stage1[:6]) + " TFLOP/s")
    stage2 = time_candidates(device, target, node, [replace(best_tile, **k) for k in tuner.GPU_KNOBS])
    stage2.sort(key=lambda r: r[1])
    say("  stage 2 (knobs): " + ", ".join(f"STU{p.STU} PAD{p.PAD} VLA{p.VLA} VLB{p.VLB} KUNR{p.KUNR}: "
                                          f"{tf(s):.1f}" for p, s in stage2[:6]) + " TFLOP/s")
    top_knobs = [dict(STU=p.STU, PAD=p.PAD, VLA=p.VLA, VLB=p.VLB, KUNR=p.KUNR) for p, _ in stage2[:3]]
    stage3 = time_candidates(device, target, node, [replace(p, **k) for p, _ in stage1[:4] for k in top_knobs])
    ranked = sorted(stage1 + stage2 + stage3, key=lambda r: r[1])
    best, best_s = ranked[0]
    heur = gpu_gemm.heuristic(n, n, n, 1, target)
    (heur_s,) = [s for _, s in time_candidates(device, target, node, [heur])] or [float("inf")]
    sweep_s = time.perf_counter() - t0
    say(f"  best {best} {tf(best_s):.1f} TFLOP/s; heuristic {tf(heur_s):.1f}; sweep {sweep_s:.0f} s")
    tuning.save_entry(target, gpu_gemm.gemm_shape(node)[0], asdict(best), best_s,
                      path=Path(out) / "sgemm_sweep.json")
    res = {"n": n, "figure": f"tuned: the best of {len(ranked)} candidates swept on this exact shape",
           "sweep_s": sweep_s, "candidates": len(ranked), "best": asdict(best),
           "best_kernel_ms": best_s * 1e3, "best_tflops": tf(best_s), "heuristic": asdict(heur),
           "heuristic_tflops": tf(heur_s),
           "top10": [(asdict(p), tf(s)) for p, s in ranked[:10]],
           "stage1": [(asdict(p), tf(s)) for p, s in stage1]}
    return sgemm_check_and_time(device, target, graph, best, res, tf)


def sgemm_check_and_time(device, target, graph, params, res: dict, tf) -> dict:
    """Compile the product through lgc with these parameters, check it against float64, time
    it against cuBLAS."""
    import pyopencl as cl

    import lgc
    from lgc.backends import gpu_gemm, tuning
    n = graph.inputs[0].shape[0]
    with tuning.forced({gpu_gemm.gemm_shape(graph.nodes[0])[0]: asdict(params)}):
        exe = lgc.compile(graph, device=device, target=target)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    (got,) = exe.run({"a": a, "b": b}).values()
    torch = torch_setup()
    if torch is None:
        want = a.astype(np.float64) @ b.astype(np.float64)
    else:
        want = (torch.from_numpy(a).cuda().double() @ torch.from_numpy(b).cuda().double()).cpu().numpy()
    err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    res["max_err_over_max_ref"] = err
    say(f"  lgc against float64: max |err| / max |ref| = {err:.2e}")
    if torch is None:
        return res

    # interleaved: lgc on device buffers (kernel events, wall) against torch.matmul (events, wall)
    ex = exe.executor
    mf = cl.mem_flags
    bufs = [cl.Buffer(device.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=x) for x in (a, b)]
    ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
    got_torch = (ta @ tb).cpu().numpy()
    res["torch_fp32_err_over_max_ref"] = float(np.max(np.abs(got_torch - want)) / np.max(np.abs(want)))

    def lgc_wall():
        ex.run_buffers(bufs)
        ex.queue.finish()

    def torch_wall():
        ta @ tb
        torch.cuda.synchronize()

    walls = interleaved({"lgc": lgc_wall, "cublas": torch_wall}, runs=10, lead_in_s=0.05)
    # kernel times: lgc's compiled kernel on a profiling queue, cuBLAS between CUDA events
    from lgc.runtime.executor import Executor
    prof = Executor(exe.program, device, profile=True)
    k_lgc, k_torch = [], []
    for _ in range(10):
        prof.run([a, b])
        k_lgc.append(sum(t for _, _, t in prof.last_profile))
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        ta @ tb
        e1.record()
        torch.cuda.synchronize()
        k_torch.append(e0.elapsed_time(e1) * 1e-3)
    med = lambda xs: float(np.median(xs))   # noqa: E731
    res.update({"lgc_kernel_ms": med(k_lgc) * 1e3, "cublas_kernel_ms": med(k_torch) * 1e3,
                "lgc_kernel_tflops": tf(med(k_lgc)), "cublas_tflops": tf(med(k_torch)),
                "kernel_ratio_lgc_over_cublas": med(k_torch) / med(k_lgc),
                "lgc_wall_ms": med(walls["lgc"]) * 1e3, "cublas_wall_ms": med(walls["cublas"]) * 1e3,
                "wall_ratio_lgc_over_cublas": med(walls["cublas"]) / med(walls["lgc"])})
    say(f"  {res['figure']}: lgc {res['lgc_kernel_tflops']:.1f} TFLOP/s, cuBLAS {res['cublas_tflops']:.1f}: "
        f"{100 * res['kernel_ratio_lgc_over_cublas']:.0f}% of cuBLAS (kernels), "
        f"{100 * res['wall_ratio_lgc_over_cublas']:.0f}% (wall, operands on the device)")
    return res


# ---- ResNet-50 --------------------------------------------------------------------------------

def torch_resnet(batch: int, path: str, smoke: bool):
    """(torch model or None, ONNX path): torchvision's resnet50, seeded, batch-norm statistics
    randomised, exported at `batch`; without torchvision (--smoke here) the onnx package's
    light ResNet-50 with seeded random weights."""
    try:
        import torch
        import torchvision
    except ImportError:
        if not smoke:
            raise
        import onnx
        from random_weights import light_model_path, randomize
        onnx.save(randomize(onnx.load(light_model_path("resnet50")), 0), path)
        return None, path
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    x = torch.randn(batch, 3, 224, 224)
    kw = dict(input_names=["input"], output_names=["logits"], opset_version=17)
    try:
        torch.onnx.export(model, (x,), path, dynamo=False, **kw)
    except Exception as e:   # noqa: BLE001 (the TorchScript exporter may be gone: try dynamo's)
        say(f"  TorchScript export failed ({type(e).__name__}: {e}); trying dynamo=True")
        torch.onnx.export(model, (x,), path, dynamo=True, external_data=False, **kw)
    return model, path


def compile_resnet(path, batch, device, target, fold: bool = True, previous: bool = False,
                   split: bool = True):
    """previous: the wide heuristic tried in between (a 64x64 tile of 16x16 work-items, 4x4
    each, for the medium preset, and two work-groups per compute unit required), patched in for
    this compile (so the compiled program cache is bypassed). split=False: LGC_GPU_SPLIT_K=0."""
    from lgc.tools.bench import compile_for_bench
    from lgc.backends import gpu_gemm
    switches = {"LGC_GPU_CONV_FOLD": "1" if fold else "0", "LGC_GPU_SPLIT_K": "1" if split else "0"}
    if previous:
        switches["LGC_CACHE_COMPILED"] = "0"
    presets, per_cu = dict(gpu_gemm.PRESETS_WIDE), gpu_gemm.MIN_GROUPS_PER_CU
    if previous:
        gpu_gemm.PRESETS_WIDE["medium"] = replace(presets["medium"], MDIMC=16, NDIMC=16)
        gpu_gemm.MIN_GROUPS_PER_CU = 2
    try:
        with env(**switches):
            t = time.perf_counter()
            exe, types, _ = compile_for_bench(path, batch, device.retargeted(target))
            compile_s = time.perf_counter() - t
    finally:
        gpu_gemm.PRESETS_WIDE.update(presets)
        gpu_gemm.MIN_GROUPS_PER_CU = per_cu
    return exe, types, compile_s


_MODEL: dict = {}


def resnet(device, target, batch: int, out: str, smoke: bool, tag: str = "", variants: bool = True,
           runs: int = 15) -> dict:
    import pyopencl as cl

    from lgc.tools.bench import kernel_table, profile_kernels
    path = os.path.join(out if smoke else "/tmp", f"resnet50_b{batch}.onnx")
    t = time.perf_counter()
    if batch not in _MODEL:
        _MODEL[batch] = torch_resnet(batch, path, smoke)
    model, path = _MODEL[batch]
    res = {"batch": batch, "export_s": time.perf_counter() - t, "model": "torchvision resnet50" if model else
           "onnx light resnet50, random weights"}
    exe, types, res["compile_s"] = compile_resnet(path, batch, device, target)
    (name, typ), = types.items()
    x = np.random.default_rng(0).standard_normal(typ.shape).astype(np.float32)
    t = time.perf_counter()
    (got,) = exe.run({name: x}).values()
    res["first_run_s"] = time.perf_counter() - t
    res["kernels"], res["launches"] = len(exe.program.kernel_names), len(exe.program.launches)
    say(f"  compiled in {res['compile_s']:.1f} s, first run {res['first_run_s']:.1f} s, "
        f"{res['kernels']} kernels, {res['launches']} launches")
    torch = torch_setup() if model is not None else None
    if torch is not None:
        model = model.cuda()
        xg = torch.from_numpy(x).cuda()
        with torch.no_grad():
            want = model(xg).cpu().numpy().astype(np.float64)
    else:
        import onnxruntime as ort
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        want = sess.run(None, {name: x})[0].astype(np.float64)
    err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    res["max_err_over_max_ref"] = err
    res["top1_agree"] = float(np.mean(got.argmax(-1) == want.argmax(-1)))
    say(f"  lgc against {'torch' if torch else 'onnxruntime'}: max |err| / max |ref| = {err:.2e}, "
        f"top-1 agreement {res['top1_agree']:.2f}")

    feeds = {name: x}
    rows = profile_kernels(exe, feeds, runs=3)
    table = kernel_table(rows, target, top=25)
    with open(os.path.join(out, f"resnet_kernels{tag}.txt"), "w") as f:
        f.write(table + "\n")
    res["kernel_total_ms"] = sum(r["time_s"] for r in rows) * 1e3
    res["top_kernels"] = [{k: r[k] for k in ("kernel", "node", "calls", "time_s", "gflops")} for r in rows[:12]]
    say(table)

    xbuf = cl.Buffer(device.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=x)
    ex = exe.executor

    def lgc_dev():
        ex.run_buffers([xbuf])
        ex.queue.finish()

    fns = {"lgc": lgc_dev, "lgc_host_io": lambda: exe.run(feeds)}
    todo = [("lgc_nofold", dict(fold=False)), ("lgc_4x4_medium_heuristic", dict(previous=True)),
            ("lgc_no_split_k", dict(split=False))] if variants is True else \
        [v for v in (("lgc_no_split_k", dict(split=False)),) if variants == "split"]
    for variant, how in todo:
        try:
            exe2, _, res[f"compile_{variant}_s"] = compile_resnet(path, batch, device, target, **how)
            (got2,) = exe2.run(feeds).values()
            res[f"{variant}_err_over_max_ref"] = float(np.max(np.abs(got2 - want)) / np.max(np.abs(want)))
        except Exception as e:   # noqa: BLE001 (a variant that fails is reported, not fatal)
            res[f"{variant}_error"] = f"{type(e).__name__}: {e}"
            say(f"  {variant} failed: {e}")
            continue

        def run_variant(ex2=exe2.executor):
            ex2.run_buffers([xbuf])
            ex2.queue.finish()
        fns[variant] = run_variant
    if torch is not None:
        def torch_fp32():
            torch.backends.cudnn.allow_tf32 = False
            with torch.no_grad():
                model(xg)
            torch.cuda.synchronize()

        def torch_tf32():
            torch.backends.cudnn.allow_tf32 = True
            with torch.no_grad():
                model(xg)
            torch.cuda.synchronize()
            torch.backends.cudnn.allow_tf32 = False
        fns.update(torch_fp32=torch_fp32, torch_tf32_default=torch_tf32)
    walls = interleaved(fns, runs=runs, lead_in_s=0.05)
    med = {k: float(np.median(v)) for k, v in walls.items()}
    res["median_ms"] = {k: v * 1e3 for k, v in med.items()}
    if torch is not None:
        res["ratio_lgc_over_torch_fp32"] = med["lgc"] / med["torch_fp32"]
        res["ratio_lgc_over_torch_tf32"] = med["lgc"] / med["torch_tf32_default"]
    say("  median ms: " + ", ".join(f"{k} {v * 1e3:.2f}" for k, v in med.items()) +
        (f"; lgc / torch FP32 = {res['ratio_lgc_over_torch_fp32']:.2f}x" if torch is not None else ""))
    if batch == RESULTS.get("_batch", batch):
        RESULTS["_resnet_state"] = {"path": path, "name": name}
    return res


def tune_resnet(device, target, batch: int, out: str, smoke: bool, budget: float) -> dict:
    path = RESULTS.get("_resnet_state", {}).get("path")
    if not path:
        raise RuntimeError("the resnet section did not produce a model")
    from lgc.runtime import tuner
    exe, _, _ = compile_resnet(path, batch, device, target)
    t = time.perf_counter()
    found = tuner.tune(exe.graph, device, budget=budget)   # what `lgc tune` runs
    res = {"budget_s": budget, "seconds": time.perf_counter() - t, "ops_tuned": len(found),
           "found": {sig: {"default_ms": base * 1e3, "best_ms": s * 1e3, "gain": base / s if s else 0.0,
                           "best": asdict(p) if hasattr(p, "__dataclass_fields__") else str(p)}
                     for sig, (p, s, base) in found.items()}}
    res["after"] = resnet(device, target, batch, out, smoke, tag="_tuned", variants=False)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for results")
    ap.add_argument("--sections", default="sgemm,sgemm_sweep,resnet,tune", help="comma-separated: sgemm (lgc's "
                    "untuned default), sgemm_sweep (tuned on the exact shape), resnet, resnet1 (batch 1, "
                    "with and without split-K), tune")
    ap.add_argument("--n", type=int, default=4096, help="SGEMM size")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tune-budget", type=float, default=90.0)
    ap.add_argument("--smoke", action="store_true", help="small sizes, GPU kernels forced on any device")
    ap.add_argument("--variants", type=int, default=1, help="resnet: also time LGC_GPU_CONV_FOLD=0 and "
                    "the previous wide heuristic (0: lgc's default alone)")
    ap.add_argument("--deadline", type=float, default=1e9,
                    help="seconds: the tune budget shrinks so that the run ends by then")
    args = ap.parse_args()
    t_start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    os.environ.setdefault("LGC_TUNE_DB", os.path.join(args.out, "tuning.json"))
    from lgc.runtime import select_device
    device = select_device(None)
    target = gpu_target(device, args.smoke)
    if args.smoke:
        args.n, args.batch, args.tune_budget = min(args.n, 256), min(args.batch, 1), min(args.tune_budget, 5)
        global TILES
        TILES = TILES[:2]
    section("info", args.out, info, device, target)
    say(json.dumps(RESULTS["info"], default=str))
    todo = args.sections.split(",")
    RESULTS["_batch"] = args.batch
    if "sgemm" in todo:
        section("sgemm", args.out, sgemm, device, target, args.n, args.out)
    if "sgemm_sweep" in todo:
        section("sgemm_sweep", args.out, sgemm_sweep, device, target, args.n, args.out)
    if "resnet" in todo:
        section("resnet", args.out, resnet, device, target, args.batch, args.out, args.smoke, "",
                bool(args.variants))
    if "resnet1" in todo:   # batch 1, where split-K matters most: with and without it
        section("resnet1", args.out, resnet, device, target, 1, args.out, args.smoke, "_b1", "split")
    # what the tune section needs besides its budget: a compile, and the timings after it
    budget = min(args.tune_budget, args.deadline - (time.perf_counter() - t_start) - 70)
    if "tune" in todo and not args.smoke and budget >= 15:
        section("tune", args.out, tune_resnet, device, target, args.batch, args.out, args.smoke, budget)
    RESULTS.pop("_resnet_state", None)
    RESULTS.pop("_batch", None)
    save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
