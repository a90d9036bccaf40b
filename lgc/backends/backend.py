"""A Backend per device class: its Target facts, its graph rewrites and its op lowerings.

lgc generates OpenCL C for two device classes. The CPU backend (PoCL) rewrites matmuls and
convs onto the packed-panel GEMM, Winograd and row kernels (cpu_lowering, quant_kernels);
the GPU backend splits under-filled convs along their channels (gpu_split) and picks GEMM
presets by wave width (64-wide GCN, or 32-wide). Both put long FFTs of lengths that are not
powers of two on power-of-two ones (fft_rewrite). Both then lower every op through the table of
lgc.backends.lowering and fuse by fusion class. The compile pipeline (lgc.compiler) passes a
Backend explicitly; kernel generators read the active target and settings, which
`Backend.lower` sets for the duration of one lowering.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Graph
from . import program, tuning
from .settings import Settings, use_settings
from .target import CPU, Target, use_target


@dataclass(frozen=True)
class Backend:
    target: Target

    device_class = "cpu"

    @property
    def name(self) -> str:
        return f"opencl-{self.device_class} ({self.target.name})"

    def rewrites(self) -> tuple:
        """Graph-to-graph functions `(graph, target) -> graph` run before fusion, in order."""
        return ()

    def rewrite(self, graph: Graph, settings: Settings | None = None) -> Graph:
        """The graph as this backend lowers it (what `lgc compile --explain` shows)."""
        with use_target(self.target), use_settings(settings):
            for rewrite in self.rewrites():
                graph = rewrite(graph, self.target)
        return graph

    def lower(self, graph: Graph, settings: Settings | None = None, tuned: dict | None = None,
              share_buffers: bool = True, donate=()):
        """The Program (one OpenCL source, buffers, launches) of an optimized graph. This
        backend's target, the settings and any tuning choices imposed (the tuner's candidate)
        are the ones kernel generators read meanwhile. `donate`: input names whose buffers
        the program may write its results into (lgc.backends.in_place)."""
        with use_target(self.target), use_settings(settings), tuning.forced(tuned or {}):
            return program.lower(graph, share_buffers=share_buffers, backend=self, donate=donate)


class OpenCLCPU(Backend):
    device_class = "cpu"

    def rewrites(self) -> tuple:
        # the rewrites load the CPU kernel generators: only for a lowering, not at `import lgc`
        from .cpu_lowering import lower_for_cpu
        from .factor_lowering import lower_factorizations
        from .fft_rewrite import bluestein_fft
        from .quant_kernels import lower_quant_for_cpu
        return (lower_factorizations, lower_for_cpu, lower_quant_for_cpu, bluestein_fft)


class OpenCLGPU(Backend):
    """GCN targets (64-wide waves) keep their ISA-checked GEMM presets; 32-wide GPUs get the
    wide presets (gpu_gemm.presets_for)."""
    device_class = "gpu"

    def rewrites(self) -> tuple:
        from .factor_lowering import lower_factorizations   # as OpenCLCPU.rewrites
        from .fft_rewrite import bluestein_fft
        from .gpu_split import lower_for_gpu
        return (lower_factorizations, lower_for_gpu, bluestein_fft)


def backend_for(target: Target | None) -> Backend:
    """The backend that generates code for `target` (the CPU one for None)."""
    target = target or CPU
    return OpenCLGPU(target) if target.is_gpu else OpenCLCPU(target)
