"""lgc.nn's jax.nn activations (selu, celu, hard_tanh, hard_sigmoid, hard_silu, glu, mish)
and softmax / log_softmax with `where`, against NumPy/scipy formulas: values and gradients
(vmap of grad, float64 finite differences), all inside one jitted graph."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp

import lgc
import lgc.nn as nn
import lgc.numpy as lnp

rng = np.random.default_rng(3)
X = np.concatenate([rng.uniform(-6, 6, 200), [-3, 3, -1, 1, 0, 1e-4, -1e-4]]).astype(np.float32)
ALPHA, SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
REFS = {
    "selu": lambda x: SCALE * np.where(x > 0, x, ALPHA * np.expm1(x)),
    "celu": lambda x: np.maximum(x, 0) + 0.5 * np.expm1(np.minimum(x, 0) / 0.5),
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "hard_silu": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
}
ACTIVATIONS = {"selu": nn.selu, "celu": lambda x: nn.celu(x, alpha=0.5), "hard_tanh": nn.hard_tanh,
               "hard_sigmoid": nn.hard_sigmoid, "hard_silu": nn.hard_silu, "mish": nn.mish}
LOGITS = rng.standard_normal((4, 6)).astype(np.float32) * 3
MASK = rng.uniform(size=(4, 6)) > 0.4
MASK[2] = False                                   # a row with nothing kept
ROW_MASK = np.array([[True, False, True, True, False, True]])      # broadcast over rows
WEIGHTS = rng.standard_normal((4, 6)).astype(np.float32)


@lgc.jit
def everything(x, logits, mask, row_mask, weights):
    out = {name: f(x) for name, f in ACTIVATIONS.items()}
    out.update({name + "_grad": lgc.vmap(lgc.grad(f))(x) for name, f in ACTIVATIONS.items()})
    out["glu"] = nn.glu(logits, axis=1)
    out["glu0"] = nn.glu(logits, axis=0)
    out["softmax"] = nn.softmax(logits, where=mask)
    out["log_softmax"] = nn.log_softmax(logits, axis=-1, where=mask)
    out["softmax_rows"] = nn.softmax(logits, where=row_mask)
    out["softmax_axis0"] = nn.softmax(logits, axis=0, where=mask)
    out["softmax_all_kept"] = nn.softmax(logits, where=lnp.ones(logits.shape, bool))
    out["softmax_plain"] = nn.softmax(logits)
    out["softmax_grad"] = lgc.grad(lambda v: lnp.sum(weights * nn.softmax(v, where=mask)))(logits)
    kept = lambda v: lnp.where(mask, nn.log_softmax(v, where=mask), 0.0)  # noqa: E731
    out["log_softmax_grad"] = lgc.grad(lambda v: lnp.sum(weights * kept(v)))(logits)
    return out


@pytest.fixture(scope="module")
def out():
    res = everything(X, LOGITS, MASK, ROW_MASK, WEIGHTS)
    return {k: np.asarray(v).astype(np.float64) for k, v in res.items()}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_values_and_gradients(out, name):
    x = X.astype(np.float64)
    np.testing.assert_allclose(out[name], REFS[name](x), rtol=1e-6, atol=1e-6)
    h = 1e-6
    fd = (REFS[name](x + h) - REFS[name](x - h)) / (2 * h)
    smooth = np.min(np.abs(x[:, None] - np.array([-3, -1, 0, 1, 3])), axis=1) > 1e-3   # kinks
    np.testing.assert_allclose(out[name + "_grad"][smooth], fd[smooth], rtol=1e-5, atol=1e-6)


def test_glu():
    a, b = np.split(LOGITS.astype(np.float64), 2, axis=1)
    np.testing.assert_allclose(np.asarray(nn.glu(LOGITS)), a * sp.expit(b), rtol=1e-6)   # eager
    with pytest.raises(ValueError, match="odd size"):
        nn.glu(np.ones((3, 5), np.float32))


def test_glu_in_jit(out):
    a, b = np.split(LOGITS.astype(np.float64), 2, axis=1)
    np.testing.assert_allclose(out["glu"], a * sp.expit(b), rtol=1e-6)
    a, b = np.split(LOGITS.astype(np.float64), 2, axis=0)
    np.testing.assert_allclose(out["glu0"], a * sp.expit(b), rtol=1e-6)


def _masked_softmax(x, mask, axis=-1):
    e = np.where(mask, np.exp(x - np.max(np.where(mask, x, -np.inf), axis, keepdims=True,
                                         initial=-np.inf)), 0)
    total = e.sum(axis, keepdims=True)
    return np.where(mask, e / np.where(total == 0, 1, total), 0)


def test_softmax_where_matches_jax_semantics(out):
    x = LOGITS.astype(np.float64)
    with np.errstate(invalid="ignore"):
        want = _masked_softmax(x, MASK)
        np.testing.assert_allclose(out["softmax"], want, rtol=1e-6, atol=1e-7)
        assert np.all(out["softmax"][2] == 0)                      # nothing kept: zeros
        logs = np.where(MASK, np.log(np.where(MASK, want, 1)), -np.inf)
        np.testing.assert_allclose(out["log_softmax"], logs, rtol=1e-6, atol=1e-6)
        rows = np.broadcast_to(ROW_MASK, x.shape)
        np.testing.assert_allclose(out["softmax_rows"], _masked_softmax(x, rows), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(out["softmax_axis0"], _masked_softmax(x, MASK, axis=0),
                                   rtol=1e-6, atol=1e-7)


def test_softmax_where_gradients(out):
    """d sum(w * s) / dx = s * (w - sum(w * s)) on kept entries, 0 elsewhere (no NaN for
    the row with nothing kept); for log_softmax, w - s * sum(w)."""
    s = _masked_softmax(LOGITS.astype(np.float64), MASK)
    w = np.where(MASK, WEIGHTS, 0).astype(np.float64)
    want = s * (WEIGHTS - np.sum(WEIGHTS * s, -1, keepdims=True))
    np.testing.assert_allclose(out["softmax_grad"], np.where(MASK, want, 0), rtol=1e-5, atol=1e-6)
    want = np.where(MASK, w - s * w.sum(-1, keepdims=True), 0)
    np.testing.assert_allclose(out["log_softmax_grad"], want, rtol=1e-5, atol=1e-6)


def test_all_kept_is_the_plain_softmax(out):
    np.testing.assert_allclose(out["softmax_all_kept"], out["softmax_plain"], rtol=1e-6)


def test_weak_types():
    """Checked while tracing (make_ir compiles nothing)."""
    def check(x):
        assert nn.selu(1.0).weak_type and nn.hard_tanh(2).weak_type
        assert not nn.mish(x).weak_type and nn.mish(x).dtype == np.float32
        return x
    lgc.make_ir(check)(np.float32(1))
