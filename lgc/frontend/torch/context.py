"""What an ATen converter sees: the ONNX front end's folding Context plus PyTorch's dtypes,
type promotion and Python scalars.

ATen operators take Python numbers where ONNX takes tensors (`add.Scalar(x, 2.0)`), and
promote types by PyTorch's rules; `promote` and `tensor` turn those into typed lgc Values.
`onnx(...)` runs an ONNX converter on Values, for the operators whose ONNX twin already
decomposes them (LayerNormalization, Gelu, ...).
"""
from __future__ import annotations

import numpy as np

from ...errors import UnsupportedOp
from ...ir import dtypes
from ...ir.graph import Value
from ..onnx.context import Context
from ..onnx.converters import CONVERTERS as ONNX_CONVERTERS

# torch dtype (by its str) -> lgc dtype
_DTYPES = {"torch.float16": dtypes.f16, "torch.float32": dtypes.f32, "torch.float64": dtypes.f64,
           "torch.int8": dtypes.i8, "torch.int16": dtypes.i16, "torch.int32": dtypes.i32,
           "torch.int64": dtypes.i64, "torch.uint8": dtypes.u8, "torch.uint16": dtypes.u16,
           "torch.uint32": dtypes.u32, "torch.uint64": dtypes.u64, "torch.bool": dtypes.bool_}
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}


def lgc_dtype(torch_dtype) -> dtypes.DType:
    """The lgc dtype of a torch.dtype; UnsupportedOp for bfloat16, complex and the like."""
    try:
        return _DTYPES[str(torch_dtype)]
    except KeyError:
        raise UnsupportedOp(f"dtype {torch_dtype} is not supported by lgc") from None


def _category(x) -> int:
    if isinstance(x, Value):
        return _CATEGORY[x.dtype.np.kind]
    return 0 if isinstance(x, bool) else 1 if isinstance(x, int) else 2


class _OnnxNode:
    """The little of an ONNX node that its converters read: attributes, name, output count."""

    def __init__(self, op_type: str, name: str, attrs: dict, num_outputs: int):
        self.op_type, self.name, self.attrs, self.num_outputs = op_type, name, attrs, num_outputs
        self.domain = ""

    def attr(self, name, default=None):
        return self.attrs.get(name, default)


class TorchContext(Context):
    def __init__(self, builder, input_of: dict):
        super().__init__(builder, opset=21, input_of=input_of)
        self.fx_node = None   # the FX node being converted
        self.transposed_of: dict[Value, Value] = {}   # W.T -> W, for constant 2-D W

    @property
    def name(self) -> str:
        return self.fx_node.name if self.fx_node is not None else ""

    # -- dtypes ---------------------------------------------------------------------------
    def out_dtype(self, index: int = 0) -> dtypes.DType | None:
        """The dtype torch recorded for the node's output (its FakeTensor), if it did."""
        val = self.fx_node.meta.get("val") if self.fx_node is not None else None
        if isinstance(val, (list, tuple)):
            val = val[index] if index < len(val) else None
        dt = getattr(val, "dtype", None)
        return None if dt is None else lgc_dtype(dt)

    def promote(self, *xs) -> dtypes.DType:
        """PyTorch's result type of tensors and Python numbers: the highest category (bool <
        integer < float) wins; within it, tensors with dimensions decide over 0-d tensors,
        which decide over Python numbers (int64, float32 by default)."""
        xs = [x for x in xs if x is not None]
        top = max(_category(x) for x in xs)
        groups = ([x for x in xs if isinstance(x, Value) and x.type.rank > 0],
                  [x for x in xs if isinstance(x, Value) and x.type.rank == 0])
        for group in groups:
            same = [x.dtype.np for x in group if _category(x) == top]
            if same:
                return dtypes.from_numpy(np.result_type(*same))
        return (dtypes.bool_, dtypes.i64, dtypes.f32)[top]

    def tensor(self, x, dtype: dtypes.DType) -> Value:
        """x as a Value of `dtype`: a Python number becomes a 0-d constant, a Value is cast."""
        if not isinstance(x, Value):
            return self.const(np.asarray(x, dtype=dtype.np))
        return self.cast(x, dtype)

    def cast(self, v: Value, dtype: dtypes.DType) -> Value:
        return v if v.dtype == dtype else self.op("cast", [v], {"to": dtype.name})

    def scalar(self, value, like: Value) -> Value:
        return self.const(np.asarray(value, dtype=like.dtype.np))

    # -- ONNX converters ------------------------------------------------------------------
    def onnx(self, op_type: str, inputs, num_outputs: int = 1, **attrs):
        """Run the ONNX front end's converter for `op_type` on Values (None: omitted input)."""
        node = _OnnxNode(op_type, self.name, attrs, num_outputs)
        saved = self.node
        self.node = node
        try:
            return ONNX_CONVERTERS[("", op_type)](self, node, *inputs)
        finally:
            self.node = saved
