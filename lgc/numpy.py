"""`lgc.numpy`: NumPy's API on traced and device arrays, as jax.numpy is JAX's.

The implementation lives in the tracing front end (lgc/trace/numpy.py), beside the tracing
machinery it is built on and uses; this is its public name, the same module object.
"""
import sys

from .trace import numpy

sys.modules[__name__] = numpy
