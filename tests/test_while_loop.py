"""while_loop with a traced condition: one `while` op in the IR, run by the host around
its kernels. Checked against plain Python loops; jit == eager; text, verifier and artifact
round trips; vmap, jvp; grad refused as JAX does."""
from __future__ import annotations

import math

import numpy as np
import pytest

import lgc
import lgc.lax as lax
import lgc.numpy as lnp
from lgc.backends.memory import plan
from lgc.backends.program import lower
from lgc.ir.text import graphs_equal, parse_graph, weights_of
from lgc.ir.verify import VerifyError, verify
from lgc.trace import enable_x64


def newton_sqrt(a):
    """sqrt(a) by Newton's method to convergence, and the steps it took."""
    def cond(c):
        x, n = c
        return (lnp.abs(x * x - a) > 1e-6 * a) & (n < 100)
    return lax.while_loop(cond, lambda c: (0.5 * (c[0] + a / c[0]), c[1] + 1), (a, 0))


def newton_ref(a):
    x, n = np.float32(a), 0
    while abs(x * x - a) > 1e-6 * a and n < 100:
        x, n = np.float32(0.5) * (x + np.float32(a) / x), n + 1
    return x, n


def collatz_steps(n):
    step = lambda c: (lnp.where(c[0] % 2 == 0, c[0] // 2, 3 * c[0] + 1), c[1] + 1)  # noqa: E731
    return lax.while_loop(lambda c: c[0] > 1, step, (n, 0))[1]


def collatz_ref(n):
    k = 0
    while n > 1:
        n, k = (n // 2 if n % 2 == 0 else 3 * n + 1), k + 1
    return k


def gcd(a, b):
    """Euclid's algorithm; the body swaps its carry slots."""
    return lax.while_loop(lambda c: c[1] != 0, lambda c: (c[1], c[0] % c[1]), (a, b))[0]


def test_newton_jit_eager_and_python():
    f = lgc.jit(newton_sqrt)
    for a in (2.0, 9.0, 1e-3, 12345.0):
        x, n = f(np.float32(a))
        rx, rn = newton_ref(a)
        assert int(n) == rn and rn > 1
        np.testing.assert_allclose(float(x), rx, rtol=1e-6)
        ex, en = newton_sqrt(lnp.asarray(np.float32(a)))           # eager: a Python loop
        assert int(en) == rn and float(ex) == float(x)
    assert f.trace_count == 1                  # one graph for every trip count


def test_weak_types_survive_the_loop():
    """A carry slot started from a Python scalar stays weakly typed (as in JAX), so it
    promotes like one afterwards; one started from an array stays strong."""
    f = lgc.jit(lambda x: lax.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, c[1] * 2), (0, x)))
    i, v = f(np.int8(3))
    assert i.weak_type and i.dtype == np.int32 and not v.weak_type and v.dtype == np.int8
    assert int(i) == 5 and int(v) == 96
    g = lgc.jit(lambda k: lax.while_loop(lambda c: c < 5, lambda c: c + 1, 0) + k)
    assert g(np.int8(1)).dtype == np.int8 and int(g(np.int8(1))) == 6


def test_integer_loops():
    steps, g = lgc.jit(collatz_steps), lgc.jit(gcd)
    for n in (1, 2, 3, 7, 27, 97):
        assert int(steps(np.int32(n))) == collatz_ref(n)
    for a, b in ((12, 18), (17, 5), (0, 7), (7, 0), (1071, 462)):
        assert int(g(np.int32(a), np.int32(b))) == math.gcd(a, b)


def test_zero_trips_nested_and_captured_arrays():
    def f(x, w, limit):
        def outer_body(c):
            v, i = c
            # inner loop: double v's norm while below the outer counter (a nested while)
            v = lax.while_loop(lambda u: lnp.sum(u * u) < (i + 1.0) ** 2,
                               lambda u: u * 2.0, v)
            return v @ w, i + 1               # w is captured from the jitted arguments
        return lax.while_loop(lambda c: c[1] < limit, outer_body, (x, 0))

    def ref(x, w, limit):
        v, i = x.astype(np.float32), 0
        while i < limit:
            while np.sum(v * v) < (i + 1.0) ** 2:
                v = v * np.float32(2)
            v, i = v @ w, i + 1
        return v, i

    rng = np.random.default_rng(0)
    x = rng.standard_normal(4).astype(np.float32) * 0.1
    w = (rng.standard_normal((4, 4)) * 0.5).astype(np.float32)
    fj = lgc.jit(f)
    for limit in (0, 1, 4):
        v, i = fj(x, w, np.int32(limit))
        rv, ri = ref(x, w, limit)
        assert int(i) == ri
        np.testing.assert_allclose(np.asarray(v), rv, rtol=1e-5, atol=1e-6)


def test_ir_text_round_trip_and_verify():
    g = lgc.make_ir(newton_sqrt)(np.float32(2.0))
    text = str(g)
    assert "while(" in text and "cond = graph @cond(" in text and "body = graph @body(" in text
    verify(g)
    g2 = parse_graph(text, weights_of(g))
    verify(g2)
    assert graphs_equal(g, g2) and str(g2) == text
    # nested loops and big constants inside a body
    big = np.arange(40, dtype=np.float32)
    h = lgc.make_ir(lambda x: lax.while_loop(lambda v: v[0] < 100.0, lambda v: v + big, x))(big)
    assert any(k.endswith("const0") or k.startswith("const") for k in weights_of(h))
    assert graphs_equal(h, parse_graph(str(h), weights_of(h)))


def test_verifier_and_tracing_errors():
    g = lgc.make_ir(gcd)(np.int32(4), np.int32(6))
    node = next(n for n in g.nodes if n.op == "while")
    bad = dict(node.attrs, cond=node.attrs["body"])      # cond returning the carry
    node.attrs = bad
    with pytest.raises(VerifyError, match="cond must return one bool"):
        verify(g)
    with pytest.raises(TypeError, match="body_fun must return the carry's structure"):
        lgc.jit(lambda x: lax.while_loop(lambda c: c < 3, lambda c: c * 1.5, x))(np.int32(1))
    with pytest.raises(TypeError, match="cond_fun must return a boolean scalar"):
        lgc.jit(lambda x: lax.while_loop(lambda c: c, lambda c: c + 1, x))(np.int32(1))


def test_export_and_load(tmp_path):
    path = tmp_path / "gcd.lgc"
    lgc.export(gcd, np.int32(1), np.int32(1), path=path)
    exe = lgc.load(path)
    assert exe.manifest["format_version"] == 4 and len(exe.program.loops) == 1
    for a, b in ((12, 18), (1071, 462), (5, 0)):
        assert int(np.asarray(exe(np.int32(a), np.int32(b)))) == math.gcd(a, b)
    path2 = tmp_path / "newton.lgc"
    lgc.export(newton_sqrt, np.float32(1.0), path=path2)
    x, n = lgc.load(path2)(np.float32(7.0))
    rx, rn = newton_ref(7.0)
    assert int(n) == rn and abs(float(x) - rx) <= 1e-6 * rx


def test_artifact_loop_tables_are_checked(tmp_path):
    """A manifest whose loop table does not fit its program is refused with one line, even
    with the digest table recomputed to match it."""
    import json
    import zipfile

    from lgc.errors import ArtifactError
    from lgc.runtime.artifact import CONTENT, write_artifact
    path = tmp_path / "gcd.lgc"
    lgc.export(gcd, np.int32(1), np.int32(1), path=path)
    for what, edit in (("at", lambda lp: lp.update(at=99)),
                       ("outputs", lambda lp: lp.update(outputs=lp["outputs"][:1])),
                       ("body", lambda lp: lp["body"]["launches"][0].update(kernel="nope"))):
        with zipfile.ZipFile(path) as z:
            members = {n: z.read(n) for n in z.namelist()}
        man = json.loads(members["manifest.json"])
        edit(man["loops"][0])
        members["manifest.json"] = json.dumps(man).encode()
        bad = tmp_path / f"bad_{what}.lgc"
        write_artifact(bad, {k: members[k] for k in CONTENT})
        with pytest.raises(ArtifactError, match=r"manifest field loops\[0\]"):
            lgc.load(bad)


def test_vmap_batched_and_unbatched_predicate():
    ns = np.array([1, 2, 3, 6, 7, 9, 27], np.int32)
    want = [collatz_ref(int(n)) for n in ns]
    np.testing.assert_array_equal(np.asarray(lgc.jit(lgc.vmap(collatz_steps))(ns)), want)
    np.testing.assert_array_equal(np.asarray(lgc.vmap(lgc.jit(collatz_steps))(ns)), want)
    a = np.array([[12, 18], [17, 5], [1071, 462], [0, 3]], np.int32)
    got = lgc.jit(lgc.vmap(gcd))(a[:, 0], a[:, 1])
    np.testing.assert_array_equal(np.asarray(got), [math.gcd(int(x), int(y)) for x, y in a])

    # predicate not batched (it reads only the counter): the body is vmapped, the loop is one
    def scale(x, k):
        return lax.while_loop(lambda c: c[1] < k, lambda c: (c[0] * 1.5 + 1.0, c[1] + 1),
                              (x, 0))[0]
    xs = np.linspace(-1, 1, 5).astype(np.float32)
    got = lgc.jit(lgc.vmap(scale, in_axes=(0, None)))(xs, np.int32(3))
    want = [((x * 1.5 + 1) * 1.5 + 1) * 1.5 + 1 for x in xs]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    ir = str(lgc.make_ir(lgc.vmap(scale, in_axes=(0, None)))(xs, np.int32(3)))
    assert ir.count("while(") == 1 and "reduce_max" not in ir and "or(" not in ir


@pytest.fixture
def x64():
    enable_x64(True)
    yield
    enable_x64(False)


def test_jvp_against_finite_differences(x64):
    def f(a, k):
        """k steps (data-dependent trip count) of x <- sin(a x) + x / 2."""
        return lax.while_loop(lambda c: c[1] < k, lambda c: (lnp.sin(a * c[0]) + c[0] / 2, c[1] + 1),
                              (a, 0))[0]
    jf = lgc.jit(lambda a, t, k: lgc.jvp(lambda b: f(b, k), (a,), (t,)))
    for a, k in ((0.3, 4), (1.1, 7), (-0.6, 0)):
        y, dy = jf(np.float64(a), np.float64(1.0), np.int32(k))
        h = 1e-6
        fd = (float(lgc.jit(f)(a + h, np.int32(k))) - float(lgc.jit(f)(a - h, np.int32(k)))) / (2 * h)
        assert abs(float(dy) - fd) <= 1e-7 * max(1.0, abs(fd))
        assert float(y) == float(lgc.jit(f)(np.float64(a), np.int32(k)))
    # converged Newton: the tangent is the derivative of sqrt
    y, dy = lgc.jit(lambda a: lgc.jvp(newton_sqrt, (a,), (1.0,)))(np.float64(3.0))
    assert abs(float(dy[0]) - 0.5 / math.sqrt(3.0)) < 1e-6


def test_grad_is_refused_with_a_clear_error():
    f = lambda a: newton_sqrt(a)[0]          # noqa: E731
    with pytest.raises(ValueError, match="reverse-mode differentiation .* while_loop .* scan"):
        lgc.jit(lgc.grad(f))(np.float32(2.0))
    with pytest.raises(ValueError, match="fori_loop with traced bounds"):
        lgc.jit(lgc.grad(lambda x, n: lax.fori_loop(0, n, lambda i, v: v * x, 1.0),
                         argnums=0))(np.float32(2.0), np.int32(3))


def test_memory_plan_keeps_loop_operands_apart():
    def f(x):
        y = lnp.exp(x) + 1.0                  # a temp read only by the loop
        z = lax.while_loop(lambda v: v[0] < 50.0, lambda v: v * 2.0, y)
        return lnp.tanh(z) * 3.0              # temps after it
    x = np.linspace(0, 1, 64).astype(np.float32)
    prog = lower(lgc.make_ir(f)(x))
    (lp,) = prog.loops
    p = plan(prog.buffers, prog.launches, prog.loops)
    spans = {b: (p.offsets[b], p.offsets[b] + prog.buffers[b].nbytes)
             for b in lp.inputs + lp.outputs if b in p.offsets}
    assert len(spans) == 2
    (a0, a1), (b0, b1) = spans.values()
    assert a1 <= b0 or b1 <= a0               # live in the same step: disjoint memory
    y = np.exp(x) + 1
    while y[0] < 50:
        y = y * 2
    np.testing.assert_allclose(np.asarray(lgc.jit(f)(x)), np.tanh(y) * 3, rtol=1e-5)


def test_graph_with_a_loop_runs_eagerly_and_transforms():
    """A traced graph holding a while op, called op by op (eval_graph): eager, under an eager
    vmap (the batching rule), jvp (the loop carries tangents) and grad (refused)."""
    from lgc.trace.interpret import eval_graph
    g = lgc.make_ir(gcd)(np.int32(1), np.int32(1))
    assert int(eval_graph(g, np.int32(1071), np.int32(462))[0]) == 21
    got = lgc.vmap(lambda a, b: eval_graph(g, a, b)[0])(np.array([12, 1071, 9], np.int32),
                                                       np.array([18, 462, 0], np.int32))
    np.testing.assert_array_equal(np.asarray(got), [6, 21, 9])
    h = lgc.make_ir(newton_sqrt)(np.float32(1))
    y, dy = lgc.jvp(lambda a: eval_graph(h, a)[0], (np.float32(2.0),), (np.float32(1.0),))
    assert abs(float(y) - math.sqrt(2)) < 1e-6 and abs(float(dy) - 0.5 / math.sqrt(2)) < 1e-5
    with pytest.raises(ValueError, match="reverse-mode"):
        lgc.grad(lambda a: eval_graph(h, a)[0])(np.float32(2.0))


def _onnx_loop_model(trip_from_data: bool):
    """y doubles (times w, read from the outer graph) plus the iteration number until its sum
    passes `limit`, or for a trip count computed from a data input."""
    from onnx import TensorProto, helper
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["i_f"], to=f),
         helper.make_node("Mul", ["y_in", "w"], ["y2"]),
         helper.make_node("Add", ["y2", "i_f"], ["y_out"]),
         helper.make_node("ReduceSum", ["y_out"], ["s"], keepdims=0),
         helper.make_node("Less", ["s", "limit"], ["c_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_in", f, [4])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_out", f, [4])])
    nodes = [helper.make_node("Constant", [], ["t"], value=helper.make_tensor("t", TensorProto.BOOL, [], [True]))]
    if trip_from_data:
        nodes += [helper.make_node("ReduceSum", ["counts"], ["m"], keepdims=0),
                  helper.make_node("Loop", ["m", "", "x"], ["y"], body=body)]
    else:
        nodes += [helper.make_node("Loop", ["", "t", "x"], ["y"], body=body)]
    ins = [helper.make_tensor_value_info("x", f, [4]), helper.make_tensor_value_info("w", f, [4]),
           helper.make_tensor_value_info("limit", f, [])]
    if trip_from_data:
        ins.append(helper.make_tensor_value_info("counts", TensorProto.INT64, [32]))
    g = helper.make_graph(nodes, "loop", ins, [helper.make_tensor_value_info("y", f, [4])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("trip_from_data", [False, True])
def test_onnx_loop_with_data_dependent_termination(trip_from_data):
    """ONNX Loop whose condition (or trip count) depends on data: one while op, matching
    onnxruntime."""
    ort = pytest.importorskip("onnxruntime")
    model = _onnx_loop_model(trip_from_data)
    x = np.array([0.5, 1.0, -0.25, 2.0], np.float32)
    w = np.array([2.0, 1.5, 2.0, 1.25], np.float32)
    feeds = [{"x": x, "w": w, "limit": np.array(v, np.float32)} for v in (3.0, 50.0, 1000.0)]
    if trip_from_data:
        for k, fd in enumerate(feeds):
            fd["limit"] = np.array(1e9, np.float32)  # the trip count alone ends the loop
            fd["counts"] = np.zeros(32, np.int64)
            fd["counts"][: 3 * k] = 1              # 0, 3, 6 iterations
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    g = lgc.onnx.load(model, input_shapes={k: v.shape for k, v in feeds[0].items()})
    assert sum(n.op == "while" for n in g.nodes) == 1
    exe = lgc.compile(g)
    for fd in feeds:
        want = sess.run(None, fd)[0]
        got = exe.run(fd)["y"]
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_constant_loop_folds_unless_long(monkeypatch):
    """A loop on constants only is folded by its NumPy reference while compiling; one past
    the reference's step limit is left to the device."""
    from lgc.ops import control
    from lgc.passes import optimize
    f = lambda: lax.while_loop(lambda c: c[0] < 40, lambda c: (c[0] + 1, c[1] * 1.5), (0, 1.0))  # noqa: E731
    g = lgc.make_ir(f)()
    assert not any(n.op == "while" for n in optimize(g).nodes)
    monkeypatch.setattr(control, "MAX_REFERENCE_STEPS", 10)
    assert sum(n.op == "while" for n in optimize(g).nodes) == 1
    i, v = lgc.jit(f)()
    assert int(i) == 40 and float(v) == pytest.approx(1.5 ** 40, rel=1e-5)
