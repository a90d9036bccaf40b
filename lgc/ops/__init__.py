"""Core op families. Importing this package registers every op in lgc.ir.registry.

The import below is the one list of the families: each module declares its ops (type rule,
NumPy reference, fusion class, rules) when imported. The other modules are what the
families are written with: core (tracing: bind), prim (array functions for the rules),
dtypes, batch_rules and _rules."""
from . import (complex, control, elementwise, fft, indexing, layout, linalg, lowered,  # noqa: F401
               misc, nn, quant, recurrent, reduce, sparse, spike)
