"""Old import path of lgc.backends (lgc/codegen was renamed when the backends got their own
layer): `lgc.codegen.<module>` is the same module as `lgc.backends.<module>` for the modules
that kept their names. New code imports lgc.backends."""
import importlib
import sys

MODULES = ("cpu_depthwise", "cpu_gemm", "cpu_lowering", "cpu_pool", "cpu_rows", "cpu_winograd",
           "emit", "fused", "fusion", "gpu_conv", "gpu_gemm", "gpu_split", "isa", "kernel",
           "memory", "program", "quant_kernels", "sparse_kernels", "target", "templates",
           "tuning")

for _name in MODULES:
    sys.modules[f"{__name__}.{_name}"] = _module = importlib.import_module(f"lgc.backends.{_name}")
    globals()[_name] = _module
