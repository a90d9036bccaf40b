"""ShuffleNet's channel shuffle on CPU devices (PoCL): one work-item per output channel plane.

ONNX spells the shuffle between two ShuffleNet blocks as concat, reshape [N, g, C/g, *S],
transpose, reshape back and (stride 1) two slices of the next block's split. As one fused
element-wise kernel each output element took a chain of divisions and a select, and PoCL
gathered them lane by lane: ShuffleNetV2's 29 such copies took a third of its kernel time.
Here an output channel is a copy of one input channel's plane, in float16 vectors.

  channel_shuffle(X0, X1, ... [N, C_i, *S]) -> [N, count, *S]
(its semantics and NumPy reference are in lgc.ops.lowered)
"""
from __future__ import annotations

from math import prod

from .gemm.store import NO_UNROLL
from .kernel import Kernel, index_type_for, template_args


class ChannelShuffleGen:
    def kernels(self, node, name):
        xs, Y = node.inputs, node.outputs[0]
        at = node.attrs
        g, start, count = at["groups"], at["start"], at["count"]
        N, P = Y.shape[0], prod(Y.shape[2:])
        C = sum(x.shape[1] for x in xs)
        it = index_type_for(*(x.type.size for x in xs), Y.type.size)
        b = [f"const {it} j = ({it})get_global_id(0), n = ({it})get_global_id(1);",
             f"const {it} s = {start} + j, cs = (s % {g}) * {C // g} + s / {g};",
             f"const __global {Y.dtype.cl_storage}* src;"]
        first = 0
        for i, x in enumerate(xs):       # the input that holds joined channel cs
            c = x.shape[1]
            test = "" if i == len(xs) - 1 else f"if (cs < {first + c}) "
            b.append(f"{'else ' if i else ''}{test}src = in{i} + (n * {c} + cs - {first}) * {P};")
            first += c
        b.append(f"__global {Y.dtype.cl_storage}* dst = out0 + (n * {count} + j) * {P};")
        vec = P // 16 * 16
        if vec:
            b.append(f"{NO_UNROLL} for ({it} p = 0; p < {vec}; p += 16) vstore16(vload16(0, src + p), 0, dst + p);")
        if vec < P:
            b.append(f"{NO_UNROLL} for ({it} p = {vec}; p < {P}; ++p) dst[p] = src[p];")
        return [Kernel(name, template_args(xs, None, Y), b, global_size=(count, N), local_size=None,
                       index_type=it, node_name=node.name or "")]


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering).
LOWERINGS: dict = {"channel_shuffle": ChannelShuffleGen()}
