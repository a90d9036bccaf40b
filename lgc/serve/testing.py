"""Drive a running server with many checked requests: for tests of any Backend (embedded,
Ray with actors being killed) and for fault-injection runs that must count every outcome.

    counts = drive(url, "model", feeds_list, expected_list, concurrency=8)
    # {'correct': 97, 'wrong': 0, 'errors': {503: 3}, 'lost': 0, 'error_messages': [...]}

Each request is sent with tritonclient.http (binary tensors) and its outputs compared with
the expected arrays; a non-200 answer is counted under its status with its message kept.
"""
from __future__ import annotations

import numpy as np


def drive(url: str, model: str, feeds: list[dict[str, np.ndarray]],
          expected: list[dict[str, np.ndarray]], concurrency: int = 8, headers: dict | None = None,
          rtol: float = 1e-4, atol: float = 1e-5, timeout_s: float = 120.0) -> dict:
    """Send every feeds[i] (up to `concurrency` at once); count correct, wrong, errors, lost."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    client = httpclient.InferenceServerClient(url, concurrency=concurrency,
                                              connection_timeout=timeout_s, network_timeout=timeout_s)
    counts = {"correct": 0, "wrong": 0, "errors": {}, "lost": 0, "error_messages": []}
    try:
        for start in range(0, len(feeds), concurrency):
            pending = []
            for f in feeds[start:start + concurrency]:
                inputs = []
                for name, a in f.items():
                    i = httpclient.InferInput(name, list(a.shape), np_to_triton_dtype(a.dtype))
                    i.set_data_from_numpy(a)
                    inputs.append(i)
                pending.append(client.async_infer(model, inputs, headers=dict(headers or {})))
            for k, p in enumerate(pending):
                want = expected[start + k]
                try:
                    r = p.get_result(timeout=timeout_s)
                except InferenceServerException as e:
                    status = e.status()
                    key = int(status) if status and str(status).isdigit() else str(status or "no status")
                    counts["errors"][key] = counts["errors"].get(key, 0) + 1
                    if len(counts["error_messages"]) < 20:
                        counts["error_messages"].append(e.message())
                    continue
                except Exception as e:                 # noqa: BLE001 - no answer at all
                    counts["lost"] += 1
                    if len(counts["error_messages"]) < 20:
                        counts["error_messages"].append(f"{type(e).__name__}: {e}")
                    continue
                ok = all(r.as_numpy(n) is not None and r.as_numpy(n).shape == w.shape
                         and np.allclose(r.as_numpy(n), w, rtol=rtol, atol=atol)
                         for n, w in want.items())
                counts["correct" if ok else "wrong"] += 1
    finally:
        client.close()
    return counts
