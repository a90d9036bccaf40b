"""`lgc serve`: lgc.serve's HTTP server in front of a Backend chosen here, the embedded model
(lgc.serve.backend.LocalBackend) or, with --address, a Ray deployment (lgc.cluster), so that
lgc.serve never imports lgc.cluster. `lgc.tools.cli.build_parser` calls `add_parsers`."""
from __future__ import annotations

import os

from ..errors import InputError, LgcError
from .common import DEVICES, add_device_flags, say

DESCRIPTION = """Serve a compiled model over the Open Inference Protocol (KServe v2 REST API:
/v2/health/live, /v2/health/ready, /v2, /v2/models/NAME[/ready|/config|/infer], JSON and binary
tensors, as tritonclient.http speaks it) with dynamic batching, a bounded queue (503 when
full), per-request timeouts (504) and Prometheus metrics at /metrics. Embedded by default (the
model runs in this process); with --address, in front of a Ray deployment (lgc deploy)."""


# flag, type, default, least value, help
CLIENT_LIMITS = [
    ("--body-memory-mb", float, 512.0, 1e-3,
     "MiB of request bodies held at once (received, not yet decoded); a body that does not fit "
     "gets 503 with Retry-After; at least --max-body-mb"),
    ("--body-timeout-s", float, 30.0, 1e-3,
     "a request body must arrive whole within this many seconds of its headers; 408 and the "
     "connection closed after"),
    ("--parse-slots", int, 2, 1,
     "request bodies over 256 KiB decoded at once, and large answers encoded; decoding JSON "
     "takes up to ~14x the body in memory"),
    ("--header-timeout-s", float, 10.0, 1e-3,
     "the request line and headers must arrive within this many seconds of connecting or of "
     "the previous answer; else the connection is closed (408 if part came)"),
    ("--max-header-kb", float, 64.0, 1, "largest request line + headers in KiB; 431 and closed above"),
    ("--max-headers", int, 100, 1, "most request headers; 431 above"),
    ("--keep-alive-s", float, 5.0, 1e-3, "an idle keep-alive connection is closed after this many seconds"),
    ("--limit-concurrency", int, 1000, 1,
     "open connections + requests in progress (each connection holds a file descriptor); a "
     "request arriving beyond gets 503"),
]


def add_parsers(sub) -> None:
    """Add `lgc serve`."""
    p = sub.add_parser("serve", help="serve a model over the KServe v2 / Open Inference Protocol REST API",
                       description=DESCRIPTION)
    p.add_argument("model", help="a .lgc artifact (checksums verified before serving) or a .onnx model")
    p.add_argument("--name", help="model name in the URLs (default: the file name without extension)")
    p.add_argument("--model-version", default="1", help="version reported in metadata (default 1)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; use 0.0.0.0 to accept other machines, "
                        "with a --token)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--token", default=None,
                   help="bearer token required on every route but the health checks (default: "
                        "$LGC_SERVE_TOKEN; with neither, no authentication, said at start-up; "
                        "an empty token is refused)")
    p.add_argument("--max-batch-size", type=int, default=8,
                   help="rows per backend call; 0 disables batching (default 8)")
    p.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="longest a request waits for others to batch with (default 0: batches "
                        "form from what queued while the model was busy)")
    p.add_argument("--queue-size", type=int, default=64,
                   help="requests waiting per model before answering 503 (default 64)")
    p.add_argument("--timeout-s", type=float, default=30.0,
                   help="per-request limit from arrival to answer; 504 after (default 30)")
    p.add_argument("--max-body-mb", type=float, default=64.0,
                   help="largest request body in MiB; 413 above (default 64)")
    limits = p.add_argument_group("limits against slow or greedy clients (docs/SERVING.md)")
    for flag, kind, default, _, text in CLIENT_LIMITS:
        limits.add_argument(flag, type=kind, default=default, help=f"{text} (default {default:g})")
    p.add_argument("--address", default=None,
                   help="serve in front of the Ray deployment at this address (auto or HOST:PORT) "
                        "instead of running the model in this process")
    p.add_argument("--trusted-keys", action="append", metavar="PUB.pem",
                   help="serve only a .lgc signed by one of the Ed25519 public keys in this PEM file "
                        "(repeatable; `lgc compile --sign`, docs/ARTIFACTS.md)")
    gen = p.add_argument_group("generation (a decoder ONNX with past_key_values; docs/GENERATE.md)")
    gen.add_argument("--max-seq-len", type=int, default=1024,
                     help="positions of the KV cache: prompt + generated tokens (default 1024)")
    gen.add_argument("--tokenizer", help="a tokenizer.json for text_input/text_output "
                                         "(default: the model's folder's, if any)")
    gen.add_argument("--eos-id", type=int, default=None, help="end generations at this token id")
    p.add_argument("--no-warmup", action="store_true",
                   help="do not compile every batch size before accepting requests (ONNX source)")
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    p.add_argument("--http", choices=["auto", "h11", "httptools"], default="auto",
                   help="uvicorn's HTTP parser (default auto: httptools when installed, else h11)")
    add_device_flags(p, device=f"OpenCL device for the embedded model: {DEVICES}", shapes=False)
    p.set_defaults(fn=cmd_serve)


def _check_args(args) -> None:
    if not os.path.exists(args.model):
        raise InputError(f"model file {args.model!r} does not exist")
    for flag, value, low in (("--port", args.port, 0), ("--max-batch-size", args.max_batch_size, 0),
                             ("--queue-size", args.queue_size, 1), ("--max-wait-ms", args.max_wait_ms, 0),
                             ("--timeout-s", args.timeout_s, 1e-3), ("--max-body-mb", args.max_body_mb, 1e-3),
                             ("--max-seq-len", args.max_seq_len, 2),
                             *((flag, getattr(args, flag[2:].replace("-", "_")), low)
                               for flag, _, _, low, _ in CLIENT_LIMITS)):
        if value < low:
            raise InputError(f"{flag} must be at least {low:g}, got {value:g}")
    if args.port > 65535:
        raise InputError(f"--port must be at most 65535, got {args.port}")
    if args.body_memory_mb < args.max_body_mb:
        raise InputError(f"--body-memory-mb ({args.body_memory_mb:g}) must be at least --max-body-mb "
                         f"({args.max_body_mb:g}), or no body of the largest size could be read")


def _token(args) -> str | None:
    """--token, else $LGC_SERVE_TOKEN, else None (no authentication); empty is a mistake."""
    if args.token is not None:
        if not args.token:
            raise InputError("--token is empty: give a token, or leave --token out to serve "
                             "without authentication")
        return args.token
    token = os.environ.get("LGC_SERVE_TOKEN")
    if token is not None and not token:
        raise InputError("$LGC_SERVE_TOKEN is set but empty: give a token, or unset it to serve "
                         "without authentication")
    return token


def no_auth_warning(host: str) -> str:
    where = "" if host in ("127.0.0.1", "localhost", "::1") else f" and listening on {host}"
    return (f"lgc serve: warning: NO AUTHENTICATION (no --token, no $LGC_SERVE_TOKEN){where}: "
            f"anyone who can reach this port can run the model")


def _raise_fd_limit() -> None:
    """Each connection is a file descriptor: raise the soft limit to the hard one, so that
    clients are refused by --limit-concurrency rather than reset by the kernel."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 16
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):   # not POSIX, or not allowed: keep the limit
        pass


def make_backend(args):
    """The Backend `args` describe: embedded (LocalBackend) or Ray (lgc.cluster)."""
    if args.address:
        try:
            from ..cluster.deploy import connect
        except ImportError as e:
            raise LgcError(f"--address needs lgc.cluster's Ray backend "
                           f"(lgc.cluster.deploy.connect), which is not available: {e}") from None
        return connect(args.address, args.model, name=args.name, max_batch_size=args.max_batch_size,
                       trusted_keys=args.trusted_keys, progress=lambda msg: say(f"lgc serve: {msg}"))
    from ..serve.backend import LocalBackend   # on use: every `lgc` start imports this module
    from ..generation.text import tokenizer_beside
    if args.device:
        os.environ["LGC_DEVICE"] = args.device   # generation runs on lgc.numpy's device
    backend = LocalBackend(args.model, name=args.name, version=args.model_version,
                           max_batch_size=args.max_batch_size, device=args.device,
                           trusted_keys=args.trusted_keys, max_seq_len=args.max_seq_len,
                           tokenizer=args.tokenizer or tokenizer_beside(args.model),
                           eos_token_id=args.eos_id)
    if not args.no_warmup and backend.max_batch_size > 0:
        say(f"lgc serve: compiling {backend.name!r} for batch sizes up to {backend.max_batch_size} ...")
        backend.warmup()
    return backend


def cmd_serve(args) -> int:
    from uvicorn import Server

    from ..serve.app import ServeConfig, make_app   # Starlette, only for `lgc serve`
    from ..serve.connection import HttpLimits
    from ..serve.server import log_config, uvicorn_config
    token = _token(args)
    _check_args(args)
    backend = make_backend(args)
    config = ServeConfig(max_wait_ms=args.max_wait_ms, queue_size=args.queue_size,
                         timeout_s=args.timeout_s, max_body_bytes=int(args.max_body_mb * (1 << 20)),
                         body_memory_bytes=int(args.body_memory_mb * (1 << 20)),
                         body_timeout_s=args.body_timeout_s, parse_slots=args.parse_slots,
                         max_header_count=args.max_headers, token=token)
    limits = HttpLimits(head_timeout_s=args.header_timeout_s,
                        max_head_bytes=int(args.max_header_kb * 1024),
                        keep_alive_s=args.keep_alive_s, limit_concurrency=args.limit_concurrency)
    app = make_app([backend], config)
    if not token:
        say(no_auth_warning(args.host))
    say(f"lgc serve: model {backend.name!r} at http://{args.host}:{args.port}/v2/models/"
        f"{backend.name} (max batch {backend.max_batch_size}, "
        f"{'bearer token required' if token else 'no authentication'})")
    _raise_fd_limit()
    Server(uvicorn_config(app, args.host, args.port, limits, http=args.http,
                          access_log=args.access_log, log_level="info" if args.access_log else "warning",
                          log_config=log_config("INFO"))).run()
    return 0
