"""What the `lgc` subcommands share: progress lines, --input-shape values and the flags
several commands take (--device, --input-shape)."""
from __future__ import annotations

import sys

DEVICES = "cpu, gpu, an index or a name (default: $LGC_DEVICE, else the first working GPU, else the CPU)"
DEVICE_HELP = f"OpenCL device: {DEVICES}"


def say(msg: str) -> None:
    """A progress line: on stderr, so that stdout holds only results."""
    print(msg, file=sys.stderr, flush=True)


def add_device_flags(p, device: str | None = DEVICE_HELP, shapes: bool = True) -> None:
    """--device (with this help; None: no such flag) and, with shapes, --input-shape."""
    if device:
        p.add_argument("--device", help=device)
    if shapes:
        p.add_argument("--input-shape", action="append", metavar="NAME=DxD",
                       help="concrete shape for an input with symbolic dimensions (repeatable)")


def parse_shape_args(items) -> dict:
    """['x=1x3x224x224', ...] -> {'x': (1, 3, 224, 224)}"""
    out = {}
    for item in items or []:
        name, sep, dims = item.rpartition("=")
        if not sep or not name:
            raise SystemExit(f"lgc: error: --input-shape expects NAME=DxDxD, got {item!r}")
        try:
            out[name] = tuple(int(d) for d in dims.lower().split("x")) if dims else ()
        except ValueError:
            raise SystemExit(f"lgc: error: --input-shape {item!r}: dimensions must be integers") from None
    return out
