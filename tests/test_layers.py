"""The layers of docs/ARCHITECTURE.md, beyond what import-linter checks (.ci/run runs
`lint-imports` with the contracts in pyproject.toml): OpenCL C is written only in
lgc/backends, and pyopencl is imported only in lgc/runtime."""
import ast
import re
from pathlib import Path

LGC = Path(__file__).resolve().parent.parent / "lgc"

# What OpenCL C source looks like: kernel and address-space qualifiers, work-item functions,
# vector loads and stores, barriers.
OPENCL_C = re.compile(r"__kernel\b|__global\b|__local\b|get_global_id\(|get_local_id\(|"
                      r"vload_half|vstore_half|\bvload\d|\bvstore\d|barrier\(CLK_")
# Where a pattern may appear outside lgc/backends, and why.
ALLOWED = {
    ("runtime/executor.py", "__kernel"): "finds kernel names in a built program's source",
    ("runtime/artifact.py", "__kernel"): "checks an artifact's launches name its kernels",
}


def _python_files(under: Path):
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def test_opencl_c_only_in_backends():
    found = []
    for path in _python_files(LGC):
        rel = path.relative_to(LGC).as_posix()
        if rel.startswith("backends/"):
            continue
        for m in OPENCL_C.finditer(path.read_text()):
            if (rel, m.group().rstrip("(")) not in ALLOWED:
                found.append(f"{rel}: {m.group()}")
    assert not found, "OpenCL C outside lgc/backends: " + ", ".join(sorted(set(found)))


def test_pyopencl_only_in_runtime():
    found = []
    for path in _python_files(LGC):
        rel = path.relative_to(LGC).as_posix()
        if rel.startswith("runtime/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{rel}: {n}" for n in names if n.split(".")[0] == "pyopencl"]
    assert not found, "pyopencl imported outside lgc/runtime: " + ", ".join(found)


def test_import_linter_contracts_hold():
    """The contracts of pyproject.toml (layers, no cycles between packages, pyopencl only in
    the runtime), as .ci/run checks them: a failure here names the offending import."""
    import shutil
    import subprocess
    exe = shutil.which("lint-imports")
    assert exe, "import-linter is a test dependency (pip install -e '.[test]')"
    done = subprocess.run([exe, "--no-cache"], cwd=LGC.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_old_import_paths_still_work():
    """Paths users may have, kept as thin re-exports when their modules moved."""
    import importlib
    for module, name in [("lgc.codegen.target", "GFX803"), ("lgc.codegen.program", "lower"),
                         ("lgc.artifact", "save_artifact"), ("lgc.compile_cache", "key_for"),
                         ("lgc.trace.core", "bind"), ("lgc.cli", "main"), ("lgc.bench", "bench"),
                         ("lgc.conformance", "main"), ("lgc.onnx.backend", "prepare"),
                         ("lgc.numpy", "sum")]:
        assert hasattr(importlib.import_module(module), name), (module, name)
    import lgc
    for face in ("numpy", "nn", "lax", "random", "tree_util", "onnx"):   # as `import jax` does
        assert hasattr(lgc, face), face
