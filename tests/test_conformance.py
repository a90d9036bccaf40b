"""ONNX conformance: node cases and model tests through lgc.onnx.backend.

The cases lgc is expected to fail are listed, each with its reason, in
tests/conformance_expected_failures.txt. A new failure fails this test, and so does an
unexpected pass (so the list only ever shrinks, and is regenerated on purpose with
`python -m lgc.conformance --write-expected tests/conformance_expected_failures.txt`).
"""
import os

import pytest

from lgc.tools import conformance

JOBS = max(1, min(2, os.cpu_count() or 1))


def _check(category):
    cases = conformance.collect((category,))
    results = conformance.run_all(cases, JOBS)
    expected = conformance.read_expected()
    conformance.summarize(cases, results)
    new = sorted(n for n, r in results.items() if r and n not in expected)
    fixed = sorted(n for n, r in results.items() if not r and n in expected)
    msg = []
    if new:
        msg.append(f"{len(new)} new failures:\n" + "\n".join(f"  {n}: {results[n]}" for n in new))
    if fixed:
        msg.append(f"{len(fixed)} unexpected passes (remove them from the expected-failures file):\n"
                   + "\n".join(f"  {n}" for n in fixed))
    assert not msg, "\n".join(msg)
    return results


def test_node_cases():
    results = _check("node")
    passed = sum(1 for r in results.values() if not r)
    print(f"node cases: {passed} passed of {len(results)}")


def test_model_cases():
    _check("model")


@pytest.mark.slow
@pytest.mark.parametrize("name", [c.name for c in conformance.collect(("light",))])
def test_light_model(name):
    (case,) = [c for c in conformance.collect(("light",)) if c.name == name]
    reason = conformance.run_case(case)
    expected = conformance.read_expected()
    if name in expected:
        assert reason, f"{name} passes now: remove it from the expected-failures file"
    else:
        assert not reason, reason
