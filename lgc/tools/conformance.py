"""ONNX conformance: the node test cases and the model tests shipped with the onnx package,
run through lgc.onnx.backend and compared the way onnx's runner compares them.

    python -m lgc.conformance [--category node|model|light] [-k SUBSTRING] [--jobs N]
           [--write-expected FILE]

Prints one line per category and a last line `N passed, M failed`. The test suite compares
the failures against tests/conformance_expected_failures.txt (one `name  # reason` a line):
a new failure, a listed case failing for another reason (or, for a numeric mismatch, with a
larger error than listed) and an unexpected pass all fail the suite.
"""
from __future__ import annotations

import argparse
import functools
import glob
import math
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..frontend.onnx.importer import declared_inputs, onnx_dtype
from ..onnx import backend

CATEGORIES = ("node", "model", "light")
EXPECTED_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "tests",
                             "conformance_expected_failures.txt")


@dataclass
class Case:
    name: str
    category: str
    source: str          # how to rebuild it in a worker: "node:<name>" or a model path
    rtol: float = 1e-3
    atol: float = 1e-7


def _data_dir() -> str:
    import onnx.backend.test
    return os.path.join(os.path.dirname(onnx.backend.test.__file__), "data")


@functools.cache
def _node_cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np_err = np.seterr(all="ignore")
        try:
            return {c.name: c for c in collect_testcases(None)}
        finally:
            np.seterr(**np_err)


def node_case(name):
    return _node_cases()[name]


def collect(categories=CATEGORIES, pattern: str = "") -> list[Case]:
    out = []
    if "node" in categories:
        for name, c in sorted(_node_cases().items()):
            out.append(Case(name, "node", f"node:{name}", c.rtol, c.atol))
    root = _data_dir()
    if "model" in categories:
        for sub in ("simple", "pytorch-converted", "pytorch-operator"):
            for d in sorted(glob.glob(os.path.join(root, sub, "*"))):
                if os.path.exists(os.path.join(d, "model.onnx")):
                    out.append(Case(f"{sub}/{os.path.basename(d)}", "model", d))
    if "light" in categories:
        for path in sorted(glob.glob(os.path.join(root, "light", "*.onnx"))):
            out.append(Case(os.path.basename(path)[:-5], "light", path))
    return [c for c in out if pattern in c.name]


def _read_pb(path):
    import onnx
    from onnx import numpy_helper
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def _array(x):
    """Some node cases store data as TensorProto (types NumPy lacks); decode like onnx's runner."""
    import onnx
    from onnx import numpy_helper
    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else x


def load_case(case: Case):
    """(model, [(inputs, expected_outputs)], rtol, atol)."""
    import onnx
    if case.category == "node":
        c = node_case(case.name)
        return c.model, [([_array(x) for x in i], [_array(x) for x in o]) for i, o in c.data_sets], \
            c.rtol, c.atol
    if case.category == "light":
        model = onnx.load(case.source)
        inputs = []
        for vi in declared_inputs(model):
            shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            n = int(np.prod(shape))
            dt = onnx_dtype(vi.type.tensor_type.elem_type, vi.name).np
            inputs.append((np.arange(n).reshape(shape) / n).astype(dt))
        expected = [_read_pb(case.source[:-5] + "_output_0.pb")]
        return model, [(inputs, expected)], 1e-3, 1e-7
    model = onnx.load(os.path.join(case.source, "model.onnx"))
    sets = [(_read_pbs(ds, "input"), _read_pbs(ds, "output"))
            for ds in sorted(glob.glob(os.path.join(case.source, "test_data_set_*")))]
    return model, sets, 1e-3, 1e-7


def _read_pbs(data_set: str, kind: str) -> list:
    """A test data set's input_<i>.pb (or output_<i>.pb) arrays, in the order of i."""
    paths = glob.glob(os.path.join(data_set, f"{kind}_*.pb"))
    return [_read_pb(p) for p in sorted(paths, key=lambda p: int(p.rsplit("_", 1)[1][:-3]))]


def run_case(case: Case) -> str:
    """'' on success, else a one-line reason."""
    try:
        model, sets, rtol, atol = load_case(case)
        rep = backend.prepare(model)
        for inputs, expected in sets:
            got = list(rep.run(inputs))
            if len(got) != len(expected):
                return f"{len(got)} outputs, expected {len(expected)}"
            for i, (g, e) in enumerate(zip(got, expected)):
                e = np.asarray(e)
                if e.dtype == object:
                    return "string outputs are not supported"
                if g.dtype != e.dtype:
                    return f"output {i} dtype {g.dtype}, expected {e.dtype}"
                if g.shape != e.shape:
                    return f"output {i} shape {g.shape}, expected {e.shape}"
                reason = mismatch(i, g, e, rtol, atol)
                if reason:
                    return reason
        return ""
    except Exception as err:  # a conformance run reports every failure as data
        msg = str(err).splitlines()[0] if str(err) else ""
        return f"{type(err).__name__}: {msg}"[:300]


def mismatch(i: int, got, want, rtol: float, atol: float) -> str:
    """'' where `got` is within onnx's tolerance of `want` (NaN equal to NaN), else the reason:
    output i's largest absolute error, and how many elements are beyond the tolerance."""
    g, w = np.asarray(got, np.float64), np.asarray(want, np.float64)
    ok = np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
    if ok.all():
        return ""
    err = np.nan_to_num(np.abs(g - w), nan=np.inf)
    worst = float(np.max(np.where(ok, 0.0, err)))
    return (f"mismatch: output {i}, max abs error {worst:.3g} ({int((~ok).sum())} of {ok.size} "
            f"elements beyond rtol {rtol:g}, atol {atol:g})")


# A numeric mismatch is listed with the largest error it may have: `mismatch: output I, max abs
# error <= E`. The same case failing with a larger error, on another output, or for any other
# reason is a new failure; every other entry must fail with exactly the reason listed.
_MISMATCH = re.compile(r"mismatch: output (\d+), max abs error (?:<= )?([^\s(]+)")


def expected_form(reason: str) -> str:
    """The reason as the expected-failures file lists it: a mismatch with its error rounded up
    to two digits as the allowance, anything else as it is."""
    m = _MISMATCH.match(reason)
    if not m:
        return reason
    err = float(m[2])
    if 0 < err < math.inf:
        step = 10.0 ** (math.floor(math.log10(err)) - 1)
        err = math.ceil(err / step) * step
    return f"mismatch: output {m[1]}, max abs error <= {err:.1e}"


def same_failure(expected: str, actual: str) -> bool:
    """Whether `actual` is the failure listed as `expected` (see _MISMATCH)."""
    e, a = _MISMATCH.match(expected), _MISMATCH.match(actual)
    if e and a:
        return e[1] == a[1] and float(a[2]) <= float(e[2])
    return expected == actual


def compare(results: dict[str, str], expected: dict[str, str]) -> tuple[list, list, list]:
    """(new, changed, fixed) case names: failing and not listed; listed and failing for another
    reason (or with a larger error); listed and passing."""
    new = sorted(n for n, r in results.items() if r and n not in expected)
    changed = sorted(n for n, r in results.items() if r and n in expected
                     and not same_failure(expected[n], r))
    fixed = sorted(n for n, r in results.items() if not r and n in expected)
    return new, changed, fixed


def report(results: dict[str, str], expected: dict[str, str]) -> str:
    """'' where every result is what the expected-failures file says, else what differs."""
    new, changed, fixed = compare(results, expected)
    msg = []
    if new:
        msg.append(f"{len(new)} new failures:\n" + "\n".join(f"  {n}: {results[n]}" for n in new))
    if changed:
        msg.append(f"{len(changed)} expected failures that fail differently now:\n" + "\n".join(
            f"  {n}: {results[n]}\n    (listed: {expected[n]})" for n in changed))
    if fixed:
        msg.append(f"{len(fixed)} unexpected passes (remove them from the expected-failures file):\n"
                   + "\n".join(f"  {n}" for n in fixed))
    return "\n".join(msg)


def _worker(case):
    np.seterr(all="ignore")
    warnings.simplefilter("ignore")
    t = time.perf_counter()
    return case.name, run_case(case), time.perf_counter() - t


def run_all(cases: list[Case], jobs: int = 1, progress=None) -> dict[str, str]:
    if jobs <= 1:
        return _results(map(_worker, cases), progress)
    import multiprocessing as mp
    with mp.get_context("spawn").Pool(jobs, maxtasksperchild=200) as pool:
        return _results(pool.imap_unordered(_worker, cases, chunksize=4), progress)


def _results(done, progress) -> dict[str, str]:
    """{case name: failure reason} from _worker's answers, each told to `progress`."""
    results = {}
    for name, reason, _ in done:
        results[name] = reason
        if progress:
            progress(name, reason)
    return results


def read_expected(path: str = EXPECTED_FILE) -> dict[str, str]:
    out = {}
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, reason = line.partition("#")
                out[name.strip()] = reason.strip()
    return out


def write_expected(results: dict[str, str], path: str) -> None:
    with open(path, "w") as f:
        f.write("# ONNX conformance cases lgc is expected to fail, with the reason each fails.\n"
                "# Regenerate with: python -m lgc.conformance --write-expected "
                "tests/conformance_expected_failures.txt\n")
        for name in sorted(results):
            if results[name]:
                f.write(f"{name}  # {expected_form(results[name])}\n")


def summarize(cases: list[Case], results: dict[str, str], out=sys.stdout) -> tuple[int, int]:
    total_p = total_f = 0
    for cat in CATEGORIES:
        names = [c.name for c in cases if c.category == cat]
        if not names:
            continue
        f = sum(1 for n in names if results.get(n))
        print(f"{cat}: {len(names) - f} passed, {f} failed", file=out)
        total_p += len(names) - f
        total_f += f
    print(f"{total_p} passed, {total_f} failed", file=out)
    return total_p, total_f


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lgc.conformance", description=__doc__.split("\n\n")[0])
    ap.add_argument("--category", action="append", choices=CATEGORIES,
                    help="run only these categories (repeatable; default all)")
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each failure")
    ap.add_argument("--write-expected", metavar="FILE", help="write the failures to FILE")
    args = ap.parse_args(argv)
    cases = collect(tuple(args.category or CATEGORIES), args.k)

    def progress(name, reason):
        if args.verbose and reason:
            print(f"FAIL {name}: {reason}", flush=True)
    results = run_all(cases, args.jobs, progress)
    if args.write_expected:
        write_expected(results, args.write_expected)
    summarize(cases, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
