"""eval_graph: a traced graph re-evaluated eagerly and under jit; an ONNX model used as a
function inside lnp code (one IR for both frontends)."""
from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import make_small_model

import lgc
import lgc.numpy as lnp
from lgc.trace import eval_graph

X = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)


def test_traced_graph_round_trip():
    def f(x, y):
        return lnp.tanh(x @ y.T).sum(axis=0), lnp.argmax(x, axis=1)

    g = lgc.make_ir(f)(X, X)
    want = f(X, X)
    for got in (eval_graph(g, X, X), lgc.jit(lambda a, b: eval_graph(g, a, b))(X, X)):
        np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want[0]), rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
    with pytest.raises(TypeError, match="f32\\[3,4\\]"):
        eval_graph(g, X[:2], X)


def test_onnx_model_inside_lnp_code():
    g = lgc.onnx.load(make_small_model(), input_shapes={"x": (3, 4)})
    y, z = eval_graph(g, X)                           # eager, op by op
    ref_y, ref_z = lgc.compile(g)(X)
    np.testing.assert_allclose(np.asarray(y), ref_y, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(z), ref_z, rtol=1e-6)
    f = lgc.jit(lambda x: lnp.sum(eval_graph(g, x * 2.0)[1], axis=1))   # inlined into jit
    _, z2 = lgc.compile(g)(X * 2)
    np.testing.assert_allclose(np.asarray(f(X)), z2.sum(1), rtol=1e-5)


def test_a_transformation_plugs_in_as_a_trace():
    """The hooks grad/vmap will use: a Trace subclass at its own level that sees every op
    (here it logs them) and forwards to the trace below, eagerly or inside jit."""
    from lgc.trace.core import Trace, Tracer, bind_list, full_raise, get_aval, new_main

    class LogTracer(Tracer):
        def __init__(self, trace, val):
            self._trace, self.val, self.aval = trace, val, get_aval(val)

    class LogTrace(Trace):
        def pure(self, x):
            return LogTracer(self, x)

        lift = pure

        def process_op(self, op, tracers, attrs, weak):
            self.main.global_data.append(op)
            return [LogTracer(self, o) for o in bind_list(op, [t.val for t in tracers], attrs, weak)]

    def log_ops(f, x):
        with new_main(LogTrace, []) as main:
            trace = LogTrace(main)
            out = full_raise(trace, f(LogTracer(trace, x)))
            return out.val, main.global_data

    f = lambda x: lnp.sum(lnp.sin(x) * 2.0, axis=0)   # noqa: E731
    y, ops = log_ops(f, lnp.asarray(X))
    assert ops == ["sin", "mul", "reduce_sum"]
    np.testing.assert_allclose(np.asarray(y), (np.sin(X) * 2).sum(0), rtol=1e-6)
    jitted = lgc.jit(lambda x: log_ops(f, x)[0])
    np.testing.assert_allclose(np.asarray(jitted(X)), (np.sin(X) * 2).sum(0), rtol=1e-6)
    assert "sin" in str(lgc.make_ir(lambda x: log_ops(f, x)[0])(X))
