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
