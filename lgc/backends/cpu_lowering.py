"""CPU lowering: matmuls and convolutions rewritten onto the packed-panel GEMM (cpu_gemm).

Runs inside `lower` when the target is a CPU (PoCL), before fusion, so that the fusion
pass sees `matmul_panels` as the template that takes the epilogue (bias, activation,
residual) exactly as it would have seen the matmul or conv. GPU targets keep their own
kernels (gpu_gemm, gpu_conv) and never see these ops.

  matmul(A, B)        -> matmul_panels(pack_rows(A) if M >= 1024 else A, pack_panels(B))
  conv(X, W[, bias])  -> matmul_panels(W as [M, C*KS], im2col_panels(X)[, bias]), group 1;
                         1x1, stride 1: the image [C, P] read as B as it stands (b_rows, no
                         packing launch; LGC_CPU_POINTWISE_ROWS=0 packs it)
                         1x1 over a single position (W constant): X as [N, C] @ W^T panels
                         a 3x3 stride-1 one with a constant W: Winograd F(2x2,3x3)
                         (cpu_winograd) where its tiles fill the panels enough to need
                         fewer products than im2col; LGC_CPU_WINOGRAD=0 turns that off
  conv, 2-D, group = C = M -> depthwise_conv(X or the input of a channel shuffle, W[, bias])
                         (cpu_depthwise; LGC_CPU_DEPTHWISE=0 turns it off)
  max_pool / avg_pool, 2-D, floor mode (max: ceil mode too) -> pool_rows (cpu_pool;
                         LGC_CPU_POOL=0 turns it off); an average over the whole image ->
                         reduce_mean over H, W (a vector row kernel, cpu_rows)
  a channel shuffle (reshape, transpose, reshape) of a concat, or a slice of its channels
                      -> channel_shuffle (cpu_shuffle): ShuffleNet's, plane by plane
  conv(x * s, W), s a scale per channel of a batch-1 image (a squeeze-and-excitation block)
                      -> conv(x, W * s): the weights scaled instead of the image; with the
                         block's mean and FCs, one squeeze_excite launch (cpu_excite;
                         LGC_CPU_EXCITE=0 turns that off)
  matmul(softmax(matmul(Q, K^T) * scale + mask), V) -> attention(Q, pack_panels(K^T), V[, mask])
                      (cpu_attention_rewrite; LGC_CPU_ATTENTION=0 turns it off)
  pow(x, 2 | 3 | 4), a constant exponent -> x * x (* x ...): PoCL's pow() is very slow
A constant B, or a constant W (as row panels of 4), is packed here, once, by the NumPy
reference: weights are never packed per call. What stays on the direct kernels: float16
and integer dtypes, grouped convs other than depthwise, matmuls too narrow for a panel, and
problems too small for a packing launch to pay (`MIN_FLOPS`). LGC_CPU_PANELS=0 turns the
rewrite of matmuls, convs and pools off (the direct kernels then run them, for comparisons).
"""
from __future__ import annotations


from collections import Counter

import numpy as np

from ..ir.graph import Graph, Node
from ..ops import lowered   # the ops made here; their NumPy references pack constant operands
from ..ops._rules import broadcast_shapes
from ..ops.linalg import prod
from ..ops.nn import pool_out
from ..passes.dce import dce
from ..passes.rewrite import Rewriter
from . import cpu_attention_rewrite, cpu_dwpw, cpu_excite_rewrite, cpu_winograd
from .cpu_excite_rewrite import whole_image
from .settings import current_settings
from .target import CPU, Target
from .tuning import winograd_wins   # a stored `lgc tune` timing can keep a conv on im2col

MIN_FLOPS = 1 << 22      # below this a runtime packing launch costs more than it saves
MIN_POINTWISE_FLOPS = 1 << 18   # a 1x1 conv's: its B is the image as it stands (a plain copy to
                                # pack), and the direct conv kernel ran MobileNetV3's small 1x1
                                # convs at 35-60 GFLOP/s against the panel GEMM's 60-100
MIN_N = 16               # narrower B: a panel would be mostly padding
MIN_M = 4                # fewer rows of A: packing B at run time costs more than it saves
MIN_WINOGRAD_CHANNELS = 16   # 3x3 stride-1 convs with this many in and out channels: Winograd
MIN_WINOGRAD_FLOPS = 1 << 21  # smaller than MIN_FLOPS: DenseNet-121's 3x3 convs at 7x7 (128 -> 32,
                              # 3.6 MFLOP) took 0.186 ms on the direct conv kernel (28 work-items),
                              # 0.061 ms in Winograd's three launches (PoCL 3.1, AMD EPYC)
MIN_M_PACKED = 1024      # from here on A is packed at run time too: it won at 1024^3, lost at 512^3


def lower_for_cpu(graph: Graph, target: Target = CPU) -> Graph:
    """`graph` with its large float32 matmuls and convs on the panel GEMM and its integer
    powers as products (CPU targets only)."""
    if target.is_gpu:
        return graph
    panels = current_settings().cpu_panels
    consts = graph.constants()
    producer = {v: n for n in graph.nodes for v in n.outputs}
    uses = Counter([v for n in graph.nodes for v in n.inputs] + list(graph.outputs))
    rw = Rewriter(graph)
    for node in graph.nodes:
        done = False
        if node.op == "pow":
            done = _pow(rw, node, consts)
        elif not panels:
            pass
        elif node.op == "matmul":
            done = cpu_attention_rewrite.attention(rw, node, consts, producer, uses) or _matmul(rw, node, consts)
        elif node.op == "conv":
            scaled = _channel_scaled(node, producer, uses, consts)
            done = (_scale_into_weights(rw, node, consts, producer, *scaled) if scaled else
                    _depthwise_pointwise(rw, node, producer, uses, consts)
                    or _depthwise(rw, node, producer) or _conv(rw, node, consts))
        elif node.op in ("max_pool", "avg_pool"):
            done = _pool(rw, node)
        elif node.op == "mul":
            done = _excite_image(rw, node, producer, consts)
        elif node.op in ("slice", "reshape"):
            done = _channel_shuffle(rw, node, producer) or _into_gemm_store(rw, node, uses)
        if not done:
            rw.keep(node)
    return dce(rw.finish()) if rw.changed else graph


def _f32(node: Node) -> bool:
    return all(v.dtype.name == "f32" for v in list(node.inputs) + list(node.outputs))


def _emit(rw: Rewriter, node: Node, a, bp, attrs, bias=None):
    """`node` computed by a matmul_panels node."""
    rw.compute(node, "matmul_panels", [a, bp] + ([rw.get(bias)] if bias is not None else []), attrs)
    return True


def _into_gemm_store(rw: Rewriter, node: Node, uses) -> bool:
    """A reshape that is the only reader of a panel GEMM's C and keeps C's row-major order
    (GPT-2's [64, 3072] as [1, 64, 3072] before its GELU and residual adds) becomes the GEMM
    storing in that shape: the same bytes, and the ops after it now read C point for point,
    so fusion takes them as the GEMM's epilogue instead of a kernel of their own."""
    x = node.inputs[0]
    if node.op != "reshape" or uses[x] != 1 or rw.get(x) is not x or not current_settings().cpu_gemm_reshape:
        return False
    at = next((i for i in range(len(rw.nodes) - 1, -1, -1) if x in rw.nodes[i].outputs), None)
    gemm = rw.nodes[at] if at is not None else None
    if gemm is None or gemm.op != "matmul_panels":
        return False
    ba, bb, M, _, N = lowered.matmul_panels_dims([v.type for v in gemm.inputs], gemm.attrs)
    out = tuple(node.outputs[0].shape)
    if lowered.columns_start(out, broadcast_shapes(ba, bb), M, N) is None:
        return False
    rw.nodes[at] = Node(gemm.op, gemm.inputs, {**gemm.attrs, "out_shape": out},
                                          node.outputs, gemm.name)
    rw.changed = True
    return True


def _matmul(rw: Rewriter, node: Node, consts) -> bool:
    A, B = (rw.get(v) for v in node.inputs)
    trans = node.attrs["trans_b"]
    if not _f32(node) or len(A.shape) < 2 or len(B.shape) < 2:
        return False
    M, K = A.shape[-2:]
    N = B.shape[-2] if trans else B.shape[-1]
    out = node.outputs[0]
    flops = 2 * out.type.size * K
    if N < MIN_N or K == 0 or out.type.size == 0:
        return False
    if B in consts:
        bp = rw.const(lowered.pack_panels_ref([consts[B]], {"trans": trans})[0], B.name)
    elif flops >= MIN_FLOPS and M >= MIN_M:
        bp = rw.op("pack_panels", [B], {"trans": trans}, name=node.name)
    else:
        return False
    packed = 0
    if A in consts:
        A = rw.const(lowered.pack_rows_batched_ref([consts[A]], {})[0], A.name)
        packed = 1
    elif M >= MIN_M_PACKED:      # rows packed too: two float4 loads per k
        A = rw.op("pack_rows", [A], name=node.name)
        packed = 1
    return _emit(rw, node, A, bp, {"m": M, "n": N, "a_packed": packed, "out_shape": out.shape})


def _conv(rw: Rewriter, node: Node, consts, X=None, W=None) -> bool:
    """`node` on the panel GEMM; X, W: its (rewritten) operands where they are not its own."""
    X = rw.get(node.inputs[0]) if X is None else X
    W = rw.get(node.inputs[1]) if W is None else W
    at = node.attrs
    out = node.outputs[0]
    if not _f32(node) or at["group"] != 1 or out.type.size == 0:
        return False
    M, ks = W.shape[0], W.shape[2:]
    KK = prod(W.shape[1:])
    P = prod(out.shape[2:])
    pointwise = all(k == 1 for k in ks) and set(at["strides"]) <= {1} and not any(at["pads"])
    if pointwise and prod(X.shape[2:]) == 1 and W in consts:
        return _single_position(rw, node, X, consts[W])
    flops = 2 * out.type.size * KK
    least = MIN_POINTWISE_FLOPS if pointwise else MIN_FLOPS
    if flops < min(least, MIN_WINOGRAD_FLOPS) or P < 8:
        return False
    if W in consts and _winograd_fits(X, W, at) and winograd_wins(X.shape, W.shape, at["pads"]):
        return _winograd(rw, node, X, consts[W])
    if flops < least:
        return False
    attrs = {"m": M, "n": P, "out_shape": out.shape}
    if pointwise:      # the image is already B: [N, C, P], read as it stands (or packed)
        bp = rw.op("reshape", [X], {"shape": (X.shape[0], X.shape[1], P)})
        if current_settings().cpu_pointwise_rows:
            attrs["b_rows"] = 1
        else:
            bp = rw.op("pack_panels", [bp], {"trans": 0}, name=node.name)
    else:
        bp = rw.op("im2col_panels", [X], {"kernel": tuple(ks), "strides": at["strides"],
                                          "pads": at["pads"], "dilations": at["dilations"]},
                   name=node.name)
    if W in consts:
        a = rw.const(lowered.pack_rows_ref(consts[W].reshape(M, KK)), W.name)
        attrs["a_packed"] = 1
    else:
        a = rw.op("reshape", [W], {"shape": (M, KK)})
        attrs["a_packed"] = 0
    bias = node.inputs[2] if len(node.inputs) == 3 else None
    return _emit(rw, node, a, bp, attrs, bias)


def _channel_scaled(node: Node, producer, uses, consts):
    """(x, s) when conv `node` reads x * s, s one scale per input channel of a batch-1 image
    (a squeeze-and-excitation block's excite), nothing else reads the product and the
    constant weights are smaller than the image; else None."""
    X, W = node.inputs[:2]
    m = producer.get(X)
    if (m is None or m.op != "mul" or uses[X] != 1 or node.attrs["group"] != 1 or W not in consts
            or not _f32(node) or len(X.shape) != 4 or X.shape[0] != 1 or W.type.size >= X.type.size):
        return None
    for x, s in (m.inputs, m.inputs[::-1]):
        if x.shape == X.shape and s.dtype == X.dtype and tuple(s.shape) in ((1, X.shape[1], 1, 1), (X.shape[1], 1, 1)):
            return x, s
    return None


def _scale_into_weights(rw: Rewriter, node: Node, consts, producer, x, s) -> bool:
    """conv(x * s, W) -> conv(x, W * s): the excite scales the conv's M x C weights instead of
    the C x H x W image, so the scaled image is never written (MobileNetV3's SE blocks); the
    whole block in one squeeze_excite launch where s is one (cpu_excite_rewrite)."""
    W = node.inputs[1]
    w = cpu_excite_rewrite.excite(rw, x, s, rw.const(consts[W], W.name), producer, consts)
    if w is None:
        scale = rw.op("reshape", [rw.get(s)], {"shape": (1, x.shape[1], 1, 1)})
        w = rw.op("mul", [rw.const(consts[W], W.name), scale], name=node.name)
    if not _conv(rw, node, consts, rw.get(x), w):
        rw.compute(node, "conv", [rw.get(x), w] + [rw.get(b) for b in node.inputs[2:]], node.attrs)
    return True


def _excite_image(rw: Rewriter, node: Node, producer, consts) -> bool:
    """x * s, s the scale an SE block computes from x [1, C, H, W] -> one squeeze_excite launch
    that scales x itself (where the next conv's weights are larger than x, or no conv follows;
    a conv that takes s into its weights makes this node dead)."""
    y = node.outputs[0]
    for x, s in (node.inputs, node.inputs[::-1]):
        if len(x.shape) == 4 and x.shape == y.shape and x.shape[0] == 1 and s.shape == (1, x.shape[1], 1, 1):
            sx = cpu_excite_rewrite.excite(rw, x, s, rw.get(x), producer, consts)
            if sx is not None:
                rw.replace(y, sx)
                return True
    return False


def _single_position(rw: Rewriter, node: Node, X, w) -> bool:
    """A 1x1 conv of an image of one position (a squeeze-and-excitation block's convs) is a
    matrix-vector product: Y [N, M] = X [N, C] @ W^T, with W^T packed as B panels once. On
    the direct conv kernel (a column of one output) these ran at ~1 GFLOP/s; the bias goes
    in as an add that fusion folds into the GEMM's epilogue."""
    N, C = X.shape[:2]
    out = node.outputs[0]
    M = w.shape[0]
    a = rw.op("reshape", [X], {"shape": (N, C)})
    bp = rw.const(lowered.pack_panels_ref([w.reshape(M, C)], {"trans": 1})[0], node.inputs[1].name)
    attrs = {"m": N, "n": M, "a_packed": 0, "out_shape": out.shape}
    if len(node.inputs) < 3:
        return _emit(rw, node, a, bp, attrs)
    y = rw.op("matmul_panels", [a, bp], attrs, name=node.name)
    bias = rw.op("reshape", [rw.get(node.inputs[2])], {"shape": (M,) + (1,) * (len(out.shape) - 2)})
    rw.compute(node, "add", [y, bias], {})
    return True


def _depthwise(rw: Rewriter, node: Node, producer) -> bool:
    """A 2-D conv with one input channel per output channel -> depthwise_conv, reading
    through a channel shuffle that feeds it (the shuffle's copy then goes unless used)."""
    X, W = node.inputs[:2]
    at = node.attrs
    if (not current_settings().cpu_depthwise or not _f32(node) or len(X.shape) != 4
            or at["group"] != X.shape[1] or W.shape[:2] != (X.shape[1], 1)
            or node.outputs[0].type.size == 0):
        return False
    src, g = _unshuffled(X, producer)
    if _joined(src, producer):   # the shuffle of a concat is one channel_shuffle copy: read it
        src, g = X, 1
    ins = [rw.get(src), rw.get(W)] + ([rw.get(node.inputs[2])] if len(node.inputs) == 3 else [])
    rw.compute(node, "depthwise_conv", ins, {"strides": tuple(at["strides"]) or (1, 1),
                                             "pads": tuple(at["pads"]) or (0, 0, 0, 0),
                                             "dilations": tuple(at["dilations"]) or (1, 1), "shuffle": g})
    return True


def _depthwise_pointwise(rw: Rewriter, node: Node, producer, uses, consts) -> bool:
    """A 1x1 conv reading a depthwise conv through its activation only -> depthwise_pointwise
    (cpu_dwpw): the depthwise output is never written (LGC_CPU_DWPW=0 turns it off)."""
    if not (current_settings().cpu_dwpw and current_settings().cpu_depthwise):
        return False
    dw, chain, why = cpu_dwpw.fusable(node, producer, uses, consts)
    if dw is None or why:
        return False
    at, Wp = dw.attrs, consts[node.inputs[1]]
    C, M = dw.inputs[0].shape[1], Wp.shape[0]
    biases = [rw.get(c.inputs[2]) if len(c.inputs) == 3 else rw.const(np.zeros(k, np.float32))
              for c, k in ((dw, C), (node, M))]
    wp = rw.const(lowered.pack_rows_ref(Wp.reshape(M, C)), node.inputs[1].name)
    rw.compute(node, "depthwise_pointwise", [rw.get(dw.inputs[0]), rw.get(dw.inputs[1]), biases[0], wp, biases[1]],
               {"strides": tuple(at["strides"]) or (1, 1), "pads": tuple(at["pads"]) or (0, 0, 0, 0),
                "dilations": tuple(at["dilations"]) or (1, 1), "chain": chain, "m": M})
    return True


POW_PRODUCTS = (2, 3, 4)    # constant exponents of pow computed as products


def _pow(rw: Rewriter, node: Node, consts) -> bool:
    """pow(x, c), c a constant 2, 3 or 4 (everywhere) and x float -> x * x (* x ...). PoCL's
    pow() and pown() took 340 ns an element (docs/HARDWARE.md), and such a pow is GPT-2's
    GELU and T5's RMS norm: 94% of the T5 encoder's time."""
    x, e = node.inputs
    if not x.dtype.is_float or e not in consts or node.outputs[0].shape != x.shape:
        return False
    c = np.unique(consts[e])
    if c.size != 1 or float(c[0]) not in POW_PRODUCTS:
        return False
    x = rw.get(x)
    y = x
    for _ in range(int(c[0]) - 2):
        y = rw.op("mul", [y, x], name=node.name)
    rw.compute(node, "mul", [y, x], {})
    return True


def _pool(rw: Rewriter, node: Node) -> bool:
    """A 2-D f32 max or average pool, floor mode, no argmax -> pool_rows; a max pool in
    ceil mode too (SqueezeNet's), as floor mode over end pads that reach its last windows
    (they read -inf, as the windows ceil mode adds do). An average over the whole image
    -> reduce_mean over H, W: the CPU's vector row kernel (cpu_rows), which took half
    pool_rows' time over MobileNetV3's squeeze-and-excitation pools."""
    at, X = node.attrs, node.inputs[0]
    if (not current_settings().cpu_pool or not _f32(node) or len(X.shape) != 4
            or len(node.outputs) != 1 or node.outputs[0].type.size == 0):
        return False
    mode = "max" if node.op == "max_pool" else ("avg_pad" if at["count_include_pad"] else "avg")
    if mode != "max" and whole_image(X.shape, at):     # a mean over each contiguous plane: a row kernel
        rw.compute(node, "reduce_mean", [rw.get(X)], {"axes": (2, 3), "keepdims": 1})
        return True
    attrs = {"mode": mode, "kernel": tuple(at["kernel"]), "strides": tuple(at["strides"]) or (1, 1),
             "pads": tuple(at["pads"]) or (0, 0, 0, 0), "dilations": tuple(at["dilations"]) or (1, 1)}
    if at["ceil_mode"]:
        if mode != "max":    # an average's divisor differs in the windows ceil mode adds
            return False
        attrs["pads"] = _ceil_pads(X.shape, node.outputs[0].shape, attrs)
        if pool_out(X.shape, {**attrs, "ceil_mode": 0}) != node.outputs[0].shape:
            return False
    rw.compute(node, "pool_rows", [rw.get(X)], attrs)
    return True


def _ceil_pads(x, y, at) -> tuple:
    """A pool's pads with the end pads grown so that floor mode gives output shape `y`."""
    pads = list(at["pads"])
    for i in range(2):
        reach = (y[2 + i] - 1) * at["strides"][i] + at["dilations"][i] * (at["kernel"][i] - 1) + 1
        pads[2 + i] = max(pads[2 + i], reach - x[2 + i] - pads[i])
    return tuple(pads)


def _channel_shuffle(rw: Rewriter, node: Node, producer) -> bool:
    """A ShuffleNet channel shuffle (the reshape that ends it), or a slice of its channels
    (the next block's split), -> channel_shuffle of the concat's inputs (or of the shuffle's
    input): plane copies instead of element-wise index arithmetic and the concat's copy."""
    X = node.outputs[0] if node.op == "reshape" else node.inputs[0]
    if not _f32(node) or len(X.shape) != 4 or node.outputs[0].type.size == 0:
        return False
    start, count = 0, X.shape[1]
    if node.op == "slice":
        at, out = node.attrs, node.outputs[0].shape
        if (set(at["steps"]) != {1} or any(v for i, v in enumerate(at["starts"]) if i != 1)
                or out[:1] + out[2:] != X.shape[:1] + X.shape[2:]):
            return False
        start, count = at["starts"][1], out[1]
    src, g = _unshuffled(X, producer)
    if g == 1:
        return False
    ins = _joined(src, producer) or [src]
    rw.compute(node, "channel_shuffle", [rw.get(v) for v in ins], {"groups": g, "start": start, "count": count})
    return True


def _joined(X, producer) -> list | None:
    """The inputs of the concat along the channels that makes X, or None."""
    c = producer.get(X)
    if c is None or c.op != "concat" or c.attrs["axis"] not in (1, 1 - len(X.shape)):
        return None
    return list(c.inputs)


def _unshuffled(X, producer):
    """(Y, g) when X = reshape(transpose(reshape(Y, [N, g, C/g, H, W]), (0, 2, 1, 3, 4))),
    ShuffleNet's channel shuffle; else (X, 1)."""
    r2 = producer.get(X)
    t = producer.get(r2.inputs[0]) if r2 is not None and r2.op == "reshape" else None
    r1 = producer.get(t.inputs[0]) if t is not None and t.op == "transpose" else None
    if r1 is None or r1.op != "reshape" or tuple(t.attrs["perm"]) != (0, 2, 1, 3, 4):
        return X, 1
    Y = r1.inputs[0]
    N, C, H, W = X.shape
    s = r1.outputs[0].shape
    if Y.shape != X.shape or len(s) != 5 or s[0] != N or s[3:] != (H, W) or s[1] * s[2] != C:
        return X, 1
    return Y, s[1]


def _winograd_fits(X, W, at) -> bool:
    """A 2-D 3x3 conv, stride 1, no dilation, enough channels for the 16 GEMMs to pay and
    enough tiles per image for them to do less work than im2col's GEMM."""
    return (current_settings().cpu_winograd and len(X.shape) == 4
            and tuple(W.shape[2:]) == (3, 3) and set(at["strides"]) <= {1}
            and set(at["dilations"]) <= {1} and X.shape[1] >= MIN_WINOGRAD_CHANNELS
            and W.shape[0] >= MIN_WINOGRAD_CHANNELS
            and _winograd_fewer_products(lowered.winograd_out_hw(X.shape, tuple(at["pads"]) or (0, 0, 0, 0))))


def _winograd_fewer_products(out_hw) -> bool:
    """Whether Winograd's 16 GEMMs over panels of 16 tiles (2x2 outputs each) take fewer
    products per image than im2col's one GEMM with 9x the depth over panels of 16 positions:
    16 * panels(tiles) < 9 * panels(positions). The panels are per image, so a small image
    pads them: at 4x4 outputs the 4 tiles fill a quarter of one panel (16 against 9), and the
    digits CNN's 16 -> 32 conv there, batch 64, took 0.42 ms on Winograd, 0.26 ms on im2col
    (3x3 outputs: 0.42 against 0.23; 5x5, 16 against 18: even; 6x6: Winograd 1.6x faster)."""
    tiles = prod(lowered.winograd_tiles(out_hw))
    return 16 * lowered.panels(tiles) < 9 * lowered.panels(prod(out_hw))


def _winograd(rw: Rewriter, node: Node, X, w) -> bool:
    """conv -> winograd_output(matmul_panels(U, winograd_input(X))[, bias])."""
    pads = tuple(node.attrs["pads"]) or (0, 0, 0, 0)
    out = node.outputs[0]
    M, C = w.shape[:2]
    v = rw.op("winograd_input", [X], {"pads": pads}, name=node.name)
    u = cpu_winograd.filter_transform(w)                       # [16, M, C]
    U = rw.const(np.stack([lowered.pack_rows_ref(ue) for ue in u]), None)
    T16 = v.shape[2] * lowered.PANEL
    mt = rw.op("matmul_panels", [U, v], {"m": M, "n": T16, "a_packed": 1,
                                         "out_shape": (X.shape[0], 16, M, T16)}, name=node.name)
    ins = [mt] + ([rw.get(node.inputs[2])] if len(node.inputs) == 3 else [])
    rw.compute(node, "winograd_output", ins, {"out_hw": tuple(out.shape[2:])})
    return True
