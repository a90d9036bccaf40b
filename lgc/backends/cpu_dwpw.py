"""A depthwise conv, its activation and the 1x1 conv after it in one CPU kernel (MobileNets).

In an inverted residual block the depthwise conv's output (C expanded channels) is written
by one kernel and read back by the 1x1 projection's GEMM. Here a work-item owns one 8-wide
segment (as cpu_depthwise's vector kernel computes it) of R = 4 or 2 output rows of one image
and a range of output-channel tiles. For every input channel it computes the segment's
depthwise values, the input rows visited once for all R rows (vloads inside the image; at its
edges, columns known when generated, the rows built in registers), adds the bias and runs the
activation (the elementwise chain: ReLU6, hard-swish, ...) on float16 pairs of rows, holding
the C x R x 8 values in a private array. Then it runs the 1x1 conv from that array in register
tiles of T = 8 or 16 output channels x R x 8 pixels (R / 2 float16 accumulators a row, the
packed-panel GEMM's shape), A the weights as row panels of 4 read as scalars (broadcast loads;
float4 loads were split into lanes by shuffles that competed with the multiply-adds). The
tile's store applies the fusion epilogue (residual add). The intermediate never goes to memory
and the projection's launch goes away. Small maps leave few work-items (7 x 7: 4): there the
output channels are split over work-items too, each recomputing its depthwise values.

  depthwise_pointwise(X [N, C, H, W], Wd [C, 1, KH, KW], bd [C], Wp panels, bp [M])
      -> [N, M, OH, OW]   (semantics and NumPy reference in lgc.ops.lowered)

`fusable` decides (for the lowering and for `lgc compile --explain`) whether a 1x1 conv and
the depthwise conv before it fit.
"""
from __future__ import annotations

from collections import Counter

from ..ir import dtypes
from ..ir.graph import Node
from ..ops.lowered import CHAIN_OPS, PACKED_TILE, ROWS
from .cpu_depthwise import VEC, rows_taps
from .emit import write
from .gemm.store import NO_UNROLL
from .kernel import Kernel, Template, index_type_for, template_args
from .kernels.elementwise import BINARY
from .target import current_target
from .templates import literal

PRIVATE_BYTES = 65536    # the private array of depthwise results: C x R x 8 floats at most
MAX_CHANNELS = PRIVATE_BYTES // (2 * VEC * 4)     # with R = 2 rows: 1024
ITEMS_PER_CU = 2         # work-items a launch should have per compute unit: small maps split
                         # the output channels (each part computes the depthwise values again).
                         # 7x7 and 14x14 MobileNetV2 layers on 2 CUs: 0.75-0.95x the kernel
                         # time at 2 per CU against 8 per CU
# Output rows this wide stay on the two kernels: MobileNetV2/V3's layers with 28 x 28 outputs
# took 1.0-1.25x the kernel time fused; 112, 56, 14 and 7 wide ones 0.6-0.95x (AMD EPYC Zen 4,
# 2 cores, interleaved, in the model and alone)
SLOWER_WIDTHS = (17, 32)


# ---- the pattern ------------------------------------------------------------------------------

def fusable(pw: Node, producer, uses, consts) -> tuple[Node | None, tuple, str]:
    """(the depthwise conv, the chain, "") when 1x1 conv `pw` reads a depthwise conv through
    an elementwise chain only it reads; else (dw or None, (), why not)."""
    X, Wp = pw.inputs[:2]
    at = pw.attrs
    if (len(X.shape) != 4 or at["group"] != 1 or Wp not in consts or tuple(Wp.shape[2:]) != (1, 1)
            or set(at["strides"]) - {1} or any(at["pads"]) or set(at["dilations"]) - {1}):
        return None, (), "not a 1x1 conv with constant weights"
    found = _chain(X, producer, consts)
    if found is None:
        return None, (), "its input is not a depthwise conv through elementwise ops"
    dw, nodes, chain = found
    readers = [dw.outputs[0]] + [n.outputs[0] for n in nodes]
    inside = {dw.outputs[0]: 0}
    for n in nodes:
        for v in n.inputs:
            inside[v] = inside.get(v, 0) + 1
    extra = [v for v in readers if uses[v] != inside.get(v, 0) + (v is X)]
    if extra:
        return dw, (), f"{extra[0].name or 'the depthwise output'} has readers besides the 1x1 conv"
    strides, dilations = tuple(dw.attrs["strides"]) or (1, 1), tuple(dw.attrs["dilations"]) or (1, 1)
    if not all(v.dtype.name == "f32" for v in list(dw.inputs) + list(pw.inputs) + list(pw.outputs)):
        return dw, (), "not float32"
    if strides[1] not in (1, 2) or set(dilations) - {1}:
        return dw, (), f"strides {strides}, dilations {dilations}: not the vector kernel's"
    if X.shape[1] > MAX_CHANNELS:
        return dw, (), f"{X.shape[1]} channels, more than the private array's {MAX_CHANNELS}"
    OW = pw.outputs[0].shape[3]
    if SLOWER_WIDTHS[0] <= OW <= SLOWER_WIDTHS[1]:
        return dw, (), f"rows of {OW} outputs, where the two kernels apart measured faster"
    return dw, chain, ""


def _chain(y, producer, consts):
    """(dw conv, chain nodes in graph order, chain steps) when y is computed from a depthwise
    conv's output by CHAIN_OPS / relu with scalar constants; else None."""
    order: list[Node] = []
    names: dict = {}
    root: list[Node] = []

    def visit(v) -> bool:
        if v in names:
            return True
        n = producer.get(v)
        if n is None:
            return False
        if n.op == "conv" and _depthwise(n) and (not root or root[0] is n):
            root[:] = [n]
            names[v] = "v0"
            return True
        if n.op not in CHAIN_OPS and n.op != "relu" or v.shape != y.shape:
            return False
        for u in n.inputs:
            if u in consts and consts[u].size == 1:
                continue
            if u.shape != y.shape or not visit(u):
                return False
        order.append(n)
        names[v] = f"v{len(order)}"
        return True

    if not visit(y) or not root:
        return None
    steps = []
    for n in order:
        args = [names[u] if u in names else repr(float(consts[u].reshape(()))) for u in n.inputs]
        steps.append(("max", args[0], "0.0") if n.op == "relu" else (n.op, *args))
    return root[0], order, tuple(steps)


def _depthwise(n: Node) -> bool:
    X, W = n.inputs[:2]
    return (len(X.shape) == 4 and n.attrs["group"] == X.shape[1] and n.attrs["group"] > 1
            and tuple(W.shape[:2]) == (X.shape[1], 1))


def explain(graph, settings) -> list[str]:
    """A line per depthwise conv of `graph`: fused with the 1x1 conv after it, or why not
    (what `lgc compile --explain` prints on CPU targets)."""
    if not (settings.cpu_dwpw and settings.cpu_depthwise and settings.cpu_panels):
        return ["depthwise_pointwise: off (LGC_CPU_DWPW, LGC_CPU_DEPTHWISE or LGC_CPU_PANELS is 0)"]
    consts = graph.constants()
    producer = {v: n for n in graph.nodes for v in n.outputs}
    uses = Counter([v for n in graph.nodes for v in n.inputs] + list(graph.outputs))
    said = {}
    for n in graph.nodes:
        if n.op == "conv":
            dw, chain, why = fusable(n, producer, uses, consts)
            if dw is not None:
                said[dw] = f"fused with 1x1 conv {n.name}" if not why else f"not fused with {n.name}: {why}"
    return [f"depthwise_pointwise: conv {n.name}: {said.get(n, 'no 1x1 conv reads it through elementwise ops only')}"
            for n in graph.nodes if n.op == "conv" and _depthwise(n)]


# ---- the kernel -------------------------------------------------------------------------------

def tile_rows(R: int, M: int) -> int:
    """Output channels per register tile: 16 where a row's pixels are one float16 (R = 2)
    and M allows, halving the passes over the private array; else 8 (R = 4: two float16)."""
    return 16 if R == 2 and M % 16 == 0 else PACKED_TILE


def rows_per_item(nseg: int, OH: int, C: int, want: int) -> int:
    """Output rows per work-item: 4 (input rows shared by more outputs, the A loads by 32
    columns) while that leaves `want` work-items and the private array fits, else 2."""
    return 4 if nseg * -(-OH // 4) >= want and C * 4 * VEC * 4 <= PRIVATE_BYTES else 2


def _chain_lines(chain, vt: str) -> list[str]:
    """v1.. = the chain's steps on vectors (v0 given), each op as the elementwise kernels
    write it (max/min keep a NaN, as the unfused graph and run_chain do); constants as float
    literals."""
    def arg(a):
        return a if a.startswith("v") else literal(float(a), dtypes.f32)
    return [f"const {vt} v{i + 1} = {BINARY[op](arg(x), arg(y), dtypes.f32, {})};"
            for i, (op, x, y) in enumerate(chain)]


class DepthwisePointwiseGen(Template):
    def kernels(self, node, name, epilogue=None):
        X, Wd, bd, Wp, bp = node.inputs
        Y = node.outputs[0]
        at = node.attrs
        N, C, H, W = X.shape
        KH, KW = Wd.shape[2:]
        M, OH, OW = Y.shape[1:]
        (sh, sw), dh = at["strides"], at["dilations"][0]
        pt, pl = at["pads"][:2]
        nseg = -(-OW // VEC)
        want = ITEMS_PER_CU * current_target().compute_units
        R = rows_per_item(nseg, OH, C, want)
        strips = nseg * -(-OH // R)
        T = tile_rows(R, M)
        tiles = -(-M // T)
        per = -(-tiles // min(tiles, -(-want // strips)))     # tiles per work-item
        groups = -(-tiles // per)
        it = index_type_for(X.type.size, Y.type.size)
        b = [f"const {it} q = ({it})get_global_id(0);",
             f"const {it} g = ({it})get_global_id(1);",
             f"const {it} n = ({it})get_global_id(2);",
             f"const {it} oy0 = q / {nseg} * {R}, ox = q % {nseg} * {VEC}, x0 = ox * {sw} - {pl};",
             f"float16 h_[{C * R // 2}];",
             f"for ({it} c = 0; c < {C}; ++c) {{",
             f"  const __global float* src = in0 + (n * {C} + c) * {H * W};",
             f"  const __global float* wk = in1 + c * {KH * KW};"]
        b += ["  " + ln for ln in rows_taps(it, VEC, R, H, W, KH, KW, sh, sw, dh, pt, pl, nseg, "in2[c]")]
        last = f"v{len(at['chain'])}"
        for j in range(R // 2):      # two rows' segments in one float16, through the activation
            b += ["  { " + f"const float16 v0 = (float16)(a{2 * j}, a{2 * j + 1});"]
            b += ["    " + ln for ln in _chain_lines(at["chain"], "float16")]
            b += [f"    h_[c * {R // 2} + {j}] = {last}; }}"]
        b.append("}")
        b += self._gemm(it, C, M, OH, OW, R, T, tiles, per, Y, epilogue)
        flops = 2 * N * OH * OW * (KH * KW * C * groups + C * M)
        return [Kernel(name, template_args(node.inputs, epilogue, Y), b, global_size=(strips, groups, N),
                       local_size=(1, 1, 1), index_type=it, node_name=node.name or "", flops=flops)]

    @staticmethod
    def _gemm(it, C, M, OH, OW, R, T, tiles, per, Y, epilogue) -> list[str]:
        """The 1x1 conv from h_: tiles g * per .. of T output channels x the strip's R x 8
        pixels, R / 2 float16 accumulators per tile row."""
        H2 = R // 2
        row = (lambda i: f"min(m0 + {i}, {M - 1})") if M % T else (lambda i: f"m0 + {i}")
        b = [f"for ({it} t = g * {per}; t < min(({it})((g + 1) * {per}), ({it}){tiles}); ++t) {{",
             f"  const {it} m0 = t * {T};"]
        b += [f"  const __global float* p{k} = in3 + (t * {T // ROWS} + {k}) * {C * ROWS};" for k in range(T // ROWS)]
        b += [f"  float16 " + ", ".join(f"c{i}_{j} = (float16)(in4[{row(i)}])" for j in range(H2)) + ";"
              for i in range(T)]
        b += [f"  for ({it} c = 0; c < {C}; ++c) {{"]
        b += [f"    const float16 h{j} = h_[c * {H2} + {j}];" for j in range(H2)]
        # scalar reads of A: each a broadcast from memory (float4 loads were split into lanes
        # by shuffles that compete with the multiply-adds)
        for i in range(T):
            b.append(f"    {{ const float a = p{i // ROWS}[c * {ROWS} + {i % ROWS}]; "
                     + " ".join(f"c{i}_{j} += a * h{j};" for j in range(H2)) + " }")
        b.append("  }")
        out = epilogue.output if epilogue is not None else Y
        # the tile through a private copy, its rows and segments in loops that stay loops: PoCL
        # compiles each kernel again at its first launch, and 256 unrolled epilogues were most
        # of that time (compile + first run of MobileNetV2 from empty caches: 22.6 -> s)
        b += [f"  float t_[{T * 16 * H2}];"]
        b += [f"  vstore16(c{i}_{j}, {i * H2 + j}, t_);" for i in range(T) for j in range(H2)]
        b += [f"  {NO_UNROLL} for ({it} i = 0; i < {T}; ++i)",
              f"  {NO_UNROLL} for ({it} r = 0; r < {R}; ++r) {{"]
        b += ["    " + ln for ln in _segment_store(it, T, R, M, OH, OW, out.dtype, epilogue)]
        return b + ["  }", "}"]


def _segment_store(it, T: int, R: int, M: int, OH: int, OW: int, dtype, epilogue) -> list[str]:
    """Tile row i's segment of output row oy0 + r (t_[(i * R + r) * 8 ..]) through the
    epilogue, stored with one vstore8 where the segment lies inside the row, else lane by
    lane; rows past M or OH are not stored."""
    m = f"min(m0 + i, ({it}){M - 1})" if M % T else "m0 + i"
    oy = f"min(oy0 + r, ({it}){OH - 1})" if OH % R else "oy0 + r"
    base = f"((n * {M} + {m}) * {OH} + {oy}) * {OW} + ox"
    lanes, lines = [], []
    for j in range(VEC):
        ox = f"min(ox + {j}, ({it}){OW - 1})" if OW % VEC else f"ox + {j}"
        v = f"t_[(i * {R} + r) * {VEC} + {j}]"
        if epilogue is not None:
            ls, v = epilogue(v, ["n", m, oy, ox], f"((n * {M} + {m}) * {OH} + {oy}) * {OW} + {ox}")
            lines += ls
        lanes.append(v)
    lines.append(f"const float{VEC} e = (float{VEC})({', '.join(lanes)});")
    store = f"vstore{VEC}(e, 0, out0 + {base});" if dtype.name == "f32" else ""
    if OW % VEC or not store:
        single = " ".join(f"if (ox + {j} < {OW}) {write('out0', dtype, f'{base} + {j}', f'e.s{j}')}"
                          for j in range(VEC))
        store = f"if (ox + {VEC} <= {OW}) {store} else {{ {single} }}" if store else single
    guards = ([f"m0 + i < {M}"] if M % T else []) + ([f"oy0 + r < {OH}"] if OH % R else [])
    return lines + [f"if ({' && '.join(guards)}) {{ {store} }}" if guards else store]


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering).
LOWERINGS: dict = {"depthwise_pointwise": DepthwisePointwiseGen()}
