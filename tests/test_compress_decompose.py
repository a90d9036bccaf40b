"""Tensor decomposition (lgc.compress.decompose) against NumPy: full rank reproduces the
model, truncation matches numpy's SVD, energy and compression pick the ranks they promise,
and the rewritten graph runs on the device like its NumPy reference."""
import numpy as np
import pytest

import lgc
import lgc.nn as nn
import lgc.numpy as lnp
from lgc.compress.decompose import decompose, rank_by_energy, svd_factors, tucker2
from lgc.compress.graphtools import param_bytes, reference_run
from lgc.errors import InputError


def _model(seed=0):
    rng = np.random.default_rng(seed)
    p = {"c1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
         "b1": rng.standard_normal(8).astype(np.float32) * 0.1,
         "c2": rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.2,
         "w": rng.standard_normal((64, 24)).astype(np.float32) * 0.1,
         "w2": rng.standard_normal((24, 10)).astype(np.float32) * 0.1}

    def f(x):
        h = nn.relu(nn.conv(x, p["c1"], padding="SAME", bias=p["b1"]))
        h = nn.max_pool(h, (2, 2))
        h = nn.relu(nn.conv(h, p["c2"], padding="SAME"))
        h = nn.max_pool(h, (2, 2))
        h = lnp.reshape(h, (h.shape[0], -1))
        return nn.relu(h @ p["w"]) @ p["w2"]

    x = rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
    return lgc.make_ir(f)(x), x


def test_full_rank_reproduces_the_model():
    g, x = _model()
    g2 = decompose(g, rank=1.0, keep_larger=True, min_params=0)
    ops = [n.op for n in g2.nodes if n.op != "const"]
    assert ops.count("matmul") == 4         # really rewritten (full-rank Tucker modes fold
                                            # back into one conv: checked by tucker2 below)
    ref, out = reference_run(g, [x])[0], reference_run(g2, [x])[0]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_svd_factors_are_numpys_truncated_svd():
    w = np.random.default_rng(1).standard_normal((40, 30)).astype(np.float32)
    a, b = svd_factors(w, rank=7)
    assert a.shape == (40, 7) and b.shape == (7, 30)
    u, s, vt = np.linalg.svd(w.astype(np.float64))
    best = (u[:, :7] * s[:7]) @ vt[:7]
    np.testing.assert_allclose(a @ b, best, atol=1e-5)
    err = np.linalg.norm(w - a @ b)          # Eckart-Young: the tail of the spectrum
    assert err == pytest.approx(np.sqrt(np.sum(s[7:] ** 2)), rel=1e-4)


def test_energy_rank_selection():
    s = np.array([4.0, 2.0, 1.0, 1.0])                   # squares 16, 4, 1, 1 of 22
    assert rank_by_energy(s, 16 / 22) == 1
    assert rank_by_energy(s, 0.75) == 2
    assert rank_by_energy(s, 0.99) == 4
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((50, 3)) @ rng.standard_normal((3, 40))).astype(np.float32)
    a, b = svd_factors(w + 1e-4 * rng.standard_normal(w.shape).astype(np.float32), energy=0.999)
    assert a.shape[1] == 3                               # the rank-3 signal, not the noise


def test_compression_target_bounds_parameters():
    w = np.random.default_rng(3).standard_normal((100, 60)).astype(np.float32)
    a, b = svd_factors(w, compression=0.5)
    assert a.size + b.size <= 0.5 * w.size
    assert (a.shape[1] + 1) * 160 > 0.5 * w.size         # the largest rank that fits


def test_tucker2_full_rank_and_truncated():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((12, 6, 3, 3))
    uo, core, ui = tucker2(w, rank=1.0)
    np.testing.assert_allclose(np.einsum("ri...,or,ci->oc...", core, uo, ui), w, atol=1e-10)
    uo, core, ui = tucker2(w, rank=4)
    assert uo.shape == (12, 4) and ui.shape == (6, 4) and core.shape == (4, 4, 3, 3)
    # the core is the projection of w on the factor bases (orthonormal columns)
    np.testing.assert_allclose(uo.T @ uo, np.eye(4), atol=1e-10)
    approx = np.einsum("ri...,or,ci->oc...", core, uo, ui)
    assert np.linalg.norm(w - approx) < np.linalg.norm(w)


def test_compressed_conv_graph_runs_on_device_and_is_smaller():
    g, x = _model()
    g2 = decompose(g, compression=0.5, min_params=0)
    assert param_bytes(g2) < param_bytes(g)
    ref = reference_run(g2, [x])[0]
    out = lgc.compile(g2, opt_level=0)(x)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_budget_search_holds_the_drift():
    g, x = _model()
    g2 = decompose(g, compression=0.3, min_params=0, max_drift=0.05, data=[x])
    ref, out = reference_run(g, [x])[0], reference_run(g2, [x])[0]
    assert np.abs(out - ref).sum() / np.abs(ref).sum() <= 0.05
    with pytest.raises(InputError, match="max_drift needs data"):
        decompose(g, max_drift=0.1)
    with pytest.raises(InputError, match="at most one"):
        decompose(g, rank=2, energy=0.9)
