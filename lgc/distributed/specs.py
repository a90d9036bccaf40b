"""Worker lists and the sizes, rates and durations in them, read from text: what `lgc plan
--workers` takes and what the cluster's balanced cuts are planned over."""
from __future__ import annotations

import re

from ..backends.target import Target
from ..errors import InputError

_SIZE_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6,
               "mib": 2**20, "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}
_PREFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_NUM = r"(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?"


def _number(m) -> float:
    return float(m.group(1)) * (10 ** int(m.group(2)) if m.group(2) else 1)


def parse_size(text: str, what: str = "size") -> int:
    """'8GB' (10^9), '8GiB' (2^30), '512MB', '4096' (bytes) -> bytes."""
    m = re.fullmatch(_NUM + r"\s*([a-z]*)", str(text).strip().lower())
    if not m or m.group(3) not in _SIZE_UNITS:
        raise InputError(f"bad {what} {text!r}: expected a number with a unit such as 8GB, "
                         f"8GiB or 512MB")
    return int(_number(m) * _SIZE_UNITS[m.group(3)])


def parse_bandwidth(text: str, what: str = "bandwidth") -> float:
    """'1Gbit', '1Gbit/s', '10Gbps', '125MB/s', '1GB/s' -> bytes/s (bits count 1/8 byte)."""
    m = re.fullmatch(_NUM + r"\s*([kmgt]?)(bit|bps|b|byte)?(?:/s)?", str(text).strip().lower())
    if not m or m.group(4) is None or _number(m) <= 0:
        raise InputError(f"bad {what} {text!r}: expected a rate such as 1Gbit, 10Gbit/s, "
                         f"125MB/s")
    unit = 1 / 8 if m.group(4) in ("bit", "bps") else 1
    return _number(m) * _PREFIX[m.group(3)] * unit


def parse_rate(text: str, what: str = "FLOP/s") -> float:
    """'6.17TFLOPS', '500GFLOPS', '500G' -> FLOP/s."""
    m = re.fullmatch(_NUM + r"\s*([kmgt]?)(flops|flop/s)?", str(text).strip().lower())
    if not m or _number(m) <= 0:
        raise InputError(f"bad {what} {text!r}: expected a rate such as 6.17TFLOPS or 500GFLOPS")
    return _number(m) * _PREFIX[m.group(3)]


def parse_duration(text: str, what: str = "duration") -> float:
    """'10us', '0.2ms', '1s', '0' -> seconds."""
    m = re.fullmatch(_NUM + r"\s*(us|µs|ms|s|ns)?", str(text).strip().lower())
    if not m:
        raise InputError(f"bad {what} {text!r}: expected a time such as 10us, 0.2ms or 0")
    return _number(m) * {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, None: 1.0}[m.group(3)]


def parse_workers(spec: str, efficiency: float = 1.0, launch_overhead_s: float = 0.0,
                  kernel_times: dict | None = None) -> list:
    """'gfx803:8GB,gfx803:8GB*3,cpu:16GB:500GFLOPS:40GB/s' -> Workers, named w{i}-{kind}.

    Each item is KIND:MEMORY[:PEAK_FLOPS[:MEMORY_BANDWIDTH]][*COUNT]; KIND is a known
    target (gfx803/rx580, cpu) or, with both peaks given, any name. kernel_times maps a kind
    (or "*") to a kernel-times document measured on such a device."""
    from dataclasses import replace

    from .cost import WORKER_TARGETS, Worker   # on use: the lgc command imports this module at start
    workers = []
    for item in [s.strip() for s in str(spec).split(",")]:
        if not item:
            raise InputError(f"bad worker list {spec!r}: empty item")
        body, star, count = item.partition("*")
        try:
            n = int(count) if star else 1
        except ValueError:
            n = 0
        if n < 1:
            raise InputError(f"bad worker {item!r}: the count after '*' must be a positive integer")
        parts = body.split(":")
        if len(parts) < 2 or len(parts) > 4:
            raise InputError(f"bad worker {item!r}: expected KIND:MEMORY[:PEAK_FLOPS[:BANDWIDTH]], "
                             f"e.g. gfx803:8GB or cpu:16GB:500GFLOPS:40GB/s")
        kind = parts[0].strip().lower()
        mem = parse_size(parts[1], f"memory in worker {item!r}")
        base = WORKER_TARGETS.get(kind)
        if base is None and len(parts) < 4:
            raise InputError(f"bad worker {item!r}: unknown kind {kind!r} (known: "
                             f"{', '.join(sorted(WORKER_TARGETS))}; other kinds need "
                             f"KIND:MEMORY:PEAK_FLOPS:BANDWIDTH)")
        target = base or Target(name=kind, device_type="gpu")
        if len(parts) >= 3:
            target = replace(target, peak_flops=parse_rate(parts[2], f"peak in worker {item!r}"))
        if len(parts) == 4:
            target = replace(target, bandwidth=parse_bandwidth(parts[3], f"memory bandwidth in "
                                                                          f"worker {item!r}"))
        kt = (kernel_times or {}).get(kind) or (kernel_times or {}).get("*")
        for _ in range(n):
            workers.append(Worker(f"w{len(workers)}-{kind}", target, mem, efficiency,
                                  launch_overhead_s, kt))
    return workers
