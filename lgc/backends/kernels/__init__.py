"""Kernel generators of the core op families, one module per lgc.ops family; each gives
`LOWERINGS = {op: generator}`, joined per backend in lgc.backends.lowering."""
