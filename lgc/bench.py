"""`lgc bench` at its old path; it lives in lgc.tools.bench."""
from .tools.bench import (BenchResult, add_parser, bench, compile_for_bench, device_target,
                          host_copy_bandwidth, kernel_table, main, profile_kernels, random_inputs,
                          report, with_batch)

__all__ = ["BenchResult", "add_parser", "bench", "compile_for_bench", "device_target",
           "host_copy_bandwidth", "kernel_table", "main", "profile_kernels", "random_inputs",
           "report", "with_batch"]
