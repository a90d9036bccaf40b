"""lgc.nn against NumPy references, eagerly and inside one jitted graph."""
from __future__ import annotations

import math

import numpy as np
import pytest

import lgc
import lgc.nn as nn
import lgc.numpy as lnp

rng = np.random.default_rng(1)
x = rng.standard_normal((3, 5)).astype(np.float32)
img = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)
w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
wg = rng.standard_normal((6, 2, 3, 2)).astype(np.float32)
bias = rng.standard_normal(6).astype(np.float32)
labels = np.array([0, 3, -1, 7, 2], np.int32)
ids = np.array([0, 2, 2, 1, 5, -1], np.int32)
data = rng.standard_normal((6, 3)).astype(np.float32)
gamma, beta = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)


def np_conv(x, w, strides, pads, dil, groups):
    r = x.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[r + i]) for i in range(r)])
    n, c = x.shape[:2]
    o, cg = w.shape[:2]
    k = w.shape[2:]
    out_sp = [(xp.shape[2 + i] - (k[i] - 1) * dil[i] - 1) // strides[i] + 1 for i in range(r)]
    out = np.zeros((n, o, *out_sp), np.float64)
    og = o // groups
    for pos in np.ndindex(*out_sp):
        win = tuple(slice(pos[i] * strides[i], pos[i] * strides[i] + (k[i] - 1) * dil[i] + 1, dil[i])
                    for i in range(r))
        for g in range(groups):
            patch = xp[(slice(None), slice(g * cg, (g + 1) * cg)) + win]
            out[(slice(None), slice(g * og, (g + 1) * og)) + pos] = np.tensordot(
                patch, w[g * og:(g + 1) * og], (list(range(1, r + 2)), list(range(1, r + 2))))
    return out.astype(np.float32)


def np_pool(x, k, s, pads, fn, fill):
    xp = np.pad(x, [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])], constant_values=fill)
    oh, ow = (xp.shape[2] - k[0]) // s[0] + 1, (xp.shape[3] - k[1]) // s[1] + 1
    out = np.empty(x.shape[:2] + (oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = fn(xp[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]], axis=(2, 3))
    return out


def _softmax(v, axis=-1):
    e = np.exp(v - v.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _erf(v):
    return np.vectorize(math.erf)(v.astype(np.float64)).astype(np.float32)


def _segsum():
    out = np.zeros((4, 3), np.float32)
    for i, s in enumerate(ids):
        if 0 <= s < 4:
            out[s] += data[i]
    return out


def _ln():
    m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * gamma + beta


CASES = {
    "relu": (lambda a: nn.relu(a["x"]), np.maximum(x, 0)),
    "sigmoid": (lambda a: nn.sigmoid(a["x"]), 1 / (1 + np.exp(-x))),
    "silu": (lambda a: nn.silu(a["x"]), x / (1 + np.exp(-x))),
    "tanh": (lambda a: nn.tanh(a["x"]), np.tanh(x)),
    "gelu_tanh": (lambda a: nn.gelu(a["x"]),
                  0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))),
    "gelu_erf": (lambda a: nn.gelu(a["x"], approximate=False), 0.5 * x * (1 + _erf(x / np.sqrt(2)))),
    "softmax": (lambda a: nn.softmax(a["x"]), _softmax(x)),
    "softmax_axes": (lambda a: nn.softmax(a["x"], axis=(0, 1)), _softmax(x.reshape(-1)).reshape(x.shape)),
    "log_softmax": (lambda a: nn.log_softmax(a["x"], axis=0), np.log(_softmax(x, 0))),
    "logsumexp": (lambda a: nn.logsumexp(a["x"], axis=1), np.log(np.exp(x).sum(1))),
    "logsumexp_all": (lambda a: nn.logsumexp(a["x"] * 100.0), (x * 100).max()
                      + np.log(np.exp(x * 100 - (x * 100).max()).sum())),
    "one_hot": (lambda a: nn.one_hot(a["labels"], 4), (labels[:, None] == np.arange(4)).astype(np.float32)),
    "layer_norm": (lambda a: nn.layer_norm(a["x"], a["gamma"], a["beta"]), _ln()),
    "conv_valid": (lambda a: nn.conv(a["img"], a["w"]), np_conv(img, w, (1, 1), (0,) * 4, (1, 1), 1)),
    "conv_same_strided_bias": (lambda a: nn.conv(a["img"], a["w"], strides=2, padding="SAME",
                                                  bias=a["bias"]),
                               np_conv(img, w, (2, 2), (1, 0, 1, 1), (1, 1), 1)
                               + bias[None, :, None, None]),
    "conv_dilated_groups": (lambda a: nn.conv(a["img"], a["wg"], padding=((1, 0), (2, 1)),
                                               dilation=(2, 1), groups=2),
                            np_conv(img, wg, (1, 1), (1, 2, 0, 1), (2, 1), 2)),
    "max_pool": (lambda a: nn.max_pool(a["img"], (2, 2)),
                 np_pool(img, (2, 2), (2, 2), (0,) * 4, np.max, -np.inf)),
    "max_pool_same": (lambda a: nn.max_pool(a["img"], (3, 3), strides=(2, 1), padding="SAME"),
                      np_pool(img, (3, 3), (2, 1), (1, 1, 1, 1), np.max, -np.inf)),
    "avg_pool": (lambda a: nn.avg_pool(a["img"], (3, 2), strides=1, padding=((1, 1), (0, 1))),
                 np_pool(img, (3, 2), (1, 1), (1, 0, 1, 1), np.mean, 0.0)),
    "segment_sum": (lambda a: nn.segment_sum(a["data"], a["ids"], 4), _segsum()),
    "softplus": (lambda a: nn.softplus(a["x"]), np.log1p(np.exp(x))),
    "log_sigmoid": (lambda a: nn.log_sigmoid(a["x"]), -np.log1p(np.exp(-x))),
    "elu": (lambda a: nn.elu(a["x"]), np.where(x > 0, x, np.expm1(x))),
    "leaky_relu": (lambda a: nn.leaky_relu(a["x"], 0.1), np.where(x >= 0, x, 0.1 * x)),
    "relu6": (lambda a: nn.relu6(a["x"] * 5), np.clip(x * 5, 0, 6)),
    "standardize": (lambda a: nn.standardize(a["x"], axis=0),
                    (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)),
    "conv1d": (lambda a: nn.conv(a["img"][:, :, 0], a["w"][:, :, 1], padding="SAME"),
               np_conv(img[:, :, 0], w[:, :, 1], (1,), (1, 1), (1,), 1)),
}

ARGS = {"x": x, "img": img, "w": w, "wg": wg, "bias": bias, "labels": labels, "ids": ids,
        "data": data, "gamma": gamma, "beta": beta}


def test_nn_matches_numpy():
    eager = {k: f({n: lnp.asarray(v) for n, v in ARGS.items()}) for k, (f, _) in CASES.items()}
    jitted = lgc.jit(lambda a: {k: f(a) for k, (f, _) in CASES.items()})(ARGS)
    for name, (_, want) in CASES.items():
        for mode, got in (("eager", eager[name]), ("jit", jitted[name])):
            got = np.asarray(got)
            assert got.shape == want.shape and got.dtype == np.float32, (name, mode, got.shape)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{name} {mode}")


@pytest.mark.parametrize("padding,n,s", [("SAME", 7, 2), ("SAME", 6, 3), ("VALID", 7, 2)])
def test_conv_padding_shapes(padding, n, s):
    """SAME gives ceil(n / s) outputs, VALID floor((n - k) / s) + 1 (as lax.conv)."""
    g = lgc.make_ir(lambda a, b: nn.conv(a, b, strides=s, padding=padding))(
        np.zeros((1, 1, n, n), np.float32), np.zeros((1, 1, 3, 3), np.float32))
    want = -(-n // s) if padding == "SAME" else (n - 3) // s + 1
    assert g.outputs[0].shape == (1, 1, want, want)


def test_encoder_block_jit_equals_numpy():
    """A BERT-style encoder layer written in lgc.numpy/lgc.nn, jitted, against NumPy."""
    B, S, D, H = 2, 5, 8, 2
    p = {k: rng.standard_normal(s).astype(np.float32) * 0.3 for k, s in
         {"wq": (D, D), "wk": (D, D), "wv": (D, D), "wo": (D, D), "w1": (D, 16), "w2": (16, D),
          "g1": (D,), "b1": (D,), "g2": (D,), "b2": (D,)}.items()}
    xs = rng.standard_normal((B, S, D)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)

    def layer(m, softmax, ln, gelu, p, x, mask):
        def heads(t):
            return m.transpose(t.reshape(B, S, H, D // H), (0, 2, 1, 3))
        q, k, v = heads(x @ p["wq"]), heads(x @ p["wk"]), heads(x @ p["wv"])
        s = m.einsum("bhqd,bhkd->bhqk", q, k) / np.float32(np.sqrt(D // H))
        s = s + (1.0 - mask[:, None, None, :]) * -1e9
        a = m.einsum("bhqk,bhkd->bhqd", softmax(s), v)
        a = m.transpose(a, (0, 2, 1, 3)).reshape(B, S, D) @ p["wo"]
        h = ln(x + a, p["g1"], p["b1"])
        return ln(h + gelu(h @ p["w1"]) @ p["w2"], p["g2"], p["b2"])

    def np_ln(x, g, b):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * g + b

    def np_gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

    want = layer(np, _softmax, np_ln, np_gelu, p, xs, mask)
    f = lgc.jit(lambda p, x, mask: layer(lnp, nn.softmax, nn.layer_norm, nn.gelu, p, x, mask))
    np.testing.assert_allclose(np.asarray(f(p, xs, mask)), want, rtol=1e-4, atol=1e-5)


def test_dot_product_attention_and_initializers():
    import lgc.random as random
    B, T, S, N, H = 2, 3, 4, 2, 5
    q = rng.standard_normal((B, T, N, H)).astype(np.float32)
    k = rng.standard_normal((B, S, N, H)).astype(np.float32)
    v = rng.standard_normal((B, S, N, H)).astype(np.float32)
    mask = rng.random((B, 1, T, S)) > 0.3
    mask[..., 0] = True

    def ref(causal):
        lg = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(H)
        m = mask & (np.tri(T, S, dtype=bool) if causal else True)
        lg = np.where(m, lg, -np.inf)
        return np.einsum("bnts,bsnh->btnh", _softmax(lg), v)

    f = lgc.jit(lambda q, k, v, m: (nn.dot_product_attention(q, k, v, mask=m),
                                    nn.dot_product_attention(q, k, v, mask=m, is_causal=True)))
    for got, causal in zip(f(q, k, v, mask), (False, True)):
        np.testing.assert_allclose(np.asarray(got), ref(causal), rtol=1e-5, atol=1e-6)

    key = random.PRNGKey(0)
    w = np.asarray(nn.initializers.he_normal()(key, (256, 512)))
    assert abs(w.std() / np.sqrt(2 / 256) - 1) < 0.02 and np.abs(w).max() <= 2 * np.sqrt(2 / 256) / 0.8796
    u = np.asarray(nn.initializers.glorot_uniform()(key, (30, 40)))
    assert np.abs(u).max() <= np.sqrt(6 / 70) and u.std() > 0.8 * np.sqrt(2 / 70)
    t = np.asarray(random.truncated_normal(key, -1.0, 2.0, (20000,)))
    assert t.min() > -1 and t.max() < 2 and abs(t.mean() - 0.2296) < 0.02
