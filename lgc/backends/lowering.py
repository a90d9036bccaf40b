"""Which kernel generator lowers each op, on which backend: the one table.

A generator turns one IR node into kernels (`kernels(node, name) -> list[Kernel]`; see
lgc.backends.templates). Each module of lgc/backends/kernels gives its op family's
generators as a plain dict, `LOWERINGS = {op name: generator}`; the backend-specific modules
(cpu_gemm, gpu_split, ...) give theirs the same way. `TABLES` below joins them per device
class, so this file is the one place that says "op X on backend Y is lowered by Z" (the role
of JAX's register_lowering), and nothing is registered by importing a module for its side
effects.

The table being lowered for is the active target's (lgc.backends.target.current_target), set
once per compile by lgc.compiler.
"""
from __future__ import annotations

from ..ir import registry
from .target import current_target


def _joined(*modules) -> dict:
    return {op: generator for module in modules for op, generator in module.LOWERINGS.items()}


def _common() -> dict:
    # the generators import this module (through fused.py), and `import lgc` needs none of them
    from .kernels import (complex, control, elementwise, factor, fft, indexing, layout, linalg,
                          misc, nn, quant, recurrent, reduce, sparse, spike)
    return _joined(elementwise, complex, layout, misc, control, indexing, reduce, linalg, factor,
                   nn, quant, sparse, fft, spike, recurrent)


def _cpu_only() -> dict:
    """Ops that only the CPU backend's graph rewrites create (packed panels, Winograd, row
    kernels, int8 panels, the LAPACK-style eigh and svd)."""
    from . import (cpu_attention, cpu_depthwise, cpu_dwpw, cpu_excite, cpu_gemm, cpu_pool,   # as in _common
                   cpu_shuffle, cpu_winograd, quant_kernels)
    from .kernels import factor
    return {**_joined(cpu_attention, cpu_gemm, cpu_winograd, cpu_depthwise, cpu_dwpw, cpu_pool, cpu_shuffle,
                      cpu_excite, quant_kernels),
            **factor.CPU_LOWERINGS}


def _gpu_only() -> dict:
    """Ops that only the GPU backend's graph rewrites create (split-K), and the ones its
    kernels take as they are (the Jacobi eigh and svd)."""
    from . import gpu_split   # as in _common
    from .kernels import factor
    return {**_joined(gpu_split), **factor.GPU_LOWERINGS}


_TABLES: dict[str, dict] = {}


def table(device_class: str) -> dict:
    """{op: generator} for a device class ("cpu" or "gpu")."""
    if device_class not in _TABLES:
        only = _gpu_only() if device_class == "gpu" else _cpu_only()
        _TABLES[device_class] = {**_common(), **only}
    return _TABLES[device_class]


def lowering_of(op: str):
    """The generator that lowers `op` on the active target (the while op's is a marker:
    lgc.backends.program runs its subgraphs itself); None for const, which lowering
    handles as a buffer."""
    return table("gpu" if current_target().is_gpu else "cpu").get(op)


def is_alias(op: str) -> bool:
    """No kernel: the output is a view of its input's buffer (reshape, bitcast)."""
    return registry.get(op).fusion == "alias"
