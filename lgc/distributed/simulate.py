"""Latency percentiles of a plan under load, by simulating its queues (same cost model as the
planner): Poisson arrivals at a given rate; each stage a FIFO queue served by its replicas
(each taking the stage's time on that worker: incoming transfer + compute, + the answer's
transfer for the last stage), a request taking the replica that frees first; with a front
link, a request's transfer into stage 0 also occupies the front's one link (it starts when
both the link and a stage-0 replica are free). The planner's latency is this with no queue.
"""
from __future__ import annotations

import numpy as np

from .planner import Plan


def replica_times(p: Plan) -> list[list[float]]:
    """Per stage, the time of the stage on each of its replicas."""
    cm = p.cm
    return [[s.in_s + cm.compute_time(w, s.first, s.end) + s.out_s for w in s.replicas]
            for s in p.stages]


def simulate(p: Plan, rate: float, requests: int = 20000, seed: int = 0) -> dict:
    """{'p50_s', 'p95_s', 'p99_s', 'mean_s', 'throughput_per_s'} at `rate` requests/s."""
    rng = np.random.default_rng(seed)
    arrive = np.cumsum(rng.exponential(1.0 / rate, requests))
    t = arrive.copy()
    front_s = p.stages[0].in_s if p.front_link else 0.0
    front_free = 0.0
    for k, times in enumerate(replica_times(p)):
        free = np.zeros(len(times))
        svc = np.array(times)
        for i in np.argsort(t, kind="stable"):
            if k == 0 and front_s:
                ready = np.maximum(free, front_free)
                r = int(np.argmin(ready))
                start = max(t[i], ready[r])
                front_free = start + front_s
            else:
                r = int(np.argmin(free))
                start = max(t[i], free[r])
            free[r] = start + svc[r]
            t[i] = free[r]
    lat = t - arrive
    warm = lat[requests // 10:]                      # drop the start-up transient
    span = t.max() - arrive[requests // 10]
    return {"p50_s": float(np.percentile(warm, 50)), "p95_s": float(np.percentile(warm, 95)),
            "p99_s": float(np.percentile(warm, 99)), "mean_s": float(warm.mean()),
            "throughput_per_s": float(len(warm) / span) if span > 0 else 0.0}
