"""lgc.checkpoint (jax.checkpoint / remat): gradients equal those without it, and the
backward graph recomputes the forward values the policy does not save."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import lgc
import lgc.lax as lax
import lgc.numpy as lnp
from lgc.passes.manager import optimize

policies = lgc.checkpoint_policies
rng = np.random.default_rng(0)
X = rng.standard_normal((3, 4)).astype(np.float32)
W = rng.standard_normal((4, 5)).astype(np.float32)


def layer(x, w):
    h = lnp.sin(x @ w)
    return lnp.sum(lnp.tanh(h) * h)


def _ops(f, *args):
    return Counter(n.op for n in lgc.make_ir(f)(*args).nodes)


def test_backward_recomputes_what_the_policy_does_not_save():
    plain = _ops(lgc.grad(layer, argnums=(0, 1)), X, W)
    counts = {name: _ops(lgc.grad(lgc.checkpoint(layer, policy=pol), argnums=(0, 1)), X, W)
              for name, pol in (("nothing", None), ("dots", policies.dots_saveable),
                                ("everything", policies.everything_saveable),
                                ("sin", lambda op, *a, **k: op == "sin"))}
    assert plain["matmul"] == 3 and plain["sin"] == 1 and plain["tanh"] == 1
    assert counts["nothing"]["matmul"] == 4 and counts["nothing"]["sin"] == 2
    assert counts["nothing"]["tanh"] == 2
    assert counts["dots"]["matmul"] == 3 and counts["dots"]["sin"] == 2
    assert counts["sin"]["matmul"] == 4 and counts["sin"]["sin"] == 1
    assert counts["everything"] == plain
    # jit's optimiser keeps the recomputation (CSE cannot merge it into the forward pass,
    # which value_and_grad needs) unless prevent_cse=False
    for prevent, want in ((True, 4), (False, 3)):
        g = lgc.make_ir(lgc.value_and_grad(lgc.checkpoint(layer, prevent_cse=prevent),
                                           argnums=(0, 1)))(X, W)
        assert Counter(n.op for n in optimize(g, 3).nodes)["matmul"] == want


def _grads(f, *args, argnums=(0, 1)):
    return [np.asarray(g) for g in lgc.grad(f, argnums=argnums)(*args)]


def test_results_equal_without_checkpoint():
    def model(x, w, scale):
        w2 = w * 0.5                      # read by the checkpointed block from its closure

        @lgc.checkpoint
        def block(h):
            a = lnp.tanh(h @ w2)
            return a * lnp.exp(-a), a     # two outputs
        h, a = block(x)
        i = lnp.argmax(a, axis=1)         # integers through it, no gradient
        return lnp.sum(h) + lnp.sum(lnp.take_along_axis(a, i[:, None], 1)) * scale

    def model_plain(x, w, scale):
        w2 = w * 0.5
        a = lnp.tanh(x @ w2)
        h = a * lnp.exp(-a)
        i = lnp.argmax(a, axis=1)
        return lnp.sum(h) + lnp.sum(lnp.take_along_axis(a, i[:, None], 1)) * scale

    want = _grads(model_plain, X, W, 2.0)
    for f in (model, lgc.jit(model)):
        for g, w in zip(_grads(f, X, W, 2.0), want):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    # second order, inside vmap, and with an input returned as it is
    g2 = lgc.grad(lgc.grad(lambda x: lgc.checkpoint(lambda v: lnp.sin(v) ** 3)(x)))(0.7)
    np.testing.assert_allclose(float(g2), 6 * np.sin(0.7) * np.cos(0.7) ** 2
                               - 3 * np.sin(0.7) ** 3, rtol=1e-5)
    per = lgc.vmap(lgc.grad(lgc.checkpoint(lambda r: lnp.sum(lnp.sin(r) * r))))(X)
    np.testing.assert_allclose(np.asarray(per), np.sin(X) + X * np.cos(X), rtol=1e-5)

    def passthrough(x, w):
        y, same = lgc.checkpoint(lambda a, b: (lnp.sum(lnp.cos(a @ b)), b))(x, w)
        return y + lnp.sum(same * same)
    g = _grads(passthrough, X, W)
    np.testing.assert_allclose(g[1], -(X.T @ np.sin(X @ W)) + 2 * W, rtol=1e-5, atol=1e-6)


def test_checkpoint_with_branches_and_nesting():
    def f(x):
        inner = lgc.checkpoint(lambda v: lnp.sum(lnp.sqrt(v) * v))
        return lax.cond(lnp.sum(x) > 0, inner, lambda v: lnp.sum(-2 * v), x)

    for x, want in ((np.zeros(3, np.float32), -2.0), (np.full(3, 4.0, np.float32), 3.0)):
        for fn in (f, lgc.checkpoint(f), lgc.jit(lgc.checkpoint(lgc.checkpoint(f)))):
            np.testing.assert_allclose(np.asarray(lgc.grad(fn)(x)), want, rtol=1e-6)


def test_policies_and_decorator_forms():
    assert policies.dots_saveable("matmul") and not policies.dots_saveable("sin")
    assert policies.nothing_saveable("matmul") is False
    assert policies.everything_saveable("sin") is True
    assert lgc.remat is lgc.checkpoint

    @lgc.checkpoint(policy=policies.dots_saveable)
    def f(x, w):
        return layer(x, w)
    for g, w in zip(_grads(f, X, W), _grads(layer, X, W)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    assert float(f(X, W)) == pytest.approx(float(layer(X, W)), rel=1e-6)
