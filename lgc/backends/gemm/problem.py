"""What a GEMM-shaped node asks for, read once: the sizes of C = A @ B, the batch, a
convolution's geometry, and how an int8 op's operands become real values (int8_terms).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ops.linalg import b_shape, mm_shapes, prod
from ...ops.nn import spatial_attrs
from ..fused import unravel
from .loads import Load, gather


@dataclass(frozen=True)
class Matmul:
    """C[batch, M, N] = A @ B of a matmul, qmatmul or qmatmul_nbits(_panels) node. A q-op's x [..., K]
    is M rows of one matrix; `mshape` and `nshape` are the output axes the rows and columns
    span."""
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
        if node.op in ("qmatmul", "qmatmul_nbits", "qmatmul_nbits_panels"):   # x [..., K] times one matrix
            lead, N = A.shape[:-1], node.outputs[0].shape[-1]
            return Matmul((), (), (), prod(lead), A.shape[-1], N, lead, (N,))
        ba, bb, batch, M, K, N, _ = mm_shapes(A.shape, b_shape(B.shape, node.attrs))
        return Matmul(batch, ba, bb, M, K, N, (M,) if len(A.shape) > 1 else (),
                      (N,) if len(B.shape) > 1 else (), bool(node.attrs["trans_b"]))

    def coords(self, b: str, m: str, n: str) -> list[str]:
        """Output coordinates of C[b, m, n]."""
        return (unravel(b, self.batch) if self.batch else []) + axes(m, self.mshape) + axes(n, self.nshape)


def axes(x: str, shape) -> list[str]:
    """Coordinates of flat position x along the output axes `shape` spans."""
    return unravel(x, shape) if len(shape) > 1 else [x] * len(shape)


@dataclass
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

    def __post_init__(self):
        self.Cg, self.Mg, self.KS, self.P = self.C // self.g, self.M // self.g, prod(self.KW), prod(self.O)
        # 1x1 window, stride 1, no pads: X itself is the GEMM's B (per image)
        self.pointwise = self.KS == 1 and set(self.s) == {1} and not any(self.pb + self.pe)

    @staticmethod
    def of(node) -> "Conv":
        X, W, Y = node.inputs[0], node.inputs[1], node.outputs[0]
        at = node.attrs
        w = tuple(at["w_shape"]) if at.get("tm") else W.shape
        r = len(X.shape) - 2
        s, pb, pe, d = spatial_attrs(at, r)
        return Conv(X.shape[0], X.shape[1], w[0], at["group"], tuple(X.shape[2:]), tuple(w[2:]),
                    tuple(Y.shape[-r:]), s, pb, pe, d, at.get("splits", 1), at.get("tm", 0))

    def flattened(self) -> "Conv":
        """A pointwise conv as a 1-D one over the flattened image (small images fill vectors)."""
        if not self.pointwise or len(self.S) == 1:
            return self
        return Conv(self.N, self.C, self.M, self.g, (prod(self.S),), (1,), (self.P,), (1,), (0,),
                    (0,), (1,), self.splits, self.tm)


@dataclass(frozen=True)
class Affine:
    """value * scale + bias on each finished accumulator: an int8 op's scales (x's and w's:
    they factor out of the sum) and bias, or a float conv's bias on the GPU. Each term is
    (Load, where): read at C's "row", its "col", or element 0 ("one")."""
    scale: tuple = ()
    bias: tuple | None = None

    def apply(self, value: str, row: str, cols: list[str]) -> str:
        """`value`, whose lanes are C[row, cols[j]], scaled and biased."""
        def at(terms):
            lanes = [" * ".join(x.scalar({"row": row, "col": c, "one": "0"}[w]) for x, w in terms) for c in cols]
            return lanes[0] if len(set(lanes)) == 1 else gather("float", lanes)
        out = f"{value} * ({at(self.scale)})" if self.scale else value
        return f"({out} + {at([self.bias])})" if self.bias else f"({out})"


def int8_terms(node):
    """(x's zero point as a function of x's row, or None; the Affine) of a qmatmul (w's
    scale per column of C) or qconv (per row: output channel). Dynamic quantization gives a
    qmatmul's x a scale and zero point per row."""
    ins, along = node.inputs, "col" if node.op == "qmatmul" else "row"
    w_scale, bias = Load("in2", ins[2].dtype), Load("in3", ins[3].dtype)
    if len(ins) <= 4:
        return None, Affine(((w_scale, along),), (bias, along))
    per_row = ins[4].type.size > 1
    zero = (lambda row: f"in5[{row}]") if per_row else (lambda row: "in5[0]")
    return zero, Affine(((w_scale, along), (Load("in4", ins[4].dtype), "row" if per_row else "one")), (bias, along))
