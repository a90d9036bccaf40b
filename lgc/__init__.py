"""lgc: a compiler for the GPUs the vendors left behind (OpenCL 1.2+, tuned for AMD GCN)."""
from .version import __version__  # noqa: F401
from . import ops  # noqa: F401  (declares every core op in lgc.ir.registry)

from . import lax, nn, numpy, onnx, optim, random, scipy, tree, tree_util  # noqa: E402,F401  (lgc.numpy etc., as jax.numpy)
from . import snn  # noqa: E402,F401  (spiking networks, on the above)
from .api import Executable, Model, compile, load  # noqa: E402,F401
from .generation import generate  # noqa: E402,F401
from .errors import ArtifactError, InputError, LgcError, ModelError, UnsupportedOp  # noqa: E402,F401
from .trace import Array, device_get, device_put, jit, make_ir  # noqa: E402,F401
from .trace.jit import export  # noqa: E402,F401
from .trace.autodiff import (custom_jvp, custom_vjp, grad, hessian, jacfwd,  # noqa: E402,F401
                             jacrev, jvp, value_and_grad, vjp)
from .trace.batching import vmap  # noqa: E402,F401
from .trace.remat import checkpoint, checkpoint_policies, remat  # noqa: E402,F401


def __getattr__(name):
    """`lgc.torch` loads on first use: it imports torch, which `import lgc` must not."""
    if name == "torch":
        import importlib
        return importlib.import_module(f"{__name__}.torch")
    raise AttributeError(f"module 'lgc' has no attribute {name!r}")
