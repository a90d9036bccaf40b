"""ONNX conformance: node cases and model tests through lgc.onnx.backend, and onnx's nine
light models, shipped and with seeded random weights, against onnxruntime.

The cases lgc is expected to fail are listed, each with its reason, in
tests/conformance_expected_failures.txt. A new failure fails this test, so does a listed case
that fails for another reason (a numeric mismatch: with a larger error than listed), and so
does an unexpected pass (so the list only ever shrinks, and is regenerated on purpose with
`python -m lgc.conformance --write-expected tests/conformance_expected_failures.txt`).

The light models' shipped outputs cannot catch wrong numbers: every weight is
ConstantOfShape(0.02), so the expected output is the same for every input. Their seeded
random-weight copies (lgc.testing.randomize) are compared with onnxruntime on two inputs.
"""
import os

import numpy as np
import pytest

import lgc
from lgc.testing import (LIGHT_MODELS, MODEL_TOLERANCE, onnxruntime_session, output_tolerances,
                         random_light_model, scaled_error)
from lgc.tools import conformance

JOBS = max(1, min(2, os.cpu_count() or 1))


def _check(category):
    cases = conformance.collect((category,))
    results = conformance.run_all(cases, JOBS)
    conformance.summarize(cases, results)
    msg = conformance.report(results, conformance.read_expected())
    assert not msg, msg
    return results


def test_node_cases():
    results = _check("node")
    passed = sum(1 for r in results.values() if not r)
    print(f"node cases: {passed} passed of {len(results)}")


def test_model_cases():
    _check("model")


def test_expected_failures_are_matched_by_reason():
    """A listed case passes the check only failing the way it is listed; a mismatch within
    its recorded error, not beyond it."""
    listed = {"a": "UnsupportedOp: unsupported ONNX operator X (node 'y', opset 1)",
              "m": "mismatch: output 0, max abs error <= 4.9e-04"}
    assert conformance.report({"a": listed["a"], "m": "mismatch: output 0, max abs error 0.000488 "
                               "(2 of 192 elements beyond rtol 0.001, atol 1e-07)"}, listed) == ""
    msg = conformance.report({"a": "TypeError: something else", "m": "mismatch: output 0, max abs "
                              "error 0.0123 (5 of 192 elements beyond rtol 0.001, atol 1e-07)"}, listed)
    assert "2 expected failures that fail differently now" in msg and "TypeError" in msg
    assert "fail differently" in conformance.report({"m": "mismatch: output 1, max abs error 1e-05"}, listed)
    assert "unexpected passes" in conformance.report({"a": ""}, listed)
    assert conformance.expected_form("mismatch: output 0, max abs error 0.000488 (2 of 192 elements "
                                     "beyond rtol 0.001, atol 1e-07)") == listed["m"]


def test_light_models_are_the_nine_covered():
    """A light model added to onnx's test data must be added to lgc.testing.LIGHT_MODELS."""
    assert sorted(c.name for c in conformance.collect(("light",))) == \
        sorted(f"light_{n}" for n in LIGHT_MODELS)


@pytest.mark.slow
@pytest.mark.parametrize("name", [c.name for c in conformance.collect(("light",))])
def test_light_model(name):
    """The shipped model against its shipped output: the importer handles the file (a weak
    check of the numbers, see the module docstring)."""
    (case,) = [c for c in conformance.collect(("light",)) if c.name == name]
    msg = conformance.report({name: conformance.run_case(case)}, conformance.read_expected())
    assert not msg, msg


@pytest.mark.slow
@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_random_weights(name):
    """The seeded random-weight copy (its logits exposed where it ends in a Softmax) against
    onnxruntime at batch 1 on two inputs, every output within its tolerance (output_tolerances)
    of its largest value; and the two inputs give outputs that differ far beyond that (random deep
    networks answer alike to any input: DenseNet-121's differ by 8e-3 of their largest)."""
    model = random_light_model(name, seed=0)
    m = lgc.Model(model)
    types = m.default_types()
    exe = m.executable(types)
    sess = onnxruntime_session(model)
    tolerance = output_tolerances(model)
    outs = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        feeds = {k: rng.standard_normal(t.shape).astype(t.dtype.np) for k, t in types.items()}
        got = exe.run(feeds)
        want = sess.run(None, feeds)
        assert list(got) == [o.name for o in sess.get_outputs()]
        for (out, g), w in zip(got.items(), want):
            assert g.shape == w.shape and g.dtype == w.dtype, (out, g.shape, w.shape)
            err = scaled_error(g, w)
            assert err <= tolerance[out], f"{name} output {out}, input seed {seed}: max error " \
                                          f"{err:.2e} of the largest |value| {np.max(np.abs(w)):.3g}"
        outs.append(list(got.values()))
    spread = max(scaled_error(a, b) for a, b in zip(*outs))
    assert spread > 10 * MODEL_TOLERANCE, f"{name}: two inputs, outputs only {spread:.2e} apart"
