"""The compile-time switches (LGC_* variables), read once into one object.

Each switch turns a lowering off for comparisons and bisection (`LGC_FUSE=0 lgc bench ...`).
They are read from the environment in one place, `Settings.from_env`, when a compile starts;
the compile pipeline (lgc.compiler) makes them active for the lowering, and the compiled-
program cache keys on `Settings.key()`, so a cached program never answers for other settings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

from .scoped import scoped


@dataclass(frozen=True)
class Settings:
    fuse: bool = True               # LGC_FUSE: fusion groups (off: one kernel per op)
    generic_kernels: bool = True    # LGC_GENERIC_KERNELS: sizes as kernel arguments, shared kernels
    concat_inplace: bool = True     # LGC_CONCAT_INPLACE: concat inputs written into their output
    cpu_panels: bool = True         # LGC_CPU_PANELS: CPU matmul/conv on the packed-panel GEMM
    cpu_winograd: bool = True       # LGC_CPU_WINOGRAD: CPU 3x3 convs through Winograd F(2x2,3x3)
    cpu_winograd_wide_stores: bool = True  # LGC_CPU_WINOGRAD_WIDE_STORES: its output transform stores float4 rows
    cpu_depthwise: bool = True      # LGC_CPU_DEPTHWISE: CPU depthwise convs on row kernels
    cpu_dwpw: bool = True           # LGC_CPU_DWPW: CPU depthwise conv + 1x1 conv in one kernel (cpu_dwpw)
    cpu_pool: bool = True           # LGC_CPU_POOL: CPU pools on row kernels
    cpu_excite: bool = True         # LGC_CPU_EXCITE: CPU squeeze-and-excitation blocks as one kernel
    cpu_pointwise_rows: bool = True  # LGC_CPU_POINTWISE_ROWS: CPU 1x1 convs read the image as B (no pack)
    cpu_rowvec: bool = True         # LGC_CPU_ROWVEC: CPU softmax/row reductions as vector rows
    cpu_attention: bool = True      # LGC_CPU_ATTENTION: CPU attention as one fused kernel (cpu_attention)
    cpu_grid: bool = True           # LGC_CPU_GRID: CPU elementwise kernels on a 2-D grid (cpu_grid)
    cpu_gemm_reshape: bool = True   # LGC_CPU_GEMM_RESHAPE: a panel GEMM stores in the shape of a reshape of C
    cpu_tanh: bool = True           # LGC_CPU_TANH: CPU float32 tanh as a rational (lgc_tanh: vectorises)
    gpu_conv_fold: bool = True      # LGC_GPU_CONV_FOLD: a batch's images side by side in GEMM columns
    gpu_split_k: bool = True        # LGC_GPU_SPLIT_K: split-K for convs that underfill the GPU

    @classmethod
    def from_env(cls, environ=None) -> "Settings":
        """The switches as the environment sets them: LGC_<NAME>=0 turns one off."""
        environ = os.environ if environ is None else environ
        return cls(**{f.name: environ.get(env_name(f.name), "1") != "0" for f in fields(cls)})

    def key(self) -> str:
        """A stable text of the switches that differ from the defaults, for cache keys."""
        off = [f.name for f in fields(self) if not getattr(self, f.name)]
        return "off:" + ",".join(off) if off else "default"


def env_name(field_name: str) -> str:
    return "LGC_" + field_name.upper()


# current_settings: the settings of the compile in progress, outside one the environment's;
# `with use_settings(settings):` lowers with `settings` inside the block.
current_settings, use_settings = scoped("lgc_settings", Settings.from_env)
