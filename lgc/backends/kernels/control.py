"""OpenCL kernels of the control op family (lgc.ops.control holds their semantics)."""
from __future__ import annotations


class _HostLoop:
    """No kernel of its own: lgc.backends.program lowers cond and body into the same program
    and the runtime runs the loop around their launches."""

    def kernels(self, node, name):
        raise NotImplementedError("the while op is lowered by lgc.backends.program, not as a kernel")


LOWERINGS: dict = {"while": _HostLoop()}
