"""The `lgc` command. Every failure prints one line `lgc: error: ...` and exits non-zero;
`--debug` shows the traceback instead."""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import lgc
from lgc.api import Model
from lgc.backends import memory
from lgc.backends.program import lower
from lgc.backends.target import by_name
from lgc.backends.tuning import db_path
from lgc.compiler import Settings, backend_for
from lgc.errors import ArtifactError, InputError, LgcError
from lgc.feeds import random_inputs
from lgc.frontend.onnx.importer import default_input_types, import_graph, load_model
from lgc.ir.stats import graph_stats
from lgc.passes import optimize
from lgc.passes.manager import report_table
from lgc.runtime import Executable, select_device
from lgc.runtime.artifact import program_from, read_artifact, signing
from lgc.runtime.artifact_sign import generate as generate_key, key_id, private_key
from lgc.runtime.device import DeviceError, list_devices
from lgc.tools.bench import add_parser as add_bench_parser  # lgc bench
from lgc.tools.cluster_cli import add_parsers as add_cluster_parsers  # lgc deploy, lgc cluster
from lgc.tools.common import add_device_flags, parse_shape_args, say
from lgc.tools.generate_cli import add_parsers as add_generate_parsers  # lgc generate
from lgc.tools.plan_cli import add_parsers as add_plan_parsers  # lgc plan
from lgc.tools.search_cli import add_search_flags, check_search_args, run_search  # compile --search
from lgc.tools.serve_cli import add_parsers as add_serve_parsers  # lgc serve

DESCRIPTION = """lgc compiles ONNX models (and traced Python) to OpenCL and runs them on any
OpenCL 1.2+ device: AMD GCN cards that ROCm dropped, other GPUs, or PoCL on the CPU."""


# ---- commands -------------------------------------------------------------------------
# What one command alone uses (compression, stage compilation, tuning, the fusion and ISA
# reports, the demo) is imported when that command runs, not at every `lgc` start.

def cmd_compile(args) -> int:
    t = time.perf_counter()
    key = private_key(args.sign) if args.sign else None   # a bad key fails before compiling
    if args.search:
        check_search_args(args)
    if args.plan:
        with signing(key):
            return _compile_stages(args, t)
    target = args.target or ("gfx803" if args.isa_report else None)   # the report is for gfx803
    device = select_device(args.device).retargeted(by_name(target) if target else None)
    model = lgc.Model(args.model, parse_shape_args(args.input_shape), device=device,
                      opt_level=args.opt_level)
    types = model.default_types()
    for name, (_, decl) in model.inputs.items():
        free = [str(d or "?") for d in decl or [] if not (isinstance(d, int) and d > 0)]
        if free:
            say(f"note: input {name!r} has symbolic dimension(s) {', '.join(free)}, compiled as 1 "
                f"(choose with --input-shape {name}=...)")
    say(f"compiling {args.model} for " + ", ".join(f"{k}: {v}" for k, v in types.items()))
    if args.tune:
        _tune(model.model, types, args)
    copts = None if args.search else _compress_options(args)
    crep = search_doc = None
    if args.search:
        graph = optimize(import_graph(model.model, types), args.opt_level)
        exe, search_doc = run_search(args, graph, types, device)
    elif copts.active:
        exe, crep = _compress(model, types, copts, args, device)
    else:
        exe = model.executable(types)
    if args.explain:
        from lgc.backends.fusion import plan   # (see the note above cmd_compile)
        backend = backend_for(device.target)
        settings = Settings.from_env()
        lowered = backend.rewrite(exe.graph, settings)   # the graph the backend fuses
        print(plan(lowered, backend.target).explain() if settings.fuse else "fusion is off (LGC_FUSE=0)")
        if not backend.target.is_gpu:
            from lgc.backends.cpu_dwpw import explain as explain_dwpw
            for line in explain_dwpw(exe.graph, settings):
                print(line)
    if args.report:
        records = []
        optimize(import_graph(model.model, types), args.opt_level, records)
        print(report_table(records))
    if crep is not None:        # every compression run reports what it cost and saved
        print(crep.table())
    if isinstance(args.report, str):
        import json
        data = crep.to_dict() if crep is not None else {}
        data["passes"] = [vars(r) for r in records]
        if search_doc is not None:
            data["search"] = search_doc
        with open(args.report, "w") as f:
            json.dump(data, f, indent=2)
        print(f"wrote {args.report}")
    out = args.output or os.path.splitext(args.model)[0] + ".lgc"
    exe.save(out, sign_key=key)
    n_kernels = len(exe.program.kernel_names)
    signed = f", signed by key {key_id(key.public_key())}" if key else ""
    print(f"wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB, {n_kernels} kernels, "
          f"{len(exe.program.launches)} launches{signed}, {time.perf_counter() - t:.1f} s)")
    if args.isa_report:
        from lgc.backends import isa   # (see the note above cmd_compile)
        print(isa.report(isa.program_resources(exe.program), exe.program))
    return 0


def _compile_stages(args, t0) -> int:
    """`lgc compile --plan`: one self-contained artifact per pipeline stage of a plan made by
    `lgc plan`, plus the stages.json that `lgc deploy` reads."""
    from lgc.distributed.shard import compile_from_plan   # (see the note above cmd_compile)
    if args.search or _compress_options(args).active or args.tune or args.isa_report or args.explain:
        raise InputError("--plan compiles the planned float model as it is: it does not combine "
                         "with compression, --search, --tune, --explain or --isa-report")
    out_dir = args.output or os.path.splitext(args.model)[0] + ".stages"
    paths = compile_from_plan(args.model, args.plan, out_dir, device=args.device, progress=say)
    print(f"wrote {len(paths)} stage artifacts to {out_dir} ({time.perf_counter() - t0:.1f} s); "
          f"deploy with: lgc deploy {out_dir} --address ...")
    return 0


def _quantize_mode(mode: str) -> str:
    """--quantize's value: a fixed mode, or int4-weights with its options (checked here)."""
    from lgc.compress.int4 import parse_int4   # (see the note above cmd_compile)
    if mode in ("int8", "int8-weights", "dynamic"):
        return mode
    try:
        if parse_int4(mode) is not None:
            return mode
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    raise argparse.ArgumentTypeError(f"{mode!r}: choose from int8, int8-weights, dynamic, "
                                     "int4-weights[:gN][:sym|:asym]")


def _compress_options(args):
    from lgc.compress.pipeline import CompressOptions   # (see the note above cmd_compile)
    if args.max_drift is not None and not args.max_drift >= 0:
        raise InputError(f"--max-drift {args.max_drift}: must be a number >= 0")
    keep = tuple(k.strip() for k in (args.keep_float or "").split(",") if k.strip())
    opts = CompressOptions(quantize=args.quantize, calibrate=args.calibrate, observer=args.observer,
                           keep_float=keep, max_drift=args.max_drift, precision=args.precision,
                           prune=args.prune, decompose=args.decompose)
    if not opts.active and (keep or args.calibrate or args.max_drift is not None):
        raise InputError("--calibrate, --keep-float and --max-drift need a compression pass "
                         "(--quantize, --precision, --prune or --decompose)")
    if keep and not opts.quantize:
        raise InputError("--keep-float applies to --quantize")
    return opts


def _compress(model, types, opts, args, device):
    """The compressed Executable and its compression report."""
    from lgc.compress.pipeline import compress   # (see the note above cmd_compile)
    graph = optimize(import_graph(model.model, types), args.opt_level)
    small, rep = compress(graph, opts, device, progress=say, report=True)
    return Executable.from_graph(small, device, args.opt_level), rep


def _tune(onnx_model, types, args) -> None:
    from lgc.runtime.tuner import tune   # (see the note above cmd_compile)
    results = tune(optimize(import_graph(onnx_model, types), args.opt_level), args.device, args.budget)
    for sig, (params, t, base) in results.items():
        gain = f"{base / t:.2f}x the default" if t and base < float("inf") else ""
        print(f"{sig:<48} {t * 1e3:9.3f} ms  {gain}  {params}")


def cmd_tune(args) -> int:
    model = lgc.Model(args.model, parse_shape_args(args.input_shape), device=args.device,
                      opt_level=args.opt_level)
    _tune(model.model, model.default_types(), args)
    print(f"tuning database: {db_path()}")
    return 0


def _load_any(path, args):
    trusted = getattr(args, "trusted_keys", None)
    if path.endswith(".lgc"):
        return lgc.load(path, device=args.device, trusted_keys=trusted)
    if trusted:
        raise InputError("--trusted-keys checks the signature of a .lgc artifact; "
                         f"{os.path.basename(path)} is not one")
    return lgc.Model(path, parse_shape_args(getattr(args, "input_shape", None)), device=args.device)


def _input_types(runner):
    return runner.default_types() if isinstance(runner, Model) else runner.input_types()


def _read_inputs(items) -> dict:
    feeds = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise InputError(f"--input expects NAME=FILE.npy, got {item!r}")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"--input {name}: cannot read {path!r} as .npy ({e})") from None
    return feeds


def cmd_run(args) -> int:
    runner = _load_any(args.model, args)
    feeds = _read_inputs(args.input)
    if args.random:
        feeds = {**random_inputs(_input_types(runner), args.seed), **feeds}
    outs = runner.run(feeds)
    for name, a in outs.items():
        stats = f"min {a.min():.6g} max {a.max():.6g} mean {a.mean():.6g}" if a.size and a.dtype.kind in "fiu" else ""
        print(f"{name}: {a.dtype}{list(a.shape)} {stats}")
    if args.output:
        np.savez(args.output, **outs)
        print(f"wrote {args.output}")
    return 0


def cmd_inspect(args) -> int:
    if args.model.endswith(".lgc"):
        manifest, members = read_artifact(args.model)
        where = os.path.basename(args.model)
        program_from(manifest, members, where)            # the tables are checked as by lgc.load
        print(bytes(members["ir.txt"]).decode(errors="replace"))
        try:
            _print_artifact_stats(manifest)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ArtifactError(f"{where}: manifest field 'stats' or 'target' is malformed") from None
        return 0
    m = load_model(args.model)
    types = default_input_types(m, parse_shape_args(args.input_shape))
    graph = optimize(import_graph(m, types), 2 if args.memory else 1)
    if not args.no_ir:
        print(graph)
    print(graph_stats(graph).table())
    if args.memory:
        program = lower(graph, share_buffers=False)
        print(memory.plan(program.buffers, program.launches).summary())
    return 0


def cmd_keygen(args) -> int:
    pub, kid = generate_key(args.key)
    print(f"wrote private key {args.key} (keep it secret) and public key {pub}; key id {kid}")
    print(f"sign with: lgc compile MODEL.onnx --sign {args.key}; "
          f"verify with: lgc run MODEL.lgc --trusted-keys {pub}")
    return 0


def _print_artifact_stats(manifest: dict) -> None:
    st = manifest.get("stats", {})
    print(f"format version {manifest['format_version']}, built by lgc {manifest['lgc_version']} "
          f"for {manifest['target']['device']}")
    print(f"nodes: {st.get('nodes')}\nparameters: {st.get('params', 0):,} "
          f"({st.get('param_bytes', 0) / 2**20:.1f} MiB)\nFLOPs: {st.get('flops', 0):,}")
    print("ops:")
    for op, n in sorted(st.get("ops", {}).items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {op:<20} {n}")


def cmd_devices(args) -> int:
    devs = list_devices()
    if not devs:
        print("no OpenCL devices found (install a GPU driver, or `apt-get install pocl-opencl-icd`)")
        return 1
    try:
        default = select_device(None).index
    except DeviceError:
        default = None
    for d in devs:
        mark = "*" if d.index == default else " "
        state = "ok" if d.usable else f"unusable: {d.problem}"
        print(f"{mark} {d.index}: {d.describe()} [{state}]")
    print("* = default (set LGC_DEVICE or --device to choose)")
    return 0


def cmd_demo(args) -> int:
    from lgc.tools.demo import run_demo   # (see the note above cmd_compile)
    return run_demo(args)


# ---- entry point ----------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lgc", description=DESCRIPTION)
    ap.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    ap.add_argument("--version", action="store_true", help="print the version and exit")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("compile", help="compile an ONNX model to a .lgc artifact",
                       description="Compile an ONNX model to a self-contained .lgc artifact.")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("-o", "--output", help="artifact path (default: MODEL.lgc)")
    p.add_argument("-O", dest="opt_level", type=int, default=2, choices=range(4), help="optimization level")
    p.add_argument("--report", nargs="?", const=True, default=False, metavar="FILE",
                   help="print what each optimization pass changed: nodes, parameter bytes, FLOPs "
                        "(a compression run always prints its table: bytes, latency, accuracy "
                        "drift per pass). With FILE (write --report=FILE, or put it after the "
                        "model) also save both as JSON")
    q = p.add_argument_group("compression (docs/COMPRESSION.md)")
    q.add_argument("--quantize", type=_quantize_mode, metavar="MODE",
                   help="int8: weights per-channel int8, activations per-tensor uint8 from "
                        "calibration; int8-weights: weights only; dynamic: matmul activations "
                        "quantized per call; int4-weights[:gN][:sym|:asym]: matmul weights 4-bit, "
                        "a scale (and zero point) per block of N along K (default g128, asym)")
    q.add_argument("--calibrate", metavar="DATA",
                   help="calibration and report data: a .npz (one array per input), a folder of "
                        ".npy files, or 'random' (accuracy then unknown; the default)")
    q.add_argument("--observer", choices=("minmax", "percentile", "entropy"), default="minmax",
                   help="activation range for --quantize int8 (default minmax)")
    q.add_argument("--keep-float", metavar="NAME,...",
                   help="layers (node names) left in float32")
    q.add_argument("--max-drift", type=float, metavar="X",
                   help="accuracy budget: return the most sensitive layers to float until max "
                        "|quantized - float| / max |float| on the data is <= X")
    q.add_argument("--precision", choices=("fp16", "fp16-weights"),
                   help="store weights and activations (fp16) or weights only as float16; "
                        "arithmetic stays float32")
    q.add_argument("--prune", metavar="[channels|magnitude:]X",
                   help="channels:X removes fraction X of the output channels of each prunable "
                        "layer (default); magnitude:X zeroes fraction X of each layer's weights")
    q.add_argument("--decompose", metavar="[compression|energy|rank:]X",
                   help="low-rank factors of matmul/conv weights: compression:X keeps X of each "
                        "layer's parameters (default), energy:X that fraction of the squared "
                        "singular values, rank:R a fixed rank (or fraction of it)")
    p.add_argument("--target", help="generate kernels for this target (gfx803, cpu) instead of the device's")
    p.add_argument("--isa-report", action="store_true",
                   help="compile each kernel for gfx803 with LLVM (clang-16, libclc-16) and print registers, "
                        "LDS, scratch and waves per SIMD (implies --target gfx803 unless given)")
    p.add_argument("--explain", action="store_true",
                   help="print the fusion groups: which ops each kernel computes, why it stops there; "
                        "on CPU targets also which depthwise convs fuse with the 1x1 conv after them "
                        "(LGC_CPU_DWPW) and why not")
    p.add_argument("--tune", action="store_true", help="tune the matmul/conv kernels on the device first")
    p.add_argument("--budget", type=float, default=60.0,
                   help="seconds for --tune or --search (default 60)")
    add_search_flags(p)
    p.add_argument("--plan", metavar="PLAN.json",
                   help="compile one artifact per pipeline stage of a plan from `lgc plan` into the "
                        "folder -o (default MODEL.stages/), with stages.json for `lgc deploy`")
    p.add_argument("--sign", metavar="KEY.pem",
                   help="sign the artifact(s) with this Ed25519 private key (`lgc keygen`); "
                        "`lgc run/deploy --trusted-keys` and lgc.load(trusted_keys=) check it")
    add_device_flags(p)
    p.set_defaults(fn=cmd_compile)

    p = sub.add_parser("tune", help="time matmul/conv kernel parameters on the device and store the best",
                       description="Time candidate parameters of the matmul and conv kernels of a model on "
                                   "the device within a time budget; winners go to the tuning database "
                                   "($LGC_TUNE_DB, else ~/.cache/lgc/tuning.json), which compiling uses.")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--budget", type=float, default=60.0, help="seconds to spend (default 60)")
    p.add_argument("-O", dest="opt_level", type=int, default=2, choices=range(4), help="optimization level")
    add_device_flags(p)
    p.set_defaults(fn=cmd_tune)

    p = sub.add_parser("run", help="run a .lgc artifact or an ONNX model",
                       description="Run a model on the OpenCL device and print or save its outputs.")
    p.add_argument("model", help="a .lgc or .onnx file")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input array (repeatable)")
    p.add_argument("--random", action="store_true", help="random values for inputs not given")
    p.add_argument("--seed", type=int, default=0, help="seed for --random")
    p.add_argument("--output", metavar="FILE.npz", help="save the outputs")
    p.add_argument("--trusted-keys", action="append", metavar="PUB.pem",
                   help="run a .lgc only if signed by one of the Ed25519 public keys in this PEM "
                        "file (repeatable); unsigned or otherwise signed artifacts are refused")
    add_device_flags(p)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("inspect", help="print the IR, op histogram, parameters and FLOPs",
                       description="Print a model's IR text, op histogram, parameter count and bytes, and FLOPs.")
    p.add_argument("model", help="a .onnx or .lgc file")
    p.add_argument("--no-ir", action="store_true", help="only the statistics")
    p.add_argument("--memory", action="store_true",
                   help="also plan device memory (as compiled at -O2): peak activation bytes "
                        "with buffer reuse, the lower bound and their ratio")
    add_device_flags(p, device=None)
    p.set_defaults(fn=cmd_inspect)

    p = sub.add_parser("keygen", help="make an Ed25519 key pair for signing artifacts",
                       description="Write a new Ed25519 private key (PEM, mode 0600) to KEY.pem and its "
                                   "public key to KEY.pub.pem, for `lgc compile --sign` and "
                                   "`--trusted-keys` (docs/ARTIFACTS.md). Never overwrites.")
    p.add_argument("key", metavar="KEY.pem", help="where to write the private key")
    p.set_defaults(fn=cmd_keygen)

    p = sub.add_parser("devices", help="list OpenCL platforms and devices",
                       description="List OpenCL devices, whether each can build lgc's kernels, and the default.")
    p.set_defaults(fn=cmd_devices)

    p = sub.add_parser("demo", help="compile and run ResNet-50 from the onnx test data",
                       description="Compile the ResNet-50 shipped in onnx's test data with seeded random weights "
                                   "(its own are all 0.02), run it, check it against onnxruntime (else "
                                   "lgc's NumPy op references), and print latency and a per-kernel table.")
    p.add_argument("--model", default="resnet50",
                   help="which light model: resnet50, vgg19, densenet121, inception_v1, ... (default resnet50)")
    p.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up")
    p.add_argument("--top", type=int, default=12, help="rows of the per-kernel table")
    add_device_flags(p, shapes=False)
    p.set_defaults(fn=cmd_demo)

    add_bench_parser(sub)
    add_plan_parsers(sub)
    add_cluster_parsers(sub)
    add_serve_parsers(sub)
    add_generate_parsers(sub)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.version:
        print(f"lgc {lgc.__version__}")
        return 0
    if not args.command:
        ap.print_help()
        return 2
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("lgc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except Exception as e:  # the CLI's contract: one line, unless --debug
        if args.debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        kind = "" if isinstance(e, LgcError) else f"{type(e).__name__}: "
        print(f"lgc: error: {kind}{msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
