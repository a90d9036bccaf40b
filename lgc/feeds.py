"""Made-up inputs for a model: what `lgc run --random` and `lgc bench` run on, what calibration
on "random" observes and what the planner's kernel timing feeds."""
from __future__ import annotations

import numpy as np


def random_inputs(types: dict, seed: int = 0) -> dict:
    """{name: array} of the given TensorTypes, seeded: floats standard-normal, booleans fair
    coins, integers in [0, 10)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, t in types.items():
        dt = t.dtype.np
        if dt.kind == "f":
            out[name] = rng.standard_normal(t.shape).astype(dt)
        elif dt.kind == "b":
            out[name] = rng.random(t.shape) < 0.5
        else:
            out[name] = rng.integers(0, 10, t.shape).astype(dt)
    return out
