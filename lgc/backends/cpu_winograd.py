"""Winograd F(2x2, 3x3) for stride-1 3x3 convs on CPU devices, on the panel GEMM.

Each 2x2 block of outputs (a tile) is A^T [(G g G^T) . (B^T d B)] A, where d is the 4x4
input patch and g the 3x3 filter: 16 products per tile instead of 36 multiply-adds, and
the 16 element positions e are 16 independent GEMMs over the input channels:
  winograd_input(X)            X [N, C, H, W] -> V [N, 16, ceil(T/16), C, 16] (B panels, T tiles)
  matmul_panels(U, V)          U = G g G^T, [16, M, C] packed at compile time -> [N, 16, M, T16]
  winograd_output(Mt[, bias])  -> Y [N, M, OH, OW]; takes the fusion epilogue
The input transform writes 4x fewer values than im2col writes for a 3x3 conv (16 per 4
outputs against 9 per output). Only constant filters (their transform is folded). The two
ops' semantics and NumPy references are in lgc.ops.lowered.
"""
from __future__ import annotations

import numpy as np

from ..ops.lowered import AT, BT, PANEL, G, panels, winograd_out_hw, winograd_tiles
from .cpu_gemm import NO_UNROLL
from .kernel import Arg, Kernel, Template, index_type_for, template_args
from .settings import current_settings


def filter_transform(w: np.ndarray) -> np.ndarray:
    """W [M, C, 3, 3] -> U [16, M, C] (element position e = 4 * row + column)."""
    M, C = w.shape[:2]     # one GEMM with kron(G, G), in float64 (the einsum took ~10x longer)
    u = np.kron(G, G) @ w.reshape(M * C, 9).T.astype(np.float64)      # [16, M*C]
    return u.astype(w.dtype).reshape(16, M, C)


# ---- winograd_input -------------------------------------------------------------------------

def _transform_lines(src, dst, op):
    """Statements for dst[a][b] = sum_ij op[a][i] src[i][j] op[b][j] (op: a 0/+-1 matrix)."""
    def comb(row, terms):
        parts = [("+ " if c > 0 else "- ") + t for c, t in zip(row, terms) if c]
        s = " ".join(parts)
        return s[2:] if s.startswith("+ ") else "-" + s[2:]
    n, k = op.shape
    lines = [f"const float {dst}t{a}_{j} = {comb(op[a], [f'{src}{i}_{j}' for i in range(k)])};"
             for a in range(n) for j in range(k)]
    lines += [f"const float {dst}{a}_{b} = {comb(op[b], [f'{dst}t{a}_{j}' for j in range(k)])};"
              for a in range(n) for b in range(n)]
    return lines


class WinogradInputGen:
    """One work-item per (channel, panel of 16 tiles): loads each tile's 4x4 patch (zero
    outside the image), transforms it, and stores the 16 element positions as 16 panel rows."""

    def kernels(self, node, name):
        X, V = node.inputs[0], node.outputs[0]
        N, C, H, W = X.shape
        pt, pl, _, _ = node.attrs["pads"]
        th, tw = winograd_tiles(winograd_out_hw(X.shape, node.attrs["pads"]))
        T, NP = th * tw, panels(th * tw)
        it = index_type_for(X.type.size, V.type.size)
        # sizes as constants, one kernel per layer shape: as kernel arguments (Kernel.params,
        # shared) this kernel ran 1.24x slower on DenseNet-121 (its 16 divisions per tile)
        sizes = (("C_", C), ("H_", H), ("W_", W), ("T_", T), ("TW_", tw), ("NP_", NP))
        body = [f"const {it} {n} = {v};" for n, v in sizes]
        body += [f"const {it} c = ({it})get_global_id(0);",
                f"const {it} p = ({it})get_global_id(1);",
                f"const {it} n = ({it})get_global_id(2);",
                "__global const float* src = in0 + (n * C_ + c) * H_ * W_;",
                "float r[256];",
                f"for ({it} j = 0; j < 16; ++j) {{",   # (stepping the tile's row and column
                # instead of dividing ran this kernel 2x slower: the iterations then depend)
                f"  const {it} t = min(p * 16 + j, T_ - 1), y0 = (t / TW_) * 2 - {pt}, x0 = (t % TW_) * 2 - {pl};",
                "  const int live = p * 16 + j < T_;"]
        for i in range(4):
            for k in range(4):
                body.append(f"  const float d{i}_{k} = (live && y0 + {i} >= 0 && y0 + {i} < H_ && "
                            f"x0 + {k} >= 0 && x0 + {k} < W_) ? src[clamp(y0 + {i}, ({it})0, H_ - 1) * W_"
                            f" + clamp(x0 + {k}, ({it})0, W_ - 1)] : 0.0f;")
        body += ["  " + ln for ln in _transform_lines("d", "v", BT)]
        body += [f"  r[{a * 4 + b} * 16 + j] = v{a}_{b};" for a in range(4) for b in range(4)]
        body += ["}",
                 "for (int e = 0; e < 16; ++e)",
                 "  vstore16(vload16(e, r), 0, out0 + (((n * 16 + e) * NP_ + p) * C_ + c) * 16);"]
        return [Kernel(name, [Arg("in0", X), Arg("out0", V, writable=True)], body,
                       global_size=(C, NP, N), local_size=(1, 1, 1), index_type=it,
                       node_name=node.name or "")]


# ---- winograd_output ------------------------------------------------------------------------

class WinogradOutputGen(Template):
    """One work-item per (panel of 16 tiles, output channel): the 16 products of 16 tiles as
    16 float16 vectors (lanes = tiles), transformed to 4 vectors of outputs, each output
    through the fusion epilogue and stored where its tile puts it."""

    def kernels(self, node, name, epilogue=None):
        Mt, Y = node.inputs[0], node.outputs[0]
        N, _, M, T16 = Mt.shape
        oh, ow = node.attrs["out_hw"]
        th, tw = winograd_tiles((oh, ow))
        T, NP = th * tw, T16 // PANEL
        it = index_type_for(Mt.type.size, Y.type.size)
        # sizes are kernel arguments (Kernel.params): one kernel for every layer
        params = (("M_", M), ("T16_", T16), ("T_", T), ("TW_", tw), ("OH_", oh), ("OW_", ow))
        body = [f"const {it} p = ({it})get_global_id(0);",
                f"const {it} m = ({it})get_global_id(1);",
                f"const {it} n = ({it})get_global_id(2);"]
        body += [f"const float16 s{i}_{j} = vload16(0, in0 + ((n * 16 + {4 * i + j}) * M_ + m) * T16_ + p * 16);"
                 for i in range(4) for j in range(4)]
        at = np.array(AT)
        lines = _transform_lines("s", "y", at)
        body += [ln.replace("const float ", "const float16 ") for ln in lines]
        if len(node.inputs) == 2:
            body += ["const float bias = in1[m];"]
        st = epilogue.output if epilogue is not None else Y
        # the 16 tiles in a loop over private copies of the outputs (unrolled, with the
        # epilogue 64 times, PoCL's first-launch compile of this kernel took ~3x longer)
        body += ["float y_[64];"] + [f"vstore16(y{a}_{b}, {2 * a + b}, y_);" for a in range(2) for b in range(2)]
        body += [f"{it} ty = (p * 16) / TW_, tx = (p * 16) % TW_;   /* tile j's row and column */",
                 f"const {it} count = min(({it})16, T_ - p * 16);   /* the panel's tiles */"]
        wide = current_settings().cpu_winograd_wide_stores and st.dtype.name == "f32"
        body += _tile_pairs(node, epilogue, it) if wide else _tiles(node, epilogue, st, it)
        args = template_args(node.inputs, epilogue, Y)
        return [Kernel(name, args, body, global_size=(NP, M, N), local_size=(1, 1, 1),
                       index_type=it, node_name=node.name or "", flops=0, params=params)]


def _tiles(node, epilogue, st, it) -> list[str]:
    """The loop over the panel's tiles storing each output on its own (LGC_CPU_WINOGRAD_WIDE_STORES=0,
    or an epilogue that stores another dtype)."""
    body = [NO_UNROLL, f"for ({it} j = 0; j < count; ++j) {{", f"  const {it} oy = ty * 2, ox = tx * 2;"]
    for a in range(2):
        for b in range(2):
            v = f"y_[{(2 * a + b) * 16} + j]" + (" + bias" if len(node.inputs) == 2 else "")
            if epilogue is not None:     # inside the loop's block: it may reuse what it declared there
                lines, v = epilogue(v, ["n", "m", f"min(oy + {a}, OH_ - 1)", f"min(ox + {b}, OW_ - 1)"], _flat(0, a, b))
                body += ["  " + ln for ln in lines]
            guard = ([f"oy + {a} < OH_"] if a else []) + ([f"ox + {b} < OW_"] if b else [])
            store = f"out0[{_flat(0, a, b)}] = ({st.dtype.cl_storage})({v});"
            body.append(f"  if ({' && '.join(guard)}) {store}" if guard else f"  {store}")
    return body + ["  tx += 1; ty += tx == TW_; tx = tx == TW_ ? 0 : tx;", "}"]


def _tile_pairs(node, epilogue, it) -> list[str]:
    """The loop over the panel's tiles two at a time: two tiles side by side in a tile row are
    two float4 rows of outputs, a tile alone two float2 rows (scalars at the image's edge).
    On SqueezeNet 1.1 the output transforms took 0.76x the time of storing each output
    alone (min of 7 profiled rounds, AMD EPYC Zen 4, PoCL)."""
    body = [NO_UNROLL, f"for ({it} j = 0; j < count; j += 2) {{",
            f"  const {it} tx1 = tx + 1 == TW_ ? 0 : tx + 1, ty1 = ty + (tx + 1 == TW_);",
            f"  const {it} oy = ty * 2, ox = tx * 2, oy1 = ty1 * 2, ox1 = tx1 * 2;"]
    body += ["  " + ln for ln in _output_values(node, epilogue)]
    body += ["  if (j + 1 < count && tx1 == tx + 1 && ox + 3 < OW_ && oy + 1 < OH_) {",
             f"    vstore4((float4)(r0_00, r0_01, r1_00, r1_01), 0, out0 + {_flat(0, 0, 0)});",
             f"    vstore4((float4)(r0_10, r0_11, r1_10, r1_11), 0, out0 + {_flat(0, 1, 0)});",
             "  } else {"]
    for t, (oy, ox) in enumerate((("oy", "ox"), ("oy1", "ox1"))):
        live = "j + 1 < count" if t else ""
        body += [f"    if ({live + ' && ' if live else ''}{oy} + 1 < OH_ && {ox} + 1 < OW_) {{",
                 f"      vstore2((float2)(r{t}_00, r{t}_01), 0, out0 + {_flat(t, 0, 0)});",
                 f"      vstore2((float2)(r{t}_10, r{t}_11), 0, out0 + {_flat(t, 1, 0)});",
                 f"    }} else{f' if ({live})' if live else ''} {{",
                 f"      out0[{_flat(t, 0, 0)}] = r{t}_00;",
                 f"      if ({ox} + 1 < OW_) out0[{_flat(t, 0, 1)}] = r{t}_01;",
                 f"      if ({oy} + 1 < OH_) out0[{_flat(t, 1, 0)}] = r{t}_10;",
                 "    }"]
    return body + ["  }", "  tx = tx1 + 1 == TW_ ? 0 : tx1 + 1; ty = ty1 + (tx1 + 1 == TW_);", "}"]


def _flat(t: int, a: int, b: int) -> str:
    """The flat index of output (a, b) of the loop's tile t (0: tile j, 1: tile j + 1)."""
    oy, ox = ("oy", "ox") if t == 0 else ("oy1", "ox1")
    return f"((n * M_ + m) * OH_ + min({oy} + {a}, OH_ - 1)) * OW_ + min({ox} + {b}, OW_ - 1)"


def _output_values(node, epilogue) -> list[str]:
    """Statements declaring r{t}_{a}{b}: output (a, b) of tile j + t after the bias and the
    epilogue (tile j + 1 may not exist: its values are read from tile 15, then dropped; the
    clamped coordinates keep the epilogue's reads inside its operands)."""
    lines = []
    for t in range(2):
        oy, ox = ("oy", "ox") if t == 0 else ("oy1", "ox1")
        for a in range(2):
            for b in range(2):
                v = f"y_[{(2 * a + b) * 16} + {'min(j + 1, 15)' if t else 'j'}]" + (" + bias" if len(node.inputs) == 2 else "")
                if epilogue is not None:
                    more, v = epilogue(v, ["n", "m", f"min({oy} + {a}, OH_ - 1)", f"min({ox} + {b}, OW_ - 1)"],
                                       _flat(t, a, b))
                    lines += more
                lines.append(f"const float r{t}_{a}{b} = {v};")
    return lines


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering).
LOWERINGS: dict = {
    "winograd_input": WinogradInputGen(),
    "winograd_output": WinogradOutputGen(),
}
