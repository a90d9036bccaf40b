"""lgc.optim against NumPy re-implementations of optax's formulas: each optimizer for a few
steps on a two-leaf pytree (all of them stepped inside one lgc.jit), the schedules at the
counts around their boundaries, and a small model trained with Adam under jit."""
from __future__ import annotations

import math

import numpy as np
import pytest

import lgc
import lgc.numpy as lnp
import lgc.optim as optim
import lgc.tree_util as tu

rng = np.random.default_rng(0)
STEPS = 5
PARAMS = {"w": rng.standard_normal((3, 4)).astype(np.float32),
          "b": rng.standard_normal(4).astype(np.float32)}
GRADS = [{k: (rng.standard_normal(v.shape) * 3).astype(np.float32) for k, v in PARAMS.items()}
         for _ in range(STEPS)]


# ---- NumPy references: one function per optimizer, state in a dict, float64 ------------------

def ref_sgd(lr, momentum=None, nesterov=False):
    def step(p, g, s, k):
        if momentum is not None:
            s["t"] = g + momentum * s.get("t", 0)
            g = g + momentum * s["t"] if nesterov else s["t"]
        return p - lr(k) * g
    return step


def ref_adam(lr, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, nesterov=False, wd=0.0):
    def step(p, g, s, k):
        s["m"] = (1 - b1) * g + b1 * s.get("m", 0)
        s["v"] = (1 - b2) * g * g + b2 * s.get("v", 0)
        n = k + 1
        if nesterov:
            m_hat = b1 * s["m"] / (1 - b1 ** (n + 1)) + (1 - b1) * g / (1 - b1 ** n)
        else:
            m_hat = s["m"] / (1 - b1 ** n)
        u = m_hat / (np.sqrt(s["v"] / (1 - b2 ** n) + eps_root) + eps) + wd * p
        return p - lr(k) * u
    return step


def ref_rmsprop(lr, decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt=True, centered=False,
                momentum=None, bias_correction=False):
    def step(p, g, s, k):
        s["v"] = (1 - decay) * g * g + decay * s.get("v", initial_scale)
        s["m"] = (1 - decay) * g + decay * s.get("m", 0)
        corr = 1 - decay ** (k + 1) if bias_correction else 1
        v, m = s["v"] / corr, s["m"] / corr
        var = v - m * m if centered else v
        u = g / np.sqrt(var + eps) if eps_in_sqrt else g / (np.sqrt(var) + eps)
        u = lr(k) * u
        if momentum is not None:
            s["t"] = u + momentum * s.get("t", 0)
            u = s["t"]
        return p - u
    return step


def ref_clipped_sgd(lr, max_norm):
    def step(p_tree, g_tree, s, k):
        norm = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in g_tree.values()))
        scale = 1.0 if norm < max_norm else max_norm / norm
        return {n: p_tree[n] - lr * g_tree[n] * scale for n in p_tree}
    return step


def const(v):
    return lambda k: v


def ref_warmup_cosine(init, peak, warmup, decay_steps, end=0.0):
    def f(k):
        if k < warmup:
            return init + (peak - init) * k / warmup
        t = min(k - warmup, decay_steps - warmup)
        return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * t / (decay_steps - warmup)))
    return f


OPTIMIZERS = {
    "sgd": (optim.sgd(0.1), ref_sgd(const(0.1))),
    "sgd_momentum": (optim.sgd(0.1, momentum=0.9), ref_sgd(const(0.1), 0.9)),
    "sgd_nesterov": (optim.sgd(0.05, momentum=0.8, nesterov=True), ref_sgd(const(0.05), 0.8, True)),
    "momentum": (optim.momentum(0.1, 0.5), ref_sgd(const(0.1), 0.5)),
    "adam": (optim.adam(1e-2), ref_adam(const(1e-2))),
    "adam_schedule_nesterov": (
        optim.adam(optim.warmup_cosine_decay_schedule(0.0, 0.1, 2, 6, 0.01), b1=0.8,
                   eps_root=1e-6, nesterov=True),
        ref_adam(ref_warmup_cosine(0.0, 0.1, 2, 6, 0.01), b1=0.8, eps_root=1e-6, nesterov=True)),
    "adamw": (optim.adamw(1e-2, weight_decay=0.1), ref_adam(const(1e-2), wd=0.1)),
    "rmsprop": (optim.rmsprop(1e-2), ref_rmsprop(const(1e-2))),
    "rmsprop_centered": (
        optim.rmsprop(1e-2, decay=0.8, eps=1e-3, centered=True, momentum=0.9, eps_in_sqrt=False),
        ref_rmsprop(const(1e-2), 0.8, 1e-3, centered=True, momentum=0.9, eps_in_sqrt=False)),
    "rmsprop_corrected": (
        optim.rmsprop(1e-2, initial_scale=0.1, bias_correction=True),
        ref_rmsprop(const(1e-2), initial_scale=0.1, bias_correction=True)),
}
CLIPPED = optim.chain(optim.clip_by_global_norm(2.0), optim.sgd(0.1))
MASKED = optim.adamw(1e-2, weight_decay=0.5, mask={"w": True, "b": False})


@lgc.jit
def step_all(params, states, grads):
    """One update of every optimizer above, its own params and state each."""
    new_params, new_states = {}, {}
    for name, opt in [*((n, o) for n, (o, _) in OPTIMIZERS.items()),
                      ("clipped", CLIPPED), ("masked", MASKED)]:
        updates, new_states[name] = opt.update(grads, states[name], params[name])
        new_params[name] = optim.apply_updates(params[name], updates)
    return new_params, new_states


@pytest.fixture(scope="module")
def trajectories():
    """Parameters after each of STEPS updates, per optimizer (lgc)."""
    names = [*OPTIMIZERS, "clipped", "masked"]
    opts = {**{n: o for n, (o, _) in OPTIMIZERS.items()}, "clipped": CLIPPED, "masked": MASKED}
    params = {n: PARAMS for n in names}
    states = {n: opts[n].init(PARAMS) for n in names}
    out = []
    for g in GRADS:
        params, states = step_all(params, states, g)
        out.append(tu.tree_map(np.asarray, params))
    return out


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_numpy(trajectories, name):
    ref_step = OPTIMIZERS[name][1]
    p = {k: v.astype(np.float64) for k, v in PARAMS.items()}
    states = {k: {} for k in PARAMS}
    for k, g in enumerate(GRADS):
        p = {n: ref_step(p[n], g[n].astype(np.float64), states[n], k) for n in p}
        for n in p:
            np.testing.assert_allclose(trajectories[k][name][n], p[n], rtol=2e-5, atol=2e-6,
                                       err_msg=f"{name} step {k + 1} leaf {n}")


def test_clip_by_global_norm_and_mask(trajectories):
    ref = ref_clipped_sgd(0.1, 2.0)
    p = {k: v.astype(np.float64) for k, v in PARAMS.items()}
    for k, g in enumerate(GRADS):
        p = ref(p, g, None, k)
        for n in p:
            np.testing.assert_allclose(trajectories[k]["clipped"][n], p[n], rtol=2e-5, atol=2e-6)
    adam_w, adam_b = ref_adam(const(1e-2), wd=0.5), ref_adam(const(1e-2))
    pw, pb, sw, sb = PARAMS["w"].astype(np.float64), PARAMS["b"].astype(np.float64), {}, {}
    for k, g in enumerate(GRADS):
        pw, pb = adam_w(pw, g["w"], sw, k), adam_b(pb, g["b"], sb, k)
    np.testing.assert_allclose(trajectories[-1]["masked"]["w"], pw, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(trajectories[-1]["masked"]["b"], pb, rtol=2e-5, atol=2e-6)


def test_states_are_pytrees_of_arrays():
    state = optim.adam(1e-3).init(PARAMS)
    assert isinstance(state[0], optim.ScaleByAdamState)
    assert state[0].count.dtype == np.int32 and state[0].mu["w"].shape == (3, 4)
    assert all(isinstance(leaf, lgc.Array) for leaf in tu.tree_leaves(state))


# ---- schedules ----------------------------------------------------------------------------------

SCHEDULES = {
    "constant": (optim.constant_schedule(0.3), lambda k: 0.3),
    "linear": (optim.linear_schedule(1.0, 0.1, 10, transition_begin=3),
               lambda k: 1.0 + (0.1 - 1.0) * min(max(k - 3, 0), 10) / 10),
    "polynomial": (optim.polynomial_schedule(2.0, 0.5, 2, 8),
                   lambda k: (2.0 - 0.5) * (1 - min(k, 8) / 8) ** 2 + 0.5),
    "exponential": (optim.exponential_decay(1.0, 4, 0.5),
                    lambda k: 0.5 ** (k / 4)),
    "exponential_stair": (optim.exponential_decay(1.0, 4, 0.5, transition_begin=2, staircase=True,
                                                  end_value=0.2),
                          lambda k: 1.0 if k <= 2 else max(0.5 ** ((k - 2) // 4), 0.2)),
    "cosine": (optim.cosine_decay_schedule(1.0, 10, alpha=0.1),
               lambda k: 0.9 * 0.5 * (1 + math.cos(math.pi * min(k, 10) / 10)) + 0.1),
    "cosine_exponent": (optim.cosine_decay_schedule(2.0, 10, exponent=2.0),
                        lambda k: 2.0 * (0.5 * (1 + math.cos(math.pi * min(k, 10) / 10))) ** 2),
    "warmup_cosine": (optim.warmup_cosine_decay_schedule(0.0, 1.0, 5, 20, end_value=0.05),
                      ref_warmup_cosine(0.0, 1.0, 5, 20, 0.05)),
    "piecewise": (optim.piecewise_constant_schedule(1.0, {4: 0.5, 10: 0.1}),
                  lambda k: 1.0 * (0.5 if k >= 4 else 1) * (0.1 if k >= 10 else 1)),
    "join": (optim.join_schedules([optim.constant_schedule(1.0), optim.linear_schedule(1.0, 0.0, 5)],
                                  [7]),
             lambda k: 1.0 if k < 7 else 1.0 - min(k - 7, 5) / 5),
}
COUNTS = np.arange(0, 25, dtype=np.int32)


@lgc.jit
def all_schedules(counts):
    return {name: lnp.broadcast_to(s(counts), counts.shape) for name, (s, _) in SCHEDULES.items()}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_matches_formula(name):
    got = np.asarray(all_schedules(COUNTS)[name])
    want = [SCHEDULES[name][1](int(k)) for k in COUNTS]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_schedule_takes_a_python_count():
    assert float(optim.exponential_decay(1.0, 4, 0.5)(8)) == pytest.approx(0.25)
    assert float(optim.warmup_cosine_decay_schedule(0.0, 1.0, 5, 20)(5)) == pytest.approx(1.0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="decay_steps"):
        optim.cosine_decay_schedule(1.0, 0)
    opt = optim.adamw(1e-3)
    with pytest.raises(ValueError, match="needs params"):
        opt.update(PARAMS, opt.init(PARAMS))


# ---- training -----------------------------------------------------------------------------------

def _train(loss, params, opt, steps):
    @lgc.jit
    def step(p, state):
        value, g = lgc.value_and_grad(loss)(p)
        updates, state = opt.update(g, state, p)
        return optim.apply_updates(p, updates), state, value

    state = opt.init(params)
    for _ in range(steps):
        params, state, value = step(params, state)
    return params, state


def test_adam_trains_softmax_regression_under_jit():
    """Softmax regression on three Gaussian blobs with Adam, a warmup-cosine schedule and
    clipping, 150 steps under jit: the loss falls from log(3) to what the same steps in
    NumPy (float64, optax's formulas) reach."""
    centres = np.array([[2, 0, 0, 1, 0], [0, 2, 0, -1, 0], [0, 0, 2, 0, 1]], np.float32)
    labels = np.arange(90) % 3
    x = (centres[labels] + 0.7 * rng.standard_normal((90, 5))).astype(np.float32)
    onehot = np.eye(3, dtype=np.float32)[labels]
    params = {"w": np.zeros((5, 3), np.float32), "b": np.zeros(3, np.float32)}
    schedule = optim.warmup_cosine_decay_schedule(0.0, 0.2, 10, 150, end_value=0.01)
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(schedule))

    def loss(p):
        logits = x @ p["w"] + p["b"]
        return -lnp.mean(lnp.sum(onehot * (logits - lnp.max(logits, 1, keepdims=True)), 1)
                         - lnp.log(lnp.sum(lnp.exp(logits - lnp.max(logits, 1, keepdims=True)), 1)))

    params, state = _train(loss, params, opt, 150)
    assert int(state[1][0].count) == 150

    # the same 150 steps in NumPy
    lr = ref_warmup_cosine(0.0, 0.2, 10, 150, 0.01)
    p = {"w": np.zeros((5, 3)), "b": np.zeros(3)}
    s = {"w": {}, "b": {}}
    adam = {n: ref_adam(lr) for n in p}
    xd = x.astype(np.float64)

    def np_loss_grad(p):
        z = xd @ p["w"] + p["b"]
        z = z - z.max(1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        d = (prob - onehot) / len(x)
        return -np.mean(np.sum(onehot * (z - np.log(np.exp(z).sum(1, keepdims=True))), 1)), \
            {"w": xd.T @ d, "b": d.sum(0)}

    for k in range(150):
        _, g = np_loss_grad(p)
        norm = math.sqrt(sum(float(np.sum(v ** 2)) for v in g.values()))
        g = {n: v * (1.0 if norm < 1.0 else 1.0 / norm) for n, v in g.items()}
        p = {n: adam[n](p[n], g[n], s[n], k) for n in p}
    want = np_loss_grad(p)[0]
    got = float(loss(params))
    assert want < 0.1 and abs(got - want) < 1e-3 * max(1.0, want) + 1e-4, (got, want)
