"""OpenCL kernels of the misc op family (lgc.ops.misc holds their semantics)."""

LOWERINGS: dict = {}
