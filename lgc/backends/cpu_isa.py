"""The vector-ISA class of a CPU device: which shipped table of CPU kernel choices applies
(lgc/backends/tuned/cpu-<class>.json, read through lgc.backends.tuning).

PoCL compiles for the CPU it finds, so one kernel meets different vector units
(docs/HARDWARE.md, PoCL): a tile that fills AVX-512's 32 registers of 16 floats spills on
AVX2's 16 of 8. PoCL's native and preferred vector widths say nothing (16 floats on its
AVX-512, AVX2 and SSE4.1 builds alike); what tells is the LLVM CPU it compiles for, which it
names in the device name ("pthread-skylake-avx512-AMD EPYC": Debian's build picks its kernel
library by the CPU's features, so a Zen 5 is "skylake-avx512") and in the driver version
("HSTR: pthread-x86_64-pc-linux-gnu-skylake-avx512"). A CPU name lgc does not know falls
back to the host's flags (PoCL then compiles for the host), a device without even that to
the narrowest class.

Classes: avx512 (32 x 16 floats), avx2 (16 x 8), vec128 (SSE, NEON: 4 floats).
"""
from __future__ import annotations

import re
from functools import lru_cache

CLASSES = ("avx512", "avx2", "vec128")

# LLVM CPU names (x86), by the widest vector unit they give LLVM; checked in this order.
_AVX512 = ("avx512", "cascadelake", "cooperlake", "cannonlake", "icelake", "tigerlake",
           "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids", "diamondrapids",
           "znver4", "znver5", "x86-64-v4", "knl", "knm")
_AVX2 = ("haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake",
         "arrowlake", "lunarlake", "pantherlake", "gracemont", "sierraforest", "grandridge",
         "clearwaterforest", "znver1", "znver2", "znver3", "bdver4", "x86-64-v3", "avx2")
_VEC128 = ("generic", "penryn", "nehalem", "westmere", "sandybridge", "ivybridge", "core2",
           "sse", "x86-64", "btver", "bdver", "silvermont", "goldmont", "tremont", "cortex",
           "neoverse", "apple", "aarch64", "arm", "avx")     # avx: Sandy Bridge's FP is 128-bit wide


def class_of_name(text: str) -> str | None:
    """The class a PoCL device name or driver string names, or None."""
    t = text.lower()
    for cls, names in (("avx512", _AVX512), ("avx2", _AVX2), ("vec128", _VEC128)):
        if any(re.search(rf"(^|[-_ ]){re.escape(n)}", t) for n in names):
            return cls
    return None


@lru_cache(maxsize=1)
def host_class() -> str:
    """The host CPU's class from its flags (Linux /proc/cpuinfo), else vec128."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith(("flags", "Features"))), [])
    except OSError:
        flags = []
    return "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags and "fma" in flags else "vec128"


def isa_class(target) -> str:
    """The class of a CPU Target: its device name and driver string (Target.key) first."""
    for text in (target.name, target.key.split("|")[2] if target.key.count("|") >= 2 else ""):
        found = text and class_of_name(_llvm_cpu(text))
        if found:
            return found
    return host_class()


def _llvm_cpu(text: str) -> str:
    """The LLVM CPU part of a PoCL name ("pthread-skylake-avx512-AMD EPYC" -> "skylake-avx512",
    "HSTR: pthread-x86_64-pc-linux-gnu-haswell" -> "haswell"); other text as it stands."""
    m = re.search(r"x86_64-[a-z]+-linux-gnu-(\S+)", text) or \
        re.match(r"(?:pthread|cpu|basic|tbb)-(.+?)-(?=[A-Z])", text)
    return m.group(1) if m else text
