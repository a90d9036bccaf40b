"""One compiled model called from many threads at once gives each caller its own answer.

Eight threads start together on a barrier (so first calls, and the compiles and caches
behind them, race too) and make 250 calls each, every thread with inputs of its own; each
result is compared with NumPy on that thread's input, so results that mix calls show as
wrong. The models are small MLPs, so the whole file takes seconds on PoCL.
"""
from __future__ import annotations

import sys
import threading

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import lgc
import lgc.lax
import lgc.numpy as lnp

THREADS, CALLS, ROWS = 8, 250, 3
IN, HIDDEN, OUT = 16, 32, 8
RNG = np.random.default_rng(12)
W1 = (RNG.standard_normal((IN, HIDDEN)) / 4).astype(np.float32)
B1 = RNG.standard_normal(HIDDEN).astype(np.float32)
W2 = (RNG.standard_normal((HIDDEN, OUT)) / 4).astype(np.float32)
B2 = RNG.standard_normal(OUT).astype(np.float32)


def mlp_reference(x: np.ndarray) -> np.ndarray:
    h = np.maximum(x.astype(np.float64) @ W1 + B1, 0)
    return np.tanh(h @ W2 + B2)


def mlp_onnx(path) -> None:
    """The same MLP as ONNX: MatMul, Add, Relu, MatMul, Add, Tanh, batch symbolic."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["xw1"]),
             helper.make_node("Add", ["xw1", "b1"], ["pre1"]),
             helper.make_node("Relu", ["pre1"], ["h"]),
             helper.make_node("MatMul", ["h", "w2"], ["hw2"]),
             helper.make_node("Add", ["hw2", "b2"], ["pre2"]),
             helper.make_node("Tanh", ["pre2"], ["y"])]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", IN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", OUT])],
        [numpy_helper.from_array(a, n) for a, n in zip((W1, B1, W2, B2), ("w1", "b1", "w2", "b2"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def hammer(call, reference=mlp_reference, shape=(ROWS, IN)) -> tuple[int, list[str]]:
    """(wrong results, errors) of THREADS threads making CALLS calls each, all at once."""
    barrier = threading.Barrier(THREADS)
    wrong = [0] * THREADS
    errors: list[str] = []

    def worker(t: int) -> None:
        rng = np.random.default_rng(100 + t)
        barrier.wait()
        for _ in range(CALLS):
            x = (rng.standard_normal(shape) + t).astype(np.float32)   # this thread's own
            try:
                got = np.asarray(call(x))
            except Exception as e:   # noqa: BLE001 (every failure is counted, none hidden)
                errors.append(f"{type(e).__name__}: {e}")
                continue
            want = reference(x)
            if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5):
                wrong[t] += 1

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(THREADS)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)      # switch threads often, so that races show in few calls
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    return sum(wrong), errors


def check(call, **kw) -> None:
    wrong, errors = hammer(call, **kw)
    assert (wrong, len(errors)) == (0, 0), \
        f"{wrong} wrong results and {len(errors)} errors in {THREADS * CALLS} calls: {errors[:2]}"


def test_compiled_onnx_model(tmp_path):
    mlp_onnx(tmp_path / "mlp.onnx")
    model = lgc.compile(tmp_path / "mlp.onnx")       # nothing compiled yet: first calls race
    check(model)


def test_loaded_artifact(tmp_path):
    mlp_onnx(tmp_path / "mlp.onnx")
    x_type = lgc.api.TensorType(lgc.ir.dtypes.f32, (ROWS, IN))
    lgc.compile(tmp_path / "mlp.onnx").save(tmp_path / "mlp.lgc", {"x": x_type})
    exe = lgc.load(tmp_path / "mlp.lgc")
    exe.executor.max_concurrency = 2                 # 8 callers, 2 buffer sets: most wait
    check(exe)


def test_jitted_function():
    @lgc.jit
    def mlp(x):
        return lnp.tanh(lnp.maximum(x @ W1 + B1, 0) @ W2 + B2)
    check(mlp)                                       # traced and compiled under the race
    assert mlp.trace_count == 1


def test_executable_with_a_while_loop():
    """A host-driven loop (its cond and body run in sets of their own per buffer set),
    whose trip count depends on the thread's input."""
    def doublings(v):
        return lgc.lax.while_loop(lambda u: lnp.max(lnp.abs(u)) < 50.0, lambda u: u * 2.0, v)

    def reference(x):
        while np.max(np.abs(x)) < 50:
            x = x * 2
        return x
    check(lgc.export(doublings, np.ones((ROWS, IN), np.float32)), reference=reference)


def test_eager_ops():
    """Op by op outside jit: the one-op programs and their cache are shared by all threads.
    An odd shape, so that these programs are first built here, under the race."""
    def eager(x):
        return lnp.tanh(x * 0.5 + 1.0) - lnp.sin(x)
    check(eager, reference=lambda x: np.tanh(x * 0.5 + 1.0) - np.sin(x), shape=(5, 7))


def test_a_trace_in_one_thread_does_not_capture_another_threads_ops():
    """While thread A is inside a jit trace, thread B's eager ops still run eagerly (the
    trace stacks are per thread, as in JAX); B's values never enter A's graph."""
    inside, done = threading.Event(), threading.Event()
    seen = {}

    @lgc.jit
    def traced(x):
        inside.set()
        done.wait(timeout=30)
        return x * 3.0

    def other():
        inside.wait(timeout=30)
        try:
            y = lnp.asarray(np.arange(4, dtype=np.float32)) * 2.0
            seen["value"] = np.asarray(y)
        except Exception as e:   # noqa: BLE001 (recorded and asserted below)
            seen["error"] = f"{type(e).__name__}: {e}"
        done.set()

    b = threading.Thread(target=other, daemon=True)
    b.start()
    out = traced(np.ones(4, np.float32))
    b.join(timeout=30)
    assert "error" not in seen, seen.get("error")
    np.testing.assert_array_equal(seen["value"], np.arange(4, dtype=np.float32) * 2)
    np.testing.assert_array_equal(np.asarray(out), np.full(4, 3, np.float32))
    assert len(traced.lower(np.ones(4, np.float32)).graph.nodes) <= 3   # x * 3 and its constant
