"""JAX-style tracing: lgc.jit, lgc.make_ir, device Arrays and eager execution.

core.py has the trace machinery (abstract values, tracers, bind), eager.py the device
Array and op-by-op execution, jit.py graph tracing and the compile cache, pytree.py the
containers arguments and results may be nested in. lgc.numpy and lgc.nn are built on `bind`.
"""
from .core import ConcretizationError, ShapedArray, UnexpectedTracerError, bind  # noqa: F401
from .dtypes import enable_x64  # noqa: F401
from .interpret import eval_graph  # noqa: F401
from .eager import Array, device_get, device_put  # noqa: F401
from .jit import export, jit, make_ir  # noqa: F401
from .pytree import register_pytree_node, tree_leaves, tree_map  # noqa: F401
