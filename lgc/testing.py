"""Helpers for tests: run one core op on the default device and compare with its reference."""
from __future__ import annotations

import numpy as np

from .ir import dtypes, registry
from .ir.builder import GraphBuilder
from .ir.graph import TensorType
from .runtime import Executable


def build_op_graph(op: str, inputs, attrs=None):
    b = GraphBuilder(op)
    vals = [b.input(f"x{i}", TensorType(dtypes.from_numpy(a.dtype), tuple(a.shape)))
            for i, a in enumerate(inputs)]
    out = b.op(op, vals, attrs or {}, name=op, num_outputs=-1)
    return b.build(list(out))


def run_op(op: str, inputs, attrs=None, device=None, target=None) -> list[np.ndarray]:
    """Compile a one-node graph for `op` and run it on the device; returns its outputs.
    `target`: generate the kernels for this Target (e.g. GFX803's GPU kernels, run here)."""
    inputs = [np.asarray(a) for a in inputs]
    exe = Executable.from_graph(build_op_graph(op, inputs, attrs), device, target=target)
    return list(exe.run(dict(zip(exe.input_names, inputs))).values())


def reference_op(op: str, inputs, attrs=None) -> list[np.ndarray]:
    opdef = registry.get(op)
    return [np.asarray(o) for o in opdef.reference([np.asarray(a) for a in inputs],
                                                   opdef.normalize_attrs(attrs or {}))]


def check_ops(cases, rtol=1e-5, atol=1e-6, target=None) -> None:
    """Like check_op for many (op, inputs, attrs) at once: one graph, one OpenCL build.

    The failure message names the case that differs. `target` as for run_op."""
    b = GraphBuilder("cases")
    feeds, outputs, spans = {}, [], []
    for k, (op, inputs, attrs) in enumerate(cases):
        vals = []
        for i, a in enumerate(inputs):
            a = np.asarray(a)
            name = f"c{k}_x{i}"
            feeds[name] = a
            vals.append(b.input(name, TensorType(dtypes.from_numpy(a.dtype), tuple(a.shape))))
        outs = b.op(op, vals, attrs or {}, name=f"{op}_{k}", num_outputs=-1)
        spans.append((len(outputs), len(outs)))
        outputs += list(outs)
    exe = Executable.from_graph(b.build(outputs), target=target)
    got = list(exe.run(feeds).values())
    for (start, n), (op, inputs, attrs) in zip(spans, cases):
        want = reference_op(op, inputs, attrs)
        for g, w in zip(got[start:start + n], want):
            where = f"{op}{tuple(np.asarray(a).dtype.name + str(np.shape(a)) for a in inputs)} {attrs or ''}"
            assert g.dtype == w.dtype and g.shape == w.shape, (where, g.dtype, g.shape, w.dtype, w.shape)
            if w.dtype.kind in "fc":
                np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=where)
            else:
                np.testing.assert_array_equal(g, w, err_msg=where)


def check_op(op: str, inputs, attrs=None, rtol=1e-5, atol=1e-6, target=None) -> None:
    """Assert that the device result equals the NumPy reference (dtype, shape, values)."""
    got = run_op(op, inputs, attrs, target=target)
    want = reference_op(op, inputs, attrs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        assert g.shape == w.shape, (g.shape, w.shape)
        if w.dtype.kind in "fc":
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, w)


def numerical_grad(f, x, eps=1e-6) -> np.ndarray:
    """Central differences of a real NumPy function f at x, in float64: what lgc.grad should
    give. Of a complex x, JAX's convention for a real function of complex input:
    df/dx - i df/dy."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        x = x.astype(np.complex128)
        return numerical_grad(lambda u: f(u + 1j * x.imag), x.real, eps) - \
            1j * numerical_grad(lambda v: f(x.real + 1j * v), x.imag, eps)
    x = x.astype(np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g
