"""What a GEMM-shaped node asks for, read once from the node: the sizes of C = A @ B, the
batch, the convolution's geometry, and for the int8 ops (lgc.ops.quant) how their operands
become real values: a zero point subtracted as x is loaded, scales and a bias applied to each
finished accumulator (they factor out of the sum).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ops.linalg import b_shape, mm_shapes, prod
from ...ops.nn import spatial_attrs
from .loads import Load


def unravel(flat: str, shape) -> list[str]:
    """C expressions of the row-major coordinates of position `flat` in `shape`."""
    out, inner = [], 1
    for d in reversed(shape):
        c = f"({flat})" if inner == 1 else f"(({flat}) / {inner})"
        out.append(c if inner * d == prod(shape) else f"({c} % {d})")
        inner *= d
    return out[::-1]


@dataclass(frozen=True)
class Matmul:
    """C[batch, M, N] = A @ B of a matmul or qmatmul node. A qmatmul's x [..., K] is M rows of
    one matrix; `mshape` and `nshape` are the output axes the rows and columns span."""
    batch: tuple
    ba: tuple                # A's and B's own batch shapes (broadcast against `batch`)
    bb: tuple
    M: int
    K: int
    N: int
    mshape: tuple
    nshape: tuple
    trans: bool = False      # B stored [..., N, K]

    @staticmethod
    def of(node) -> "Matmul":
        A, B = node.inputs[:2]
        if node.op == "qmatmul":
            lead = A.shape[:-1]
            return Matmul((), (), (), prod(lead), A.shape[-1], B.shape[1], lead, (B.shape[1],))
        ba, bb, batch, M, K, N, _ = mm_shapes(A.shape, b_shape(B.shape, node.attrs))
        return Matmul(batch, ba, bb, M, K, N, (M,) if len(A.shape) > 1 else (),
                      (N,) if len(B.shape) > 1 else (), bool(node.attrs["trans_b"]))

    def coords(self, b: str, m: str, n: str) -> list[str]:
        """Output coordinates of C[b, m, n]."""
        return (unravel(b, self.batch) if self.batch else []) + axes(m, self.mshape) + axes(n, self.nshape)


def axes(x: str, shape) -> list[str]:
    """Coordinates of flat position x along the output axes `shape` spans."""
    return unravel(x, shape) if len(shape) > 1 else [x] * len(shape)


@dataclass(frozen=True)
class Conv:
    """A conv, conv_split_k or qconv node's geometry: image X [N, C, *S], filter W [M, C/g,
    *KW] (a qconv's logical shape where its weights are stored tiled), output [N, M, *O]."""
    N: int
    C: int
    M: int
    g: int
    S: tuple
    KW: tuple
    O: tuple
    s: tuple
    pb: tuple
    pe: tuple
    d: tuple
    splits: int = 1          # conv_split_k: one GEMM per slice of the input channels
    tm: int = 0              # a qconv's weights stored tiled, tm output channels interleaved

    @staticmethod
    def of(node) -> "Conv":
        X, W, Y = node.inputs[0], node.inputs[1], node.outputs[0]
        at = node.attrs
        w = tuple(at["w_shape"]) if at.get("tm") else W.shape
        r = len(X.shape) - 2
        s, pb, pe, d = spatial_attrs(at, r)
        return Conv(X.shape[0], X.shape[1], w[0], at["group"], tuple(X.shape[2:]), tuple(w[2:]),
                    tuple(Y.shape[-r:]), s, pb, pe, d, at.get("splits", 1), at.get("tm", 0))

    @property
    def Cg(self) -> int:
        return self.C // self.g

    @property
    def Mg(self) -> int:
        return self.M // self.g

    @property
    def KS(self) -> int:
        return prod(self.KW)

    @property
    def P(self) -> int:
        return prod(self.O)

    @property
    def pointwise(self) -> bool:
        """1x1 window, stride 1, no pads: X itself is the GEMM's B (per image)."""
        return self.KS == 1 and all(v == 1 for v in self.s) and not any(self.pb + self.pe)

    def flattened(self) -> "Conv":
        """A pointwise conv as a 1-D one over the flattened image (small images fill vectors)."""
        if not self.pointwise or len(self.S) == 1:
            return self
        return Conv(self.N, self.C, self.M, self.g, (prod(self.S),), (1,), (self.P,), (1,), (0,),
                    (0,), (1,), self.splits, self.tm)


@dataclass(frozen=True)
class Affine:
    """acc * scale + bias applied to each finished accumulator: an int8 op's scales (x's
    and w's: they factor out of the sum) and bias, or a float conv's bias on the GPU. Each
    factor is a buffer read per row of C, per column, or at element 0 (`one`)."""
    rows: tuple = ()         # Loads of per-row factors
    cols: tuple = ()         # Loads of per-column factors
    one: tuple = ()          # Loads of factors read at element 0
    bias: Load | None = None
    bias_by_row: bool = True

    def row_scale(self, row: str) -> str | None:
        f = [x.scalar(row) for x in self.rows] + [x.scalar("0") for x in self.one]
        return " * ".join(f) if f else None

    def col_scale(self, col: str) -> str | None:
        return " * ".join(x.scalar(col) for x in self.cols) if self.cols else None

    def col_bias(self, col: str) -> str | None:
        return None if self.bias is None or self.bias_by_row else self.bias.scalar(col)

    def row_bias(self, row: str) -> str | None:
        return self.bias.scalar(row) if self.bias is not None and self.bias_by_row else None

    def apply(self, value: str, row: str, cols: list[str], col_scale=None, col_bias=None) -> str:
        """`value` (lanes: columns `cols` of row `row`) scaled and biased. col_scale and
        col_bias: vectors of the per-column terms already gathered (else gathered here)."""
        from .loads import gather
        if self.cols and col_scale is None:
            col_scale = gather("float", [self.col_scale(c) for c in cols])
        if not self.bias_by_row and self.bias is not None and col_bias is None:
            col_bias = gather("float", [self.col_bias(c) for c in cols])
        scale = " * ".join(f for f in (col_scale, self.row_scale(row)) if f)
        out = f"{value} * ({scale})" if scale else value
        bias = col_bias or self.row_bias(row)
        return f"({out} + {bias})" if bias else f"({out})"


def int8_terms(node):
    """(x's zero point as a function of x's row, or None; the Affine) of a qmatmul (w's
    scale per column of C) or qconv (per row: output channel). Dynamic quantization gives a
    qmatmul's x a scale and zero point per row."""
    ins = node.inputs
    f32 = ins[2].dtype
    w_scale, bias = Load("in2", f32), Load("in3", f32)
    if len(ins) <= 4:
        x_scale, zero = (), None
    else:
        x_scale = (Load("in4", f32),)
        zero = (lambda row: f"in5[{row}]") if ins[4].type.size > 1 else (lambda row: "in5[0]")
    per_row = bool(x_scale) and ins[4].type.size > 1
    if node.op == "qmatmul":
        return zero, Affine(rows=x_scale if per_row else (), cols=(w_scale,),
                            one=() if per_row else x_scale, bias=bias, bias_by_row=False)
    return zero, Affine(rows=(w_scale,), one=x_scale, bias=bias)
