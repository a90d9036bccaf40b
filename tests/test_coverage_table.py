"""The coverage table of docs/TRACING.md matches the code (`python -m lgc.tools.coverage`
rewrites it), and the name extraction of scripts/jax_names.py reads a module as Python runs it."""
import importlib.util
import types
from pathlib import Path

from lgc.tools import coverage

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "jax_names.py"


def _jax_names_script():
    spec = importlib.util.spec_from_file_location("jax_names", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_in_tracing_md_is_up_to_date():
    assert coverage.main(["--check"]) == 0, f"stale: run `{coverage.REGENERATE}`"


def test_check_fails_on_a_stale_table(tmp_path, monkeypatch):
    doc = coverage.DOC_FILE.read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| `jax.nn` |"))
    stale = tmp_path / "TRACING.md"
    stale.write_text(doc.replace(row, "| `jax.nn` | 0 / 1 | 0% |"))
    monkeypatch.setattr(coverage, "DOC_FILE", stale)
    assert coverage.main(["--check"]) == 1
    assert coverage.main([]) == 0 and stale.read_text() == doc


def test_a_name_is_missing_when_getattr_explains_its_absence():
    namespace = types.ModuleType("fake")
    namespace.sin = abs

    def explain(name):
        raise AttributeError(f"fake has no {name!r} yet")
    namespace.__getattr__ = explain
    assert coverage.has_name(namespace, "sin") and not coverage.has_name(namespace, "cos")
    assert coverage.lgc_namespace("jax.numpy.no_such_submodule") is None


SOURCE = '''
from jax.fake import sub as sub
from jax._src.impl import (f as f, g as renamed, helper, _private as _private)
from jax._src.impl import add_p as add_p
import typing as _typing
def h(): pass
class K: pass
CONSTANT = 1
del helper
try:
    from jax._src.new import newer as newer
except ImportError:
    pass
_deprecations = {"old": ("old is deprecated", None), "f": ("f is deprecated", f)}
if _typing.TYPE_CHECKING:
    only_for_type_checkers = 1
else:
    __getattr__ = None
'''


def test_public_names_follow_run_time_bindings():
    jax_names = _jax_names_script()
    is_module = lambda module, name: (module, name) == ("jax.fake", "sub")   # noqa: E731
    names = jax_names.public_names(SOURCE, is_module)
    assert names == ["CONSTANT", "K", "h", "newer", "renamed"]
    assert jax_names.public_names("from x import a as a, b as b\n__all__ = ['b']") == ["b"]
