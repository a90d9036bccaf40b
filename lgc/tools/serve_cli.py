"""`lgc serve`: lgc.serve's HTTP server in front of a Backend chosen here, the embedded model
(lgc.serve.backend.LocalBackend) or, with --address, a Ray deployment (lgc.cluster), so that
lgc.serve never imports lgc.cluster. `lgc.tools.cli.build_parser` calls `add_parsers`."""
from __future__ import annotations

import os
import sys

from ..errors import InputError, LgcError

DESCRIPTION = """Serve a compiled model over the Open Inference Protocol (KServe v2 REST API:
/v2/health/live, /v2/health/ready, /v2, /v2/models/NAME[/ready|/config|/infer], JSON and binary
tensors, as tritonclient.http speaks it) with dynamic batching, a bounded queue (503 when
full), per-request timeouts (504) and Prometheus metrics at /metrics. Embedded by default (the
model runs in this process); with --address, in front of a Ray deployment (lgc deploy)."""


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
                   help="bearer token required on every route but the health checks "
                        "(default: $LGC_SERVE_TOKEN; none: no authentication)")
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
    p.add_argument("--address", default=None,
                   help="serve in front of the Ray deployment at this address (auto or HOST:PORT) "
                        "instead of running the model in this process")
    p.add_argument("--no-warmup", action="store_true",
                   help="do not compile every batch size before accepting requests (ONNX source)")
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    p.add_argument("--device", help="OpenCL device for the embedded model: cpu, gpu, an index or a "
                                    "name (default: $LGC_DEVICE, else the first working GPU, else the CPU)")
    p.set_defaults(fn=cmd_serve)


def _check_args(args) -> None:
    if not os.path.exists(args.model):
        raise InputError(f"model file {args.model!r} does not exist")
    for flag, value, low in (("--port", args.port, 0), ("--max-batch-size", args.max_batch_size, 0),
                             ("--queue-size", args.queue_size, 1), ("--max-wait-ms", args.max_wait_ms, 0),
                             ("--timeout-s", args.timeout_s, 1e-3), ("--max-body-mb", args.max_body_mb, 1e-3)):
        if value < low:
            raise InputError(f"{flag} must be at least {low:g}, got {value:g}")
    if args.port > 65535:
        raise InputError(f"--port must be at most 65535, got {args.port}")


def make_backend(args):
    """The Backend `args` describe: embedded (LocalBackend) or Ray (lgc.cluster)."""
    if args.address:
        try:
            from ..cluster.deploy import connect
        except ImportError as e:
            raise LgcError(f"--address needs lgc.cluster's Ray backend "
                           f"(lgc.cluster.deploy.connect), which is not available: {e}") from None
        return connect(args.address, args.model, name=args.name, max_batch_size=args.max_batch_size,
                       progress=lambda msg: print(f"lgc serve: {msg}", file=sys.stderr, flush=True))
    from ..serve.backend import LocalBackend   # on use: every `lgc` start imports this module
    backend = LocalBackend(args.model, name=args.name, version=args.model_version,
                           max_batch_size=args.max_batch_size, device=args.device)
    if not args.no_warmup and backend.max_batch_size > 0:
        print(f"lgc serve: compiling {backend.name!r} for batch sizes up to "
              f"{backend.max_batch_size} ...", file=sys.stderr, flush=True)
        backend.warmup()
    return backend


def cmd_serve(args) -> int:
    import uvicorn

    from ..serve.app import ServeConfig, make_app   # Starlette, only for `lgc serve`
    _check_args(args)
    token = args.token if args.token is not None else os.environ.get("LGC_SERVE_TOKEN") or None
    backend = make_backend(args)
    config = ServeConfig(max_wait_ms=args.max_wait_ms, queue_size=args.queue_size,
                         timeout_s=args.timeout_s, max_body_bytes=int(args.max_body_mb * (1 << 20)),
                         token=token)
    app = make_app([backend], config)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not token:
        print(f"lgc serve: warning: listening on {args.host} with no --token: anyone who can "
              f"reach this port can run the model", file=sys.stderr)
    print(f"lgc serve: model {backend.name!r} at http://{args.host}:{args.port}/v2/models/"
          f"{backend.name} (max batch {backend.max_batch_size}, "
          f"{'token required' if token else 'no token'})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=args.access_log,
                log_level="info" if args.access_log else "warning")
    return 0
