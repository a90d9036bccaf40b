"""Shape queries and the assertions torch.export leaves in graphs. Shapes are concrete at
import, so a SymInt becomes a plain int and an assertion about one has nothing left to check
at run time (the caller checked the input shapes against the program's constraints)."""
from __future__ import annotations

import math

from . import converter
from .layout import axis


@converter("aten.sym_size.int")
def sym_size(ctx, x, dim):
    return x.shape[axis(dim, x.type.rank)]


@converter("aten.sym_numel.default")
def sym_numel(ctx, x):
    return x.type.size


@converter("aten.sym_stride.int")
def sym_stride(ctx, x, dim):
    """Strides of the contiguous layout lgc stores every tensor in."""
    return math.prod(x.shape[axis(dim, x.type.rank) + 1:])


@converter("aten.sym_storage_offset.default")
def sym_storage_offset(ctx, x):
    return 0


@converter("aten._local_scalar_dense.default")
def local_scalar_dense(ctx, x):
    known = ctx.value(x)
    if known is None:
        raise NotImplementedError("a tensor's value used as a Python number (.item()) is "
                                  "only known for constants")
    return known.item()


@converter("aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
           "aten.sym_constrain_range.default", "aten.sym_constrain_range_for_size.default",
           "aten._assert_async.default", "aten._assert_async.msg")
def assertion(ctx, *args, **kwargs):
    return None
