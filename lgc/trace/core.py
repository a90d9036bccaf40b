"""The tracing core moved down to lgc.ops.core (below the op rules, as in JAX); this module
keeps the old import path working. New code imports lgc.ops.core."""
from ..ops.core import (ArrayBase, ConcretizationError, MainTrace, ShapedArray,  # noqa: F401
                        Trace, Tracer, UnexpectedTracerError, aval_of_type, bind, bind_list,
                        dynamic_mains, find_top_trace, full_raise, get_aval, infer_avals, new_main,
                        register_eval_trace, to_numpy_const)
