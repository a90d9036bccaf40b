"""Interleaved timing of executables: the one measuring loop of the compression report, the
searches and the measured sparse-or-dense choices (lgc.compress.sparse, lgc.snn.sparse)."""
from __future__ import annotations

import time

import numpy as np


def run_seconds(exes: dict, feeds: dict, runs: int, warmup: int = 1,
                kernel_time: bool = False) -> dict:
    """Median seconds per run of each exes[k] on feeds[k], timed interleaved (A B A B ...)
    after `warmup` untimed rounds, so that machine load hits all alike. Wall time of
    exes[k].run, or with kernel_time the sum of its kernels' OpenCL profiling times
    (executables made with profile=True): the kernels alone, without host overhead."""
    times = {k: [] for k in exes}
    for i in range(warmup + runs):
        for k, e in exes.items():
            t0 = time.perf_counter()
            e.run(feeds[k])
            if i >= warmup:
                times[k].append(sum(t for _, _, t in e.executor.last_profile) if kernel_time
                                else time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}
