"""Offline GCN check: compile a program's kernels for gfx803 with LLVM and read their resources.

The recipe is DESIGN.md's: clang-16 (OpenCL C to LLVM IR for amdgcn-mesa-mesa3d, polaris10,
with libclc's headers), llvm-link with libclc's polaris10 library (without it the builtins
stay external calls and the figures are wrong), opt -O3, and llc with the
kernel-resource-usage remarks. Per kernel we get VGPRs, SGPRs, LDS bytes, scratch (bytes per
lane: spills or private arrays) and LLVM's occupancy (waves per SIMD, from registers). The
occupancy reported here also applies the LDS limit for the kernel's work-group size, which
LLVM cannot know: 64 KiB per CU shared by the work-groups resident on it (at most 16 of more than one wave).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .target import GFX803, Target

TOOLS = ("clang-16", "llvm-link-16", "opt-16", "llc-16")
LIBCLC = Path("/usr/lib/clc/polaris10-amdgcn-mesa-mesa3d.bc")


class IsaUnavailable(RuntimeError):
    pass


def available() -> bool:
    return all(shutil.which(t) for t in TOOLS) and LIBCLC.exists()


@dataclass
class KernelResources:
    name: str
    vgprs: int
    sgprs: int
    lds_bytes: int
    scratch_bytes: int          # per lane; > 0 means spills or private arrays in memory
    vgpr_spill: int
    sgpr_spill: int
    llvm_waves: int             # waves per SIMD allowed by registers (LLVM's figure)
    work_group: int = 0         # work-items per group, when known
    waves: int = 0              # after the LDS limit

    @property
    def spills(self) -> bool:
        return self.scratch_bytes > 0 or self.vgpr_spill > 0 or self.sgpr_spill > 0


BARRIERS_PER_CU = 16   # GCN: resident multi-wave work-groups per CU (single-wave ones need none)


def lds_waves(lds_bytes: int, work_group: int, target: Target = GFX803) -> int:
    """Waves per SIMD that local memory and barrier slots allow: groups per CU x waves per
    group / SIMDs (LLVM's getMaxWorkGroupsPerCU rule for the slots)."""
    if lds_bytes <= 0 or work_group <= 0:
        return target.max_waves_per_simd
    waves_per_group = -(-work_group // target.wave_width)
    groups = target.local_mem_bytes // lds_bytes
    if waves_per_group > 1:
        groups = min(groups, BARRIERS_PER_CU)
    return min(target.max_waves_per_simd, groups * waves_per_group // target.simds_per_cu)


def _run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {(r.stderr or r.stdout).strip()[:2000]}")
    return r


def compile_resources(source: str, work_groups: dict[str, int] | None = None,
                      target: Target = GFX803) -> list[KernelResources]:
    """Resources of every kernel in an OpenCL C source, as gfx803 would run them."""
    if not available():
        raise IsaUnavailable("the offline GCN check needs clang-16, llvm-16 and libclc-16 "
                             "(apt-get install clang-16 libclc-16)")
    with tempfile.TemporaryDirectory(prefix="lgc-isa-") as tmp:
        Path(tmp, "k.cl").write_text(source)
        _run(["clang-16", "-x", "cl", "-cl-std=CL1.2", "-target", "amdgcn-mesa-mesa3d",
              "-mcpu=polaris10", "-nogpulib", "-I/usr/include/clc", "-include", "clc/clc.h",
              "-Dcl_clang_storage_class_specifiers", "-O3", "-emit-llvm", "-c", "k.cl", "-o", "k.bc"], tmp)
        _run(["llvm-link-16", "k.bc", str(LIBCLC), "-o", "kl.bc"], tmp)
        _run(["opt-16", "-O3", "kl.bc", "-o", "klo.bc"], tmp)
        r = _run(["llc-16", "-mtriple=amdgcn-mesa-mesa3d", "-mcpu=polaris10", "-O3", "klo.bc",
                  "-o", "k.s", "-pass-remarks-analysis=kernel-resource-usage"], tmp)
    kernels = set(re.findall(r"__kernel\s+void\s+(\w+)\s*\(", source))
    # helper functions (lgc_erf, ...) are inlined into kernels but llc still reports them
    return [k for k in parse_remarks(r.stderr, work_groups or {}, target) if k.name in kernels]


_FIELDS = {"SGPRs": "sgprs", "VGPRs": "vgprs", "ScratchSize [bytes/lane]": "scratch_bytes",
           "Occupancy [waves/SIMD]": "llvm_waves", "SGPRs Spill": "sgpr_spill",
           "VGPRs Spill": "vgpr_spill", "LDS Size [bytes/block]": "lds_bytes"}


def parse_remarks(text: str, work_groups: dict[str, int], target: Target = GFX803) -> list[KernelResources]:
    """llc's kernel-resource-usage remarks ('remark: ...: Function Name: k', '    VGPRs: 12', ...)."""
    out, cur = [], None
    for line in text.splitlines():
        m = re.search(r"remark: [^:]*:\d+:\d+:\s*(.+?):\s*(\S+)\s*$", line)
        if not m:
            continue
        key, val = m.group(1).strip(), m.group(2)
        if key == "Function Name":
            cur = {"name": val}
            out.append(cur)
        elif cur is not None and key in _FIELDS:
            cur[_FIELDS[key]] = int(val)
    res = []
    for d in out:
        k = KernelResources(**{"vgprs": 0, "sgprs": 0, "lds_bytes": 0, "scratch_bytes": 0,
                               "vgpr_spill": 0, "sgpr_spill": 0, "llvm_waves": 0, **d})
        k.work_group = work_groups.get(k.name, 0)
        k.waves = min(k.llvm_waves, lds_waves(k.lds_bytes, k.work_group, target))
        res.append(k)
    return res


def program_resources(program, target: Target = GFX803) -> list[KernelResources]:
    """Resources of every kernel of a lowered Program (work-group sizes from its launches)."""
    groups = {}
    for ln in program.launches:
        n = 1
        for v in ln.local_size or (0,):
            n *= v
        groups[ln.kernel] = n
    return compile_resources(program.source, groups, target)


def report(resources: list[KernelResources], program=None) -> str:
    """A table, one row per kernel, spills flagged; the heavy kernels' op shown."""
    ops = {}
    if program is not None:   # the op of the kernel's last node; "gemm+"/"gemv+": the GPU templates
        for m in re.finditer(r"/\* (\w+) [^*]*\*/\n__kernel void (\w+)\((.*?)\n}", program.source, re.S):
            text = m.group(3)
            kind = "gemm+" if "k0 += " in text else "gemv+" if "__local float red[" in text else ""
            ops[m.group(2)] = kind + m.group(1)
    rows = [f"{'kernel':<40} {'op':<14} {'VGPR':>4} {'SGPR':>4} {'LDS':>6} {'scratch':>7} "
            f"{'wg':>4} {'waves':>5}  note"]
    for k in resources:
        note = "SPILLS" if k.spills else ("low occupancy" if k.waves < 4 else "")
        rows.append(f"{k.name[:40]:<40} {ops.get(k.name, '')[:14]:<14} {k.vgprs:>4} {k.sgprs:>4} "
                    f"{k.lds_bytes:>6} {k.scratch_bytes:>7} {k.work_group or '-':>4} {k.waves:>5}  {note}")
    spilled = sum(k.spills for k in resources)
    rows.append(f"{len(resources)} kernels, {spilled} with scratch/spills; waves = waves per SIMD on "
                f"gfx803 (registers and LDS; 10 is the most)")
    return "\n".join(rows)
