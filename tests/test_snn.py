"""lgc.snn against NumPy: neuron dynamics step by step, surrogate gradients against their
formulas, BPTT against a hand-written backward pass, encoder statistics, homeostasis
reaching its target rate, STDP against its rule, and the spike-sparse ops (lgc.ops.spike)
against dense matmul. Each group runs as one jitted function (one OpenCL build)."""
import math

import numpy as np
import pytest

import lgc
import lgc.nn as nn
import lgc.numpy as lnp
import lgc.random as random
import lgc.snn as snn
from lgc.backends.target import GFX803
from lgc.ir.registry import OpError
from lgc.ops.spike import active_positions
from lgc.testing import check_ops, run_op

RNG = np.random.default_rng(0)
f32 = np.float32


# ---- neurons against NumPy simulations of the same equations --------------------------------

def lif_ref(I, beta, thr, reset="subtract"):
    v, spikes, vs = np.zeros(I.shape[1:], f32), [], []
    for i in I:
        v = f32(beta) * v + i
        s = ((v - thr) > 0).astype(f32)
        v = v - s * thr if reset == "subtract" else v * (f32(1) - s)
        spikes.append(s)
        vs.append(v)
    return np.stack(spikes), np.stack(vs)


def alif_ref(I, n: snn.ALIF):
    v, a = np.zeros(I.shape[1:], f32), np.zeros(I.shape[1:], f32)
    spikes, vs, as_ = [], [], []
    for i in I:
        v = f32(n.beta) * v + i
        A = f32(n.threshold) + f32(n.beta_adapt) * a
        s = ((v - A) > 0).astype(f32)
        a = f32(n.rho) * a + f32(1 - n.rho) * s
        v = v - s * A
        spikes.append(s)
        vs.append(v)
        as_.append(a)
    return np.stack(spikes), np.stack(vs), np.stack(as_)


def izhikevich_ref(I, n: snn.Izhikevich):
    v = np.full(I.shape[1:], n.c, f32)
    u = f32(n.b) * v
    spikes, vs, us = [], [], []
    for i in I:
        v1 = v + f32(n.dt) * (f32(0.04) * v * v + f32(5) * v + f32(140) - u + i)
        u1 = u + f32(n.dt) * (f32(n.a) * (f32(n.b) * v - u))
        s = ((v1 - f32(n.v_peak)) > 0).astype(f32)
        v, u = v1 + s * (f32(n.c) - v1), u1 + f32(n.d) * s
        spikes.append(s)
        vs.append(v)
        us.append(u)
    return np.stack(spikes), np.stack(vs), np.stack(us)


LIF_SUB = snn.LIF(tau=5.0)
LIF_ZERO = snn.LIF(tau=8.0, reset="zero", spike=snn.arctan())
ALIF = snn.ALIF(tau=10.0, tau_adapt=15.0, beta_adapt=0.8)
IZH = snn.Izhikevich(dt=1.0)


@lgc.jit
def _dynamics(i_lif, thr, i_izh):
    return {"sub": snn.run(LIF_SUB, i_lif, record=True)[1:],
            "zero": snn.run(LIF_ZERO, i_lif, threshold=thr, record=True)[1:],
            "alif": snn.run(ALIF, i_lif, record=True)[1:],
            "izh": snn.run(IZH, i_izh, record=True)[1:]}


def test_neurons_match_numpy_simulations():
    i_lif = RNG.uniform(-0.2, 0.8, (12, 3, 8)).astype(f32)
    thr = RNG.uniform(0.5, 2.0, 8).astype(f32)                # per neuron, as homeostasis sets
    i_izh = RNG.uniform(0.0, 20.0, (24, 2, 5)).astype(f32)
    got = _dynamics(i_lif, thr, i_izh)

    def same(got_spikes, got_states, want_spikes, *want_states, rtol=1e-5):
        np.testing.assert_array_equal(np.asarray(got_spikes), want_spikes)
        for g, w in zip(got_states, want_states):
            np.testing.assert_allclose(np.asarray(g), w, rtol=rtol, atol=1e-5)
        assert 0.02 < want_spikes.mean() < 0.9          # the runs do spike, and not always
    same(*got["sub"], *lif_ref(i_lif, LIF_SUB.beta, f32(1.0)))
    same(*got["zero"], *lif_ref(i_lif, LIF_ZERO.beta, thr, "zero"))
    same(*got["alif"], *alif_ref(i_lif, ALIF))
    same(*got["izh"], *izhikevich_ref(i_izh, IZH), rtol=1e-4)
    # adaptation fires less than the same LIF would
    assert alif_ref(i_lif, ALIF)[0].sum() < lif_ref(i_lif, ALIF.beta, f32(1.0))[0].sum()


def test_bad_neuron_and_surrogate_settings_are_refused():
    with pytest.raises(ValueError, match="reset must be"):
        snn.LIF(reset="soft")
    with pytest.raises(ValueError, match="tau must be > 0"):
        snn.ALIF(tau=0.0)
    with pytest.raises(ValueError, match="unknown kind 'relu'"):
        snn.Surrogate("relu", 1.0)
    with pytest.raises(ValueError, match="rule must be"):
        snn.fast_sigmoid(rule="fwd")
    with pytest.raises(ValueError, match="path must be"):
        snn.matmul(np.ones((2, 3), f32), np.ones((3, 4), f32), "csr")
    with pytest.raises(ValueError, match="method must be"):
        snn.latency(np.ones(3, f32), 5, method="exp")


# ---- surrogate gradients and BPTT ------------------------------------------------------------

SURROGATES = [snn.fast_sigmoid(10.0), snn.arctan(2.0), snn.triangle(0.5)]
FORMULAS = [lambda x: 1 / (10 * np.abs(x) + 1) ** 2,
            lambda x: 1.0 / (1 + (math.pi / 2 * 2 * x) ** 2),
            lambda x: np.maximum(1 - np.abs(x) / 0.5, 0) / 0.5]
JVP_RULE = [snn.Surrogate(s.kind, s.param, "jvp") for s in SURROGATES]


@lgc.jit
def _surrogates(x, c):
    out = []
    for s, sj in zip(SURROGATES, JVP_RULE):
        out += [s(x), lgc.grad(lambda x: lnp.sum(c * s(x)))(x),
                lgc.grad(lambda x: lnp.sum(c * sj(x)))(x),
                lgc.jvp(sj, (x,), (c,))[1], lgc.jvp(s, (x,), (c,))[1]]
    return out


def test_surrogate_gradients_match_their_formulas():
    x = np.linspace(-1.5, 1.5, 31).astype(f32)           # includes 0 and the triangle's edges
    c = RNG.uniform(0.5, 2.0, x.shape).astype(f32)
    got = iter(_surrogates(x, c))
    for formula in FORMULAS:
        fwd, g_vjp, g_jvp_rule, tangent, tangent_vjp_rule = (np.asarray(next(got)) for _ in range(5))
        np.testing.assert_array_equal(fwd, (x > 0).astype(f32))
        want = c * formula(x.astype(np.float64))
        np.testing.assert_allclose(g_vjp, want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(g_jvp_rule, want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(tangent, want, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(tangent_vjp_rule, 0)  # forward mode sees the heaviside


BPTT_LIF = snn.LIF(tau=4.0, spike=snn.fast_sigmoid(5.0))


@lgc.jit
def _bptt(w, x, c):
    def loss(w):
        _, s = snn.run(BPTT_LIF, x @ w)
        return lnp.sum(c * s)
    return lgc.value_and_grad(loss)(w)


def test_bptt_matches_a_hand_written_backward_pass():
    """grad through run = backprop through time with the surrogate: reset included."""
    T, B, K, N = 12, 3, 5, 4
    x = RNG.uniform(0, 1, (T, B, K)).astype(f32)
    w = RNG.normal(0.3, 0.4, (K, N)).astype(f32)
    c = RNG.normal(0, 1, (T, B, N)).astype(f32)
    value, g = _bptt(w, x, c)
    beta, thr = BPTT_LIF.beta, 1.0
    I = (x.astype(np.float64) @ w)
    v, vs, ss = np.zeros((B, N)), [], []
    for t in range(T):                                    # forward, keeping v before reset
        v = beta * v + I[t]
        s = (v > thr).astype(float)
        vs.append(v)
        ss.append(s)
        v = v - s * thr
    g_w, g_vreset = np.zeros_like(w, dtype=np.float64), np.zeros((B, N))
    for t in reversed(range(T)):
        g_s = c[t] - thr * g_vreset                       # s feeds the loss and the reset
        g_v = g_vreset + g_s / (5 * np.abs(vs[t] - thr) + 1) ** 2
        g_w += x[t].T @ g_v
        g_vreset = beta * g_v                             # into the previous step's v
    np.testing.assert_allclose(float(value), np.sum(c * np.stack(ss)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(g), g_w, rtol=1e-4, atol=1e-4)
    assert 0.05 < np.mean(ss) < 0.9


# ---- encoders -------------------------------------------------------------------------------

LEVELS = np.array([0.0, 0.1, 0.25, 0.5, 0.9, 1.0], f32)


@lgc.jit
def _encode(key, x):
    return (snn.rate(key, x, 50), snn.rate(random.fold_in(key, 1), x, 20, gain=2.0),
            snn.latency(x, 10), snn.latency(x, 10, method="log", tau=3.0))


def test_encoders_statistics_and_spike_times():
    n = 1000
    x = np.repeat(LEVELS, n)
    r50, r2, lat, lat_log = (np.asarray(a) for a in _encode(random.PRNGKey(7), x))
    assert set(np.unique(r50)) <= {0.0, 1.0}
    counts = r50.sum(axis=0).reshape(len(LEVELS), n)     # spikes per pixel over 50 steps
    for p, cnt in zip(LEVELS, counts):
        draws = 50 * n
        rate = cnt.sum() / draws
        assert abs(rate - p) <= 5 * math.sqrt(p * (1 - p) / draws) + 1e-12, (p, rate)
        if 0 < p < 1:   # binomial spread across pixels: steps independent of each other
            assert abs(cnt.var() / (50 * p * (1 - p)) - 1) < 0.2, (p, cnt.var())
    gained = r2.mean(axis=0).reshape(len(LEVELS), n).mean(axis=1)
    np.testing.assert_allclose(gained, np.minimum(2 * LEVELS, 1), atol=0.02)
    # latency: one spike per pixel above the threshold, at the formula's step
    for spikes, steps in ((lat, np.round((f32(1) - x) * f32(9))),
                          (lat_log, np.minimum(np.round(f32(3) * np.log(
                              np.maximum(x, f32(0.01 + 1e-6)) / (np.maximum(x, f32(0.01 + 1e-6)) - f32(0.01)))), 9))):
        fired = x > 0.01
        np.testing.assert_array_equal(spikes.sum(axis=0), fired.astype(f32))
        np.testing.assert_array_equal(spikes.argmax(axis=0)[fired], steps[fired])


# ---- homeostasis and STDP -------------------------------------------------------------------

HOMEO_LIF = snn.LIF(tau=5.0)
TARGET = 0.1


@lgc.jit
def _homeostasis_round(w, thr, key, x, eta):
    _, s = snn.run(HOMEO_LIF, snn.rate(key, x, 10) @ w, threshold=thr)
    r = snn.firing_rate(s)
    return (snn.synaptic_scaling(w, r, TARGET, eta[1]),
            snn.adapt_threshold(thr, r, TARGET, eta[0]), r)


@pytest.mark.parametrize("eta", [(2.0, 0.0), (0.0, 1.0)], ids=["thresholds", "scaling"])
def test_homeostasis_drives_rates_to_target(eta):
    """Neurons from silent to firing at every step end near the target rate (averaged over
    the last 20 rounds, whose sampling error is about 0.005)."""
    K, N = 32, 24
    x = RNG.uniform(0, 1, (16, K)).astype(f32)
    w = (np.abs(RNG.normal(0.2, 0.1, (K, N))) * np.geomspace(0.01, 1.0, N)).astype(f32)
    thr, eta = np.ones(N, f32), np.array(eta, f32)
    key, rates = random.PRNGKey(0), []
    for i in range(80):
        w, thr, r = _homeostasis_round(w, thr, random.fold_in(key, i), x, eta)
        rates.append(np.asarray(r))
    assert (rates[0] == 0).any() and (rates[0] > 0.9).any()   # the start is far off
    err = np.abs(np.mean(rates[-20:], axis=0) - TARGET)
    assert np.median(err) < 0.15 * TARGET and np.mean(err < 0.3 * TARGET) > 0.9, err


def stdp_ref(w, pre, rule: snn.STDP, beta):
    w = w.astype(np.float64)
    B, K = pre.shape[1:]
    v, xp, xq = np.zeros((B, w.shape[1])), np.zeros((B, K)), np.zeros((B, w.shape[1]))
    posts = []
    for p in pre:
        v = beta * v + p @ w
        s = (v > 1.0).astype(float)
        v = v - s
        xp = math.exp(-rule.dt / rule.tau_plus) * xp + p
        xq = math.exp(-rule.dt / rule.tau_minus) * xq + s
        w = np.clip(w + rule.a_plus * xp.T @ s - rule.a_minus * p.T @ xq, rule.w_min, rule.w_max)
        posts.append(s)
    return w, np.stack(posts)


STDP_RULE = snn.STDP(a_plus=0.02, a_minus=0.025, tau_plus=10.0, tau_minus=15.0, w_max=0.8)
STDP_LIF = snn.LIF(tau=5.0)


@lgc.jit
def _stdp(w, pre, pair_pre, pair_post):
    def pairs(tr, s):
        return STDP_RULE.step(tr, *s)
    _, dws = lgc.lax.scan(pairs, STDP_RULE.init(1, 1, 1), (pair_pre, pair_post))
    return snn.stdp_train(STDP_RULE, STDP_LIF, w, pre), lnp.sum(dws, axis=0)


def test_stdp_matches_its_rule():
    T, B, K, N = 24, 2, 12, 5
    pre = (RNG.random((T, B, K)) < 0.25).astype(f32)
    w = RNG.uniform(0.1, 0.6, (K, N)).astype(f32)
    pair = np.zeros((2, 10, 1, 1), f32)
    pair[0, 2], pair[1, 5] = 1, 1                   # a pre spike 3 steps before a post spike
    (w_new, post), ltp = _stdp(w, pre, pair[0], pair[1])
    (_, _), ltd = _stdp(w, pre, pair[1], pair[0])   # and after it
    want_w, want_post = stdp_ref(w, pre, STDP_RULE, STDP_LIF.beta)
    np.testing.assert_array_equal(np.asarray(post), want_post)
    np.testing.assert_allclose(np.asarray(w_new), want_w, rtol=1e-5, atol=1e-6)
    assert 0.05 < want_post.mean() < 0.9 and not np.allclose(want_w, w)
    np.testing.assert_allclose(float(np.asarray(ltp).item()), 0.02 * math.exp(-3 / 10), rtol=1e-5)
    np.testing.assert_allclose(float(np.asarray(ltd).item()), -0.025 * math.exp(-3 / 15), rtol=1e-5)


# ---- spike-sparse matmul --------------------------------------------------------------------

def _spikes(shape, density):
    return ((RNG.random(shape) < density) * RNG.choice([1.0, 0.5], shape)).astype(f32)


def test_spike_ops_match_their_references():
    cases = []
    for shape, n, density in [((5, 33), 10, 0.1), ((2, 3, 64), 128, 0.3), ((7,), 12, 0.5),
                              ((4, 16), 7, 0.0), ((3, 20), 16, 1.0), ((6, 40), 48, 0.05)]:
        x = _spikes(shape, density)
        w = RNG.standard_normal((shape[-1], n)).astype(f32)
        idx = active_positions(x)
        np.testing.assert_allclose(registry_ref(x, idx, w), x @ w, rtol=1e-5, atol=1e-5)
        cases += [("active_indices", [x], {}), ("spike_matmul", [x, idx, w], {})]
    bad = active_positions(_spikes((3, 9), 0.5))
    bad[0, 0] = 99                                            # out of range: clamped
    cases.append(("spike_matmul", [_spikes((3, 9), 0.5), bad, np.ones((9, 4), f32)], {}))
    check_ops(cases)
    check_ops(cases[:4], target=GFX803)                       # the kernels as a GPU gets them


def registry_ref(x, idx, w):
    from lgc.testing import reference_op
    return reference_op("spike_matmul", [x, idx, w])[0]


def test_spike_op_type_errors():
    x = np.zeros((2, 8), f32)
    with pytest.raises(OpError, match=r"spike_matmul: x \[2, 8\] and W \[7, 3\] do not fit"):
        run_op("spike_matmul", [x, active_positions(x), np.zeros((7, 3), f32)])
    with pytest.raises(OpError, match="idx must be int32"):
        run_op("spike_matmul", [x, np.zeros((2, 8), np.int64), np.zeros((8, 3), f32)])
    with pytest.raises(OpError, match="active_indices: x must be float"):
        run_op("active_indices", [np.zeros((2, 8), np.int32)])


@lgc.jit
def _sparse_in_programs(s, w, b, c, s3):
    fused = nn.relu(snn.spike_matmul(s, w) + b)               # the store's epilogue
    g = lgc.grad(lambda s, w: lnp.sum(c * snn.matmul(s, w, "sparse")), argnums=(0, 1))(s, w)
    return fused, g, lgc.vmap(snn.spike_matmul, in_axes=(0, None))(s3, w)


def test_spike_matmul_fuses_differentiates_and_batches():
    s, w = _spikes((6, 32), 0.2), RNG.standard_normal((32, 16)).astype(f32)
    b, c = RNG.standard_normal(16).astype(f32), RNG.standard_normal((6, 16)).astype(f32)
    s3 = _spikes((3, 4, 32), 0.2)
    fused, (gs, gw), batched = _sparse_in_programs(s, w, b, c, s3)
    np.testing.assert_allclose(np.asarray(fused), np.maximum(s @ w + b, 0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(gs), c @ w.T, rtol=1e-5, atol=1e-5)   # silent inputs too
    np.testing.assert_allclose(np.asarray(gw), s.T @ c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(batched), s3 @ w, rtol=1e-5, atol=1e-5)


def test_choose_keeps_the_faster_measured_path():
    w = RNG.standard_normal((64, 32)).astype(f32)
    c = snn.choose(w, _spikes((64, 64), 0.05), runs=3)
    assert c.dense_seconds > 0 and c.sparse_seconds > 0
    assert c.path == ("sparse" if c.sparse_seconds < c.dense_seconds else "dense")


def test_spike_matmul_vmapped_over_its_weights_takes_the_per_example_rule():
    """A batch of weight matrices has no specialised rule: the loop rule applies spike_matmul
    to each."""
    rng = np.random.default_rng(3)
    s = (rng.random((4, 6)) < 0.3).astype(np.float32)
    ws = rng.standard_normal((3, 6, 5)).astype(np.float32)
    got = lgc.jit(lgc.vmap(lambda w: snn.sparse.spike_matmul(lnp.asarray(s), w)))(ws)
    np.testing.assert_allclose(np.asarray(got), np.einsum("ij,bjk->bik", s, ws), rtol=1e-5, atol=1e-5)
