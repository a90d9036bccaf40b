"""`lgc generate`: autoregressive generation with an ONNX decoder (lgc.generation), the KV
cache resident on the device. `lgc.tools.cli.build_parser` calls `add_parsers`."""
from __future__ import annotations

import json
import os

from ..errors import InputError
from .common import say

DESCRIPTION = """Generate tokens with a decoder-only ONNX model exported with past_key_values
(transformers / Optimum: input_ids, attention_mask, position_ids, past_key_values.*): the
prompt in one prefill, then one token at a time with the KV cache kept on the device and
written in place (docs/GENERATE.md). Samples (temperature, top-k, top-p, --seed) unless
--greedy."""


def add_parsers(sub) -> None:
    """Add `lgc generate`."""
    p = sub.add_parser("generate", help="generate tokens with a decoder ONNX model (KV cache on the device)",
                       description=DESCRIPTION)
    p.add_argument("model", help="a decoder .onnx with past_key_values inputs and present outputs")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt-ids", help="the prompt as token ids, e.g. 1,2,3")
    what.add_argument("--prompt", help="the prompt as text (needs a tokenizer.json: --tokenizer, or "
                                       "one beside the model)")
    p.add_argument("--tokenizer", help="a Hugging Face tokenizer.json (default: the model's folder's)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate (default 32)")
    p.add_argument("--max-seq-len", type=int, default=None,
                   help="positions the cache holds (default: prompt + max new tokens)")
    p.add_argument("--greedy", action="store_true", help="take the most likely token (no sampling)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (default 0: all)")
    p.add_argument("--top-p", type=float, default=1.0,
                   help="sample among the most likely tokens holding this much probability (default 1.0: all)")
    p.add_argument("--seed", type=int, default=None, help="seed of the sampler (reproducible tokens)")
    p.add_argument("--eos-id", type=int, default=None, help="stop after this token id")
    p.add_argument("--json", metavar="OUT.json",
                   help="write {tokens, prefill_ms, tokens_per_s, decode_ms, compile_ms, ...} here")
    p.add_argument("--device", help="OpenCL device (as LGC_DEVICE: cpu, gpu, an index from "
                                    "`lgc devices`, or part of a name)")
    pipe = p.add_argument_group("across workers (Ray; docs/CLUSTER.md, \"Decoding across workers\")")
    pipe.add_argument("--workers", help="split the layers over these workers by memory and decode "
                                        "as a pipeline of Ray actors: KIND:MEMORY[:PEAK_FLOPS[:BANDWIDTH]]"
                                        "[*COUNT], e.g. cpu:2GB,cpu:2GB (MEMORY is the limit the layers' "
                                        "weights + KV cache must fit; as `lgc plan --workers`)")
    pipe.add_argument("--sequences", type=int, default=1,
                      help="with --workers: run this many copies of the prompt at once, each with its "
                           "own KV cache, so that every stage has work (default 1)")
    pipe.add_argument("--stages", type=int, help="with --workers: pipeline stages (default: the fewest "
                                                 "workers whose memory holds the model)")
    pipe.add_argument("--bandwidth", default="1Gbit", help="with --workers: link bandwidth between "
                                                          "workers for the prediction (default 1Gbit)")
    pipe.add_argument("--hop-latency", default="0", help="with --workers: fixed time per hop for the "
                                                         "prediction, e.g. 0.5ms (default 0)")
    pipe.add_argument("--ray-address", help="with --workers: join this Ray cluster (HOST:PORT or auto) "
                                            "instead of starting a local Ray")
    p.set_defaults(fn=cmd_generate)


def _prompt_ids(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise InputError(f"--prompt-ids expects token ids separated by commas, got {text!r}") from None
    if not ids:
        raise InputError("--prompt-ids is empty")
    return ids


def cmd_generate(args) -> int:
    from ..generation import OnnxDecoder, Sampling, stream
    from ..generation.generate import Generation
    from ..generation.text import TextCodec, tokenizer_beside
    if not os.path.exists(args.model):
        raise InputError(f"model file {args.model!r} does not exist")
    if args.device:
        os.environ["LGC_DEVICE"] = args.device       # the device lgc.numpy's runtime opens
    codec = None
    if args.prompt is not None or args.tokenizer:
        path = args.tokenizer or tokenizer_beside(args.model)
        if path is None:
            raise InputError("--prompt needs a tokenizer.json: give --tokenizer, or put one "
                             "beside the model")
        codec = TextCodec(path)
    ids = codec.encode(args.prompt) if args.prompt is not None else _prompt_ids(args.prompt_ids)
    sampling = Sampling(args.greedy, args.temperature, args.top_k, args.top_p, args.seed)
    if args.workers:
        return _generate_across_workers(args, ids, sampling, codec)
    say(f"lgc generate: compiling {args.model} ...")
    decoder = OnnxDecoder(args.model, args.max_seq_len or len(ids) + args.max_new_tokens)
    result = Generation()
    for _ in stream(decoder, ids, args.max_new_tokens, sampling, args.eos_id, result):
        pass
    doc = _show(result, codec)
    say(f"lgc generate: {len(result.tokens)} tokens after a prompt of {len(ids)}; prefill "
        f"{result.prefill_ms:.1f} ms, {result.tokens_per_s:.1f} tokens/s after it "
        f"(compile and warm-up {result.compile_ms / 1e3:.1f} s)")
    _write(args.json, doc)
    return 0


def _show(result, codec) -> dict:
    """Print a Generation's tokens (and text, with a tokenizer); its JSON document."""
    print(",".join(str(t) for t in result.tokens))
    doc = result.as_json()
    if codec is not None:
        doc["text"] = codec.decode(result.tokens)
        print(doc["text"])
    return doc


def _write(path, doc) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)


def _generate_across_workers(args, ids, sampling, codec) -> int:
    """--workers: the layers placed by memory, decoded by Ray actors; prints the plan and
    the predicted against the measured per-token latency and tokens/s."""
    from ..cluster.connect import join, require_ray
    from ..distributed.cost import Link
    from ..distributed.decode import decode_table
    from ..distributed.specs import parse_bandwidth, parse_duration, parse_workers
    workers = parse_workers(args.workers)
    link = Link(parse_bandwidth(args.bandwidth, "--bandwidth"), parse_duration(args.hop_latency, "--hop-latency"))
    if args.sequences < 1:
        raise InputError(f"--sequences must be at least 1, got {args.sequences}")
    ray = require_ray()
    started = False
    if args.ray_address:
        join(args.ray_address)
    elif not ray.is_initialized():          # a local Ray for this command (one already up is used)
        ray.init(num_cpus=max(2, len(workers)), include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
        started = True
    from ..cluster.decode import DecodePipeline     # imports ray: only once it is wanted
    try:
        say(f"lgc generate: placing {args.model} on {len(workers)} worker(s) ...")
        pipe = DecodePipeline(args.model, workers, args.max_seq_len or len(ids) + args.max_new_tokens,
                              args.sequences, link, args.stages)
        print(decode_table(pipe.plan))
        say("lgc generate: compiling the stages ...")
        run = pipe.generate([ids] * args.sequences, args.max_new_tokens, sampling, args.eos_id)
        pipe.shutdown()
    finally:
        if started:
            ray.shutdown()
    doc = _show(run.generations[0], codec)
    measured = {"latency_ms": run.latency_ms, "tokens_per_s": run.tokens_per_s, "sequences": args.sequences}
    doc["pipeline"] = {**pipe.plan.as_json(), "measured": measured}
    print(f"per-token latency: predicted {pipe.plan.latency_s * 1e3:.3f} ms (one sequence alone), "
          f"measured {run.latency_ms:.3f} ms (mean, {args.sequences} in flight); tokens/s with "
          f"{args.sequences} sequence(s): predicted {pipe.plan.tokens_per_s:.1f}, measured "
          f"{run.tokens_per_s:.1f}")
    _write(args.json, doc)
    return 0
