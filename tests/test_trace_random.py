"""lgc.random: the Threefry-2x32 known-answer vectors, JAX's own values for its original
key scheme, jit == eager, and the distributions' moments."""
from __future__ import annotations

import numpy as np

import lgc
import lgc.numpy as lnp
import lgc.random as random
from lgc.random import _threefry2x32


def test_threefry_known_answers():
    """Random123's test vectors (also in JAX's random_test)."""
    def u(v):
        return np.array([v], np.uint32)

    for k, c, want in [((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
                       ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
                       ((0xFFFFFFFF,) * 2, (0xFFFFFFFF,) * 2, (0x1CB996FC, 0xBB002BE7))]:
        x0, x1 = _threefry2x32(*(lnp.asarray(u(v)) for v in (*k, *c)))
        assert (int(x0[0]), int(x1[0])) == want


def test_matches_jax_original_scheme():
    """Values JAX 0.4 gives (jax_threefry_partitionable off, its default then)."""
    key = random.PRNGKey(0)
    np.testing.assert_array_equal(np.asarray(key), [0, 0])
    np.testing.assert_array_equal(np.asarray(random.split(key)),
                                  [[4146024105, 967050713], [2718843009, 1272950319]])
    assert float(random.uniform(key)) == np.float32(0.41845703)
    assert float(random.normal(key)) == np.float32(-0.20584226)


def test_jit_equals_eager_and_moments():
    def draw(key):
        k1, k2, k3, k4 = random.split(key, 4)
        return (random.uniform(k1, (4096,), minval=-2.0, maxval=3.0), random.normal(k2, (4096,)),
                random.bernoulli(k3, 0.25, (4096,)), random.randint(k4, (4096,), 3, 9),
                random.permutation(k4, 10), random.fold_in(key, 7))

    key = random.PRNGKey(1234)
    jitted = lgc.jit(draw)(key)
    eager = draw(key)
    for a, b in zip(jitted, eager):   # bits are exact; floats may differ by graph rewrites
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)   # erfinv tails
        else:
            np.testing.assert_array_equal(a, b)
    u, n, b, r, p, k = (np.asarray(v) for v in jitted)
    assert u.dtype == np.float32 and u.min() >= -2.0 and u.max() < 3.0
    assert abs(u.mean() - 0.5) < 0.1 and abs(n.mean()) < 0.06 and abs(n.std() - 1) < 0.05
    assert abs(b.mean() - 0.25) < 0.03 and b.dtype == bool
    assert r.dtype == np.int32 and set(np.unique(r)) == set(range(3, 9))
    assert sorted(p) == list(range(10))
    assert k.dtype == np.uint32 and k.shape == (2,)
    again = lgc.jit(draw)(random.PRNGKey(1234))
    np.testing.assert_array_equal(np.asarray(again[1]), n)            # deterministic
    other = np.asarray(lgc.jit(draw)(random.PRNGKey(1235))[1])
    assert np.abs(other - n).mean() > 0.5                             # another key differs


def test_categorical_and_gumbel_frequencies():
    """Sample frequencies against softmax(logits) by a chi-square test at p = 1e-4 (the same
    statistic against a wrong distribution, softmax(1.3 * logits), is far above it); Gumbel
    moments; without replacement, distinct classes per row."""
    from scipy.stats import chi2

    probs = np.array([[0.05, 0.15, 0.3, 0.5], [0.4, 0.3, 0.2, 0.1]])
    logits = np.log(probs).astype(np.float32)
    n = 20000

    @lgc.jit
    def draw(key):
        k1, k2, k3, k4 = random.split(key, 4)
        return (random.categorical(k1, logits, shape=(n, 2)),
                random.categorical(k2, logits.T, axis=0),
                random.gumbel(k3, (n,)),
                random.categorical(k4, np.zeros((3, 6), np.float32), shape=(4, 3), replace=False))

    samples, per_column, g, distinct = (np.asarray(v) for v in draw(random.PRNGKey(7)))
    assert samples.shape == (n, 2) and samples.dtype == np.int32
    limit = chi2.ppf(1 - 1e-4, df=3)
    for row in range(2):
        counts = np.bincount(samples[:, row], minlength=4)
        stat = np.sum((counts - n * probs[row]) ** 2 / (n * probs[row]))
        wrong = np.exp(1.3 * np.log(probs[row]))
        wrong /= wrong.sum()
        assert stat < limit < np.sum((counts - n * wrong) ** 2 / (n * wrong)), (row, stat)
    assert per_column.shape == (2,) and set(per_column) <= set(range(4))
    assert abs(g.mean() - np.euler_gamma) < 0.04 and abs(g.var() - np.pi ** 2 / 6) < 0.1
    assert distinct.shape == (4, 3)
    assert all(len(set(distinct[:, j])) == 4 for j in range(3)) and distinct.max() < 6


def test_categorical_rejects_bad_shapes():
    import pytest
    with pytest.raises(ValueError, match="batch shape"):
        random.categorical(random.PRNGKey(0), np.zeros((2, 3), np.float32), shape=(5, 3))
    with pytest.raises(ValueError, match="without replacement"):
        random.categorical(random.PRNGKey(0), np.zeros(3, np.float32), shape=(4,), replace=False)
