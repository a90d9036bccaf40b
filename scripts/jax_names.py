"""Write docs/jax_names.json: the public names of the JAX namespaces lgc follows, read from a
jax wheel (or the installed jax package) with `ast`, without importing jax (it needs jaxlib).

    python scripts/jax_names.py [JAX_WHEEL.whl | JAX_PACKAGE_DIR] [--out docs/jax_names.json]

With no path, the installed jax package is read (found with importlib, not imported).
`python -m lgc.tools.coverage` turns the file into the coverage table of docs/TRACING.md.

A name is public when the module binds it at run time (from-imports, assignments, defs,
classes; `del` and `__all__` are honoured) and it is not private, not a submodule (jax.numpy's
linalg and fft are rows of their own), not deprecated (the module's `_deprecations`) and not a
primitive (`*_p`: the Primitive objects jax.lax exports for writing transformations).
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import sys
import zipfile
from pathlib import Path

# Namespace -> where its module may live in the jax package (the first that exists is read).
NAMESPACES = {
    "jax.numpy": ["jax/numpy/__init__.py"],
    "jax.numpy.linalg": ["jax/numpy/linalg.py", "jax/numpy/linalg/__init__.py"],
    "jax.numpy.fft": ["jax/numpy/fft.py", "jax/numpy/fft/__init__.py"],
    "jax.lax": ["jax/lax/__init__.py"],
    "jax.nn": ["jax/nn/__init__.py"],
    "jax.random": ["jax/random.py", "jax/random/__init__.py"],
    "jax.scipy.special": ["jax/scipy/special.py", "jax/scipy/special/__init__.py"],
}
EXCLUDED = ("private names (_x), submodules, deprecated names (the module's _deprecations), "
            "primitives (*_p)")
REPO = Path(__file__).resolve().parent.parent


class Source:
    """The files of a jax package, from a wheel (a zip) or a directory holding `jax/`."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_file():
            self._zip = zipfile.ZipFile(path)
            self._names = set(self._zip.namelist())
        else:
            self._zip = None
            self._names = {p.relative_to(path).as_posix() for p in (path / "jax").rglob("*.py")}

    def exists(self, name: str) -> bool:
        return name in self._names

    def read(self, name: str) -> str:
        if self._zip is not None:
            return self._zip.read(name).decode("utf-8")
        return (self.path / name).read_text(encoding="utf-8")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
            or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_statements(body):
    """The statements that run on import, entering if/try blocks; `if TYPE_CHECKING:` bodies
    are for type checkers only and are skipped (their else branches run)."""
    for node in body:
        if isinstance(node, ast.If):
            test = node.test
            if _is_type_checking(test):
                yield from _runtime_statements(node.orelse)
            elif isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) \
                    and _is_type_checking(test.operand):
                yield from _runtime_statements(node.body)
            else:
                yield from _runtime_statements(node.body)
                yield from _runtime_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse,
                          node.finalbody):
                yield from _runtime_statements(block)
        else:
            yield node


def _target_names(target: ast.expr):
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _target_names(element)


def _literal_strings(node: ast.expr) -> list[str]:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, (list, tuple)) else []


def public_names(text: str, is_module=lambda module, name: False) -> list[str]:
    """The public names a module's source binds on import (see the module docstring).
    `is_module(module, name)` says whether `from module import name` imports a submodule."""
    bound: dict[str, None] = {}
    all_names = deprecated = None
    for node in _runtime_statements(ast.parse(text).body):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if node.level or not is_module(node.module, alias.name):
                    bound[alias.asname or alias.name] = None
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound[node.name] = None
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [n for t in targets for n in _target_names(t)]
            bound.update(dict.fromkeys(names))
            if "__all__" in names and node.value is not None:
                all_names = _literal_strings(node.value)
            if "_deprecations" in names and isinstance(node.value, ast.Dict):
                deprecated = {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                for name in _target_names(target):
                    bound.pop(name, None)
    names = all_names if all_names is not None else bound
    return sorted(n for n in names if not n.startswith("_") and not n.endswith("_p")
                  and n not in (deprecated or ()))


def jax_version(source: Source) -> str:
    for node in ast.parse(source.read("jax/version.py")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_version"
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"jax_names: no _version in {source.path}/jax/version.py")


def collect(source: Source) -> dict:
    def is_module(module, name):
        stem = f"{(module or '').replace('.', '/')}/{name}"
        return source.exists(f"{stem}.py") or source.exists(f"{stem}/__init__.py")

    namespaces = {}
    for namespace, candidates in NAMESPACES.items():
        found = [c for c in candidates if source.exists(c)]
        if not found:
            raise SystemExit(f"jax_names: {source.path} has none of {', '.join(candidates)}")
        namespaces[namespace] = public_names(source.read(found[0]), is_module)
    return {"jax_version": jax_version(source), "source": source.path.name,
            "excluded": EXCLUDED, "namespaces": namespaces}


def _installed_jax() -> Path:
    spec = importlib.util.find_spec("jax")     # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("jax_names: jax is not installed; pass the path of a jax wheel")
    return Path(list(spec.submodule_search_locations)[0]).parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jax", nargs="?", type=Path,
                        help="a jax wheel or a directory holding jax/ (default: installed jax)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "jax_names.json")
    args = parser.parse_args(argv)
    path = args.jax or _installed_jax()
    if not path.exists():
        raise SystemExit(f"jax_names: no such wheel or directory: {path}")
    data = collect(Source(path))
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    counts = ", ".join(f"{ns} {len(names)}" for ns, names in data["namespaces"].items())
    print(f"jax {data['jax_version']}: {counts} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
