"""OpenCL kernels of the elementwise op family (lgc.ops.elementwise holds their semantics)."""

LOWERINGS: dict = {}
