"""OpenCL device discovery and choice.

Every device is probed once by building a one-line kernel, because an installed platform
can be present yet unable to compile (a bundled PoCL whose LLVM does not know the host CPU
fails with "unknown target CPU 'generic'"). Unusable devices are listed with the reason and
never chosen. The default prefers a working GPU, then a working CPU device.

LGC_DEVICE (or --device) picks one: "cpu", "gpu", an index from `lgc devices`, or a
substring of the device or platform name.
"""
from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, replace

import pyopencl as cl

from ..backends.kernel import PROBE_SOURCE
from ..backends.target import Target, known_target
from ..errors import LgcError



class DeviceError(LgcError, RuntimeError):
    """No usable OpenCL device, or one that cannot hold what a program needs."""


_once_lock = threading.RLock()


def _once(fn):
    """Cache fn's value per arguments, computed once even when first calls race: two
    threads must never get two OpenCL contexts for one device (their buffers and queues
    cannot mix). Later calls read the cache without the lock."""
    values: dict = {}

    @functools.wraps(fn)
    def cached(*args):
        try:
            return values[args]
        except KeyError:
            pass
        with _once_lock:
            if args not in values:
                values[args] = fn(*args)
            return values[args]
    return cached


@dataclass
class Device:
    index: int
    cl_device: cl.Device
    platform: str
    usable: bool
    problem: str = ""
    target_override: Target | None = None   # generate kernels for this Target instead (--target)

    @property
    def name(self) -> str:
        return self.cl_device.name.strip()

    @property
    def kind(self) -> str:
        t = self.cl_device.type
        return "gpu" if t & cl.device_type.GPU else "cpu" if t & cl.device_type.CPU else "other"

    @property
    def has_fp64(self) -> bool:
        return "cl_khr_fp64" in self.cl_device.extensions

    @property
    def key(self) -> str:
        """Identifies the device and driver for caches."""
        d = self.cl_device
        return f"{self.platform}|{self.name}|{d.driver_version}|{d.version}"

    def describe(self) -> str:
        d = self.cl_device
        return (f"{self.name} ({self.kind}, {self.platform}, {d.max_compute_units} CUs, "
                f"{d.global_mem_size // 2**20} MiB)")

    @property
    def context(self) -> cl.Context:
        return _context(self.index)

    @property
    def target(self) -> Target:
        """The hardware facts code generation reads (lgc.backends.target.Target): the
        device's own, or the one it was retargeted to."""
        return self.target_override or _target(self.index, self.key)

    def retargeted(self, target: Target | None) -> "Device":
        """This device, with kernels generated for `target` (`lgc compile --target gfx803`
        on a machine without that GPU; the kernels still run here). None: unchanged."""
        return self if target is None else replace(self, target_override=target)


@_once
def _target(index: int, key: str) -> Target:
    """A device's Target: a board lgc knows (the RX 580), else what OpenCL reports, with
    estimated peaks. OpenCL reports no FLOP/s or bandwidth, so a GPU counts 2 FLOP x 64 lanes
    per CU per clock (GCN-like; 128 on NVIDIA, whose SMs have had 128 FP32 lanes since
    Pascal's GP10x, bar Volta's 64) and a CPU 2 FMA x 16 lanes per core; bandwidth is left
    unknown (0) unless the device is a known one."""
    d = _raw_devices()[index][1]
    name = d.name.strip()
    known = known_target(name)
    if known is not None:
        return replace(known, key=key, compute_units=d.max_compute_units)   # RX 470/570: 32
    kind = "gpu" if d.type & cl.device_type.GPU else "cpu" if d.type & cl.device_type.CPU else "other"
    vendor = d.vendor.upper()
    wave = 64 if "AMD" in vendor or "ADVANCED MICRO" in vendor else 32
    lanes = (128 if "NVIDIA" in vendor else 64) if kind == "gpu" else 32
    flops = 2.0 * d.max_compute_units * d.max_clock_frequency * 1e6 * lanes
    return Target(name=name, device_type=kind, wave_width=wave if kind == "gpu" else 1,
                  compute_units=d.max_compute_units, local_mem_bytes=d.local_mem_size,
                  max_work_group=d.max_work_group_size, peak_flops=flops, key=key)


def _probe(dev: cl.Device) -> str:
    try:
        ctx = cl.Context([dev])
        cl.Program(ctx, PROBE_SOURCE).build()
        return ""
    except Exception as e:  # any failure means the device cannot run lgc's kernels
        lines = [ln.strip() for ln in str(e).splitlines() if "error" in ln.lower()]
        return (lines[-1] if lines else str(e).splitlines()[0])[:200]


@_once
def _raw_devices() -> tuple:
    out = []
    try:
        platforms = cl.get_platforms()
    except cl.Error:
        platforms = []
    for p in platforms:
        try:
            devs = p.get_devices()
        except cl.Error:
            continue
        for d in devs:
            out.append((p.name.strip(), d))
    return tuple(out)


@_once
def _checked(index: int) -> Device:
    platform, d = _raw_devices()[index]
    problem = _probe(d)
    return Device(index, d, platform, not problem, problem)


def list_devices() -> list[Device]:
    return [_checked(i) for i in range(len(_raw_devices()))]


@_once
def _context(index: int) -> cl.Context:
    return cl.Context([_raw_devices()[index][1]])


def _preference(raw) -> list[int]:
    gpus = [i for i, (_, d) in enumerate(raw) if d.type & cl.device_type.GPU]
    others = [i for i in range(len(raw)) if i not in gpus]
    return gpus + others


def select_device(spec: str | int | None = None) -> Device:
    """The device named by spec (see module doc), else LGC_DEVICE, else the default."""
    if isinstance(spec, Device):
        return spec
    spec = os.environ.get("LGC_DEVICE", "") if spec is None else str(spec)
    raw = _raw_devices()
    if not raw:
        raise DeviceError("no OpenCL platform found: install a driver, or "
                          "`apt-get install pocl-opencl-icd` for the CPU")
    spec = spec.strip()
    if spec.isdigit():
        i = int(spec)
        if i >= len(raw):
            raise DeviceError(f"device index {i} out of range (0..{len(raw) - 1}); see `lgc devices`")
        candidates = [i]
    elif spec.lower() in ("cpu", "gpu"):
        want = cl.device_type.CPU if spec.lower() == "cpu" else cl.device_type.GPU
        candidates = [i for i, (_, d) in enumerate(raw) if d.type & want]
    elif spec:
        candidates = [i for i, (p, d) in enumerate(raw)
                      if spec.lower() in d.name.lower() or spec.lower() in p.lower()]
    else:
        candidates = _preference(raw)
    problems = []
    for i in candidates:
        dev = _checked(i)
        if dev.usable:
            return dev
        problems.append(f"{dev.name}: {dev.problem}")
    what = f"matching {spec!r} " if spec else ""
    detail = ("; ".join(problems)) if problems else "none found"
    raise DeviceError(f"no usable OpenCL device {what}({detail})")
