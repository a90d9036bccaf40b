"""Fused attention for CPU devices (PoCL): softmax(Q K^T * scale + mask) V in one kernel.

Unfused, attention on the CPU is five launches (transpose K, pack its panels, Q K^T on the
panel GEMM with the scale and mask in its epilogue, the vector softmax, P V on the panel GEMM)
and the [Tq, Tk] score matrix goes to memory twice. Here one work-item owns ROWS query rows of
one (batch, head) and walks the keys a panel of 16 at a time, as FlashAttention does:

  - scores: the 16 keys' column panel of K^T (pack_panels, [D, 16]) times the rows of Q, an
    ROWS x 16 tile in float16 registers (the GEMM's micro-kernel, `c += a * b`: PoCL does not
    inline vector fma(), DESIGN.md), then the scale, the mask tile and the causal / past-the-end
    keys as -INFINITY;
  - online softmax: a running max and sum per row; the output rows are rescaled by
    exp(old max - new max) when the max grows;
  - P V: each of the 16 probabilities of a row times that key's row of V (D / 16 float16
    vectors), into ROWS x D / 16 float16 accumulators; divided by the sum at the end.

The walk takes STEP panels at a time while that many are left, then the rest one at a time
(ViT's 197 keys: 13 panels, not a 14th of masked keys). No score is ever stored.
cpu_lowering chooses this over the unfused path (ATTENTION_RULE).
  attention(Q [..., Tq, D], Kp [..., ceil(Tk/16), D, 16], V [..., Tk, Dv][, mask]) -> [..., Tq, Dv]
The op's semantics and NumPy reference are in lgc.ops.lowered.
"""
from __future__ import annotations

from ..ops.linalg import prod
from ..ops.lowered import PANEL, panels
from .cpu_rows import horizontal_fold, nan_max
from .fused import unravel
from .kernel import Arg, Kernel, index_type_for

ROWS = 4        # query rows per work-item: 4 x (Dv / 16) + 4 float16 accumulators fit AVX-512's 32
STEP = 2        # key panels per step of the online softmax (its max, sum and rescale per step)
MAX_DV = 128    # wider values rows would spill the output accumulators


def fits(d: int, dv: int) -> bool:
    """Head sizes the kernel takes: value rows whole float16 vectors, not too many of them."""
    return dv % PANEL == 0 and 0 < dv <= MAX_DV and d > 0


def _fold(terms, combine) -> str:
    out = terms[0]
    for t in terms[1:]:
        out = combine(out, t)
    return out


def _mask_offset(mask, out_shape, bh: str, row: str) -> str:
    """The C expression of the mask's element (batch-head `bh`, query row `row`, key 0): its
    strides along the broadcast axes are 0."""
    rank = len(out_shape)
    shape = (1,) * (rank - len(mask.shape)) + tuple(mask.shape)
    strides = [prod(shape[i + 1:]) if shape[i] != 1 else 0 for i in range(rank)]
    coords = unravel(bh, out_shape[:-2]) if rank > 2 else []
    terms = [f"{c} * {s}" for c, s in zip(coords, strides[:-2]) if s]
    if strides[-2]:
        terms.append(f"({row}) * {strides[-2]}")
    return " + ".join(terms) or "0"


def _step(node, S: int, it: str, exact: bool) -> list[str]:
    """The lines of one step over the S key panels from panel p (all inside K): the scores
    tile, the online softmax's update and P V. `exact`: every key of the step is before Tk,
    so V's rows are at constant offsets and no key needs masking as past the end."""
    Q, V = node.inputs[0], node.inputs[2]
    mask = node.inputs[3] if len(node.inputs) == 4 else None
    causal, scale = node.attrs["causal"], float(node.attrs["scale"])
    D, (Tk, Dv) = Q.shape[-1], V.shape[-2:]
    R, C = ROWS, Dv // PANEL
    b = [f"const {it} j0 = p * {PANEL};"]
    b += [f"__global const float* kb{h} = kp + (p + {h}) * {D * PANEL};" for h in range(S)]
    b += [f"float16 s{r}_{h} = (float16)(0.0f);" for r in range(R) for h in range(S)]
    b += [f"for ({it} d = 0; d < {D}; ++d) {{"]
    b += [f"  const float16 k{h} = vload16(d, kb{h});" for h in range(S)]
    b += [f"  s{r}_{h} += q{r}[d] * k{h};" for r in range(R) for h in range(S)]
    b += ["}"]
    b += [f"const float16 key{h} = lane + (float)(j0 + {h * PANEL});" for h in range(S)]
    for r in range(R):
        for h in range(S):
            sv = f"s{r}_{h}"
            if scale != 1.0:
                b.append(f"{sv} *= {scale!r}f;")
            if mask is not None:
                jh = f"j0 + {h * PANEL}"
                if Tk % PANEL == 0:
                    b.append(f"{sv} += vload16(0, mk{r} + {jh});")
                else:
                    b.append(f"if ({jh} + {PANEL} <= {Tk}) {sv} += vload16(0, mk{r} + {jh}); else {{ float t_[{PANEL}]; "
                             f"for (int j = 0; j < {PANEL}; ++j) t_[j] = {jh} + j < {Tk} ? mk{r}[{jh} + j] : 0.0f; "
                             f"{sv} += vload16(0, t_); }}")
            dead = ([] if exact else [f"key{h} >= (float){Tk}"]) + \
                ([f"key{h} > (float)(r0 + {r})"] if causal else [])
            if dead:
                b.append(f"{sv} = select({sv}, (float16)(-INFINITY), ({' || '.join(dead)}));")
        # online softmax: a row whose keys so far are all masked keeps max -inf (exp base 0);
        # the output and sum are rescaled only when the max grows
        b.append(f"float16 mv{r} = " + _fold([f"s{r}_{h}" for h in range(S)], lambda x, y: nan_max(x, y, "float16")) + ";")
        b += horizontal_fold(f"mv{r}", PANEL, nan_max)
        b += [f"if (mv{r}_1 > m{r}) {{",
              f"  const float c_ = exp(m{r} - mv{r}_1);",
              f"  l{r} *= c_; m{r} = mv{r}_1;"]
        b += [f"  o{r}_{c} *= c_;" for c in range(C)]
        b += ["}", f"const float base{r} = m{r} == -INFINITY ? 0.0f : m{r};"]
        b += [f"const float16 e{r}_{h} = exp(s{r}_{h} - base{r});" for h in range(S)]
        b.append(f"float16 sv{r} = " + " + ".join(f"e{r}_{h}" for h in range(S)) + ";")
        b += horizontal_fold(f"sv{r}", PANEL, lambda x, y, t: f"{x} + {y}")
        b.append(f"l{r} += sv{r}_1;")
    b.append(f"float pr_[{R * S * PANEL}];")
    b += [f"vstore16(e{r}_{h}, {r * S + h}, pr_);" for r in range(R) for h in range(S)]
    if exact:
        b.append(f"__global const float* vs = v + j0 * {Dv};")
    for j in range(S * PANEL):   # keys past Tk have probability 0: read row Tk - 1 for them
        b.append("{ __global const float* vr = " +
                 (f"vs + {j * Dv};" if exact else f"v + min(j0 + {j}, ({it}){Tk - 1}) * {Dv};"))
        b += [f"  const float16 v{c} = vload16({c}, vr);" for c in range(C)]
        b += [f"  o{r}_{c} += pr_[{r * S * PANEL + j}] * v{c};" for r in range(R) for c in range(C)]
        b.append("}")
    return ["  " + ln for ln in b]


class AttentionGen:
    def kernels(self, node, name):
        Q, Kp, V = node.inputs[:3]
        mask = node.inputs[3] if len(node.inputs) == 4 else None
        Y = node.outputs[0]
        at = node.attrs
        Tq, D = Q.shape[-2:]
        Tk, Dv = V.shape[-2:]
        NP, C, R = panels(Tk), Dv // PANEL, ROWS
        BH = prod(Q.shape[:-2])
        it = index_type_for(*(v.type.size for v in list(node.inputs) + [Y]))
        b = [f"const {it} r0 = ({it})get_global_id(0) * {R};",
             f"const {it} bh = ({it})get_global_id(1);",
             f"__global const float* kp = in1 + bh * {NP * D * PANEL};",
             f"__global const float* v = in2 + bh * {Tk * Dv};"]
        for r in range(R):     # rows past Tq compute row Tq - 1 again and store nothing
            b.append(f"__global const float* q{r} = in0 + (bh * {Tq} + min(r0 + {r}, ({it}){Tq - 1})) * {D};")
            b.append(f"float m{r} = -INFINITY, l{r} = 0.0f;")
            b += [f"float16 o{r}_{c} = (float16)(0.0f);" for c in range(C)]
        if mask is not None:
            b += [f"__global const float* mk{r} = in3 + {_mask_offset(mask, Y.shape[:-1] + (Tk,), 'bh', f'min(r0 + {r}, ({it}){Tq - 1})')};"
                  for r in range(R)]
        S = STEP
        # causal: the panels past the block's last row are all masked
        end = f"min(({it}){NP}, (r0 + {R + PANEL - 1}) / {PANEL})" if at["causal"] else f"({it}){NP}"
        b += ["const float16 lane = (float16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);",
              f"{it} p = 0;"]
        # steps of S panels while they fit, then the panels left one at a time (ViT's 197 keys
        # are 13 panels: a last step of 2 would compute a 14th panel of dead keys)
        whole_tail = not at["causal"] and NP % S == 0
        b.append(f"for (; p + {S} <= {end}; p += {S}) {{")
        b += _step(node, S, it, exact=Tk % PANEL == 0 or (not at["causal"] and NP % S != 0)) + ["}"]
        if not whole_tail and S > 1:
            b.append(f"for (; p < {end}; ++p) {{")
            b += _step(node, 1, it, exact=Tk % PANEL == 0) + ["}"]
        for r in range(R):
            b.append(f"if (r0 + {r} < {Tq}) {{ const float w = 1.0f / l{r}; "
                     f"__global float* y = out0 + (bh * {Tq} + r0 + {r}) * {Dv};")
            b += [f"  vstore16(o{r}_{c} * w, {c}, y);" for c in range(C)]
            b.append("}")
        args = [Arg(f"in{i}", v) for i, v in enumerate(node.inputs)] + [Arg("out0", Y, writable=True)]
        flops = 2 * BH * Tq * Tk * (D + Dv)
        return [Kernel(name, args, b, global_size=(-(-Tq // R), BH), local_size=(1, 1),
                       index_type=it, node_name=node.name or "", flops=flops)]


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering).
LOWERINGS: dict = {"attention": AttentionGen()}
