"""JAX-style tracing: lgc.jit, lgc.make_ir, device Arrays and eager execution.

The trace machinery (abstract values, tracers, bind) is lgc/ops/core.py, below the op
rules; this package is the front end on it: eager.py has the device Array and op-by-op
execution (the eval trace, registered with the core here), jit.py graph tracing and the
compile cache, pytree.py the containers arguments and results may be nested in, and
array_methods.py the operators and methods every array gets (installed here).
lgc.numpy and lgc.nn are built on `bind`.
"""
from ..ops.core import (ConcretizationError, ShapedArray, UnexpectedTracerError, bind,  # noqa: F401
                        register_eval_trace)
from .dtypes import enable_x64  # noqa: F401
from .array_methods import install_array_methods
from .interpret import eval_graph  # noqa: F401
from .eager import Array, EvalTrace, device_get, device_put  # noqa: F401
from .jit import export, jit, make_ir  # noqa: F401
from . import control  # noqa: F401  (sets the while op's batching rule)
from . import core  # noqa: F401  (lgc.trace.core: lgc.ops.core's old path)
from .pytree import register_pytree_node, tree_leaves, tree_map  # noqa: F401

register_eval_trace(EvalTrace)
install_array_methods()
