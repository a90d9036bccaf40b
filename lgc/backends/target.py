"""The hardware facts that code generation decisions read, and which target is active.

A `Target` is plain data: wave width, compute units, local memory, registers, peak FLOP/s
and bandwidth, and whether the device is a GPU (GPU variants with local-memory tiles) or a
CPU (PoCL: one work-item per register tile, no barriers). `GFX803` is the RX 580 that lgc
is built for; lgc.runtime reads a device's facts from what OpenCL reports (Device.target).
Kernel generators ask `current_target()`, which the Backend being lowered for sets
(Backend.lower, through `use_target`); `lgc compile --target gfx803` retargets the device, so
GPU kernels come out on a machine that has none.
"""
from __future__ import annotations

from dataclasses import dataclass

from .scoped import scoped


@dataclass(frozen=True)
class Target:
    name: str
    device_type: str = "cpu"          # "gpu" | "cpu" | "other": picks the kernel variants
    wave_width: int = 1               # lanes that execute in lock step (64 on GCN)
    compute_units: int = 1
    local_mem_bytes: int = 32768      # per work-group (64 KiB LDS per CU on GCN)
    vgprs: int = 256                  # vector registers per lane (GCN: 256, occupancy falls above 24)
    simds_per_cu: int = 4             # GCN: 4 SIMD16 units per CU, each holding up to 10 waves
    max_waves_per_simd: int = 10
    max_work_group: int = 256
    peak_flops: float = 0.0           # FP32 FLOP/s
    bandwidth: float = 0.0            # bytes/s to global memory
    key: str = ""                     # identifies device and driver (tuning database key)

    @property
    def is_gpu(self) -> bool:
        return self.device_type == "gpu"

    @property
    def ridge(self) -> float:
        """FLOP per byte above which a kernel is compute-bound (roofline ridge point)."""
        return self.peak_flops / self.bandwidth if self.bandwidth else 0.0


GFX803 = Target(name="gfx803", device_type="gpu", wave_width=64, compute_units=36,
                local_mem_bytes=65536, vgprs=256, simds_per_cu=4, max_waves_per_simd=10,
                max_work_group=256, peak_flops=6.17e12, bandwidth=256e9, key="gfx803")
CPU = Target(name="cpu", device_type="cpu")

# Targets by name (`--target`) and by the board names drivers report for them.
TARGETS = {"gfx803": GFX803, "polaris10": GFX803, "cpu": CPU}
KNOWN = {"ellesmere": GFX803, "gfx803": GFX803, "polaris10": GFX803, "polaris 10": GFX803,
         "radeon rx 580": GFX803, "radeon rx 480": GFX803}


def _board(name: str) -> str:
    n = name.lower()
    return next((k for k in KNOWN if k in n), n)


def known_target(device_name: str) -> Target | None:
    """The Target of a board lgc knows by the name its driver reports (an RX 580), if any."""
    return KNOWN.get(_board(device_name))


def by_name(name: str) -> Target:
    try:
        return TARGETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown target {name!r} (known: {', '.join(sorted(TARGETS))})") from None


# current_target: the target kernels are being generated for (the CPU one unless set);
# `with use_target(target):` generates kernels for `target` inside the block.
current_target, use_target = scoped("lgc_target", lambda: CPU)
