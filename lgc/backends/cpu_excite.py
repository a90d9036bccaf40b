"""A squeeze-and-excitation block as one CPU kernel (squeeze_excite, made by cpu_excite_rewrite).

MobileNetV3's SE blocks took four launches each on the CPU: the mean over the image, the
two small FCs (matrix-vector products on the panel GEMM) and the scaling of the next conv's
weights by the excite. Each is a few microseconds of work, so the launches cost as much as
the work. Here one kernel does all four, in one work-item: the mean, both FCs and their
activations in private arrays (float16 vectors along the contiguous axis), then the scaling
of the next conv's weight rows. Two work-groups (one per core), each repeating the small FCs
and scaling half the rows, took 1.2x as long over MobileNetV3-small's nine blocks (0.21 ms
against 0.17 ms of kernel time, AMD EPYC Zen 4, PoCL; no barrier joins work-groups).
"""
from __future__ import annotations

from ..ops.lowered import EXCITE_STEPS
from .cpu_rows import horizontal_fold
from .kernel import Arg, Kernel, index_type_for
from .kernels.elementwise import BINARY, UNARY
from .templates import literal

VEC = 16      # float16 vectors along the contiguous axis (AVX-512)


def step_lines(v: str, u: str, steps, dtype) -> list[str]:
    """Statements applying the pointwise chain `steps` (lgc.ops.lowered.apply_steps) to float
    variable `v`, whose value before the first step is `u`."""
    def expr(op, k):       # each op as the elementwise kernels write it
        if op in UNARY:
            return UNARY[op](v, dtype)
        return BINARY["mul"](v, u, dtype, {}) if op == "mul_in" else BINARY[op](v, literal(k, dtype), dtype, {})
    assert set(EXCITE_STEPS) <= set(UNARY) | set(BINARY) | {"mul_in"}
    return [f"{v} = {expr(op, k)};" for op, k in steps]


def _sum_lines(acc: str, dst: str, init: str, rows: str, vec: str, n: int) -> list[str]:
    """`float dst` = init + sum of rows[i] * vec[i] for i < n (vec None: of rows[i]),
    float16 vectors then a scalar tail."""
    term = f"vload{VEC}(0, {rows} + i)" + (f" * vload{VEC}(0, {vec} + i)" if vec else "")
    tail = f"({rows})[i]" + (f" * {vec}[i]" if vec else "")
    return ([f"float{VEC} {acc} = (float{VEC})(0.0f);", "int i = 0;",
             f"for (; i + {VEC} <= {n}; i += {VEC}) {acc} += {term};"]
            + horizontal_fold(acc, VEC, lambda a, b, t: f"{a} + {b}")
            + [f"float {dst} = {init} + {acc}_1;", f"for (; i < {n}; ++i) {dst} += {tail};"])


class SqueezeExciteGen:
    """squeeze_excite: one work-item; in5 is the next conv's weights, or the image itself."""

    def kernels(self, node, name):
        X, W1, W2, Wn = (node.inputs[i] for i in (0, 1, 3, 5))
        Y = node.outputs[0]
        _, C, H, W = X.shape
        R, M, HW = W1.shape[0], Wn.shape[0], H * W
        KS = Wn.type.size // (M * C)
        f32 = X.dtype
        body = [f"float mean_[{C}], hid_[{R}], s_[{C}];",
                f"for (int c = 0; c < {C}; ++c) {{",
                f"  __global const float* p = in0 + c * {HW};"]
        body += ["  " + ln for ln in _sum_lines("accm", "t", "0.0f", "p", None, HW)]
        body += [f"  mean_[c] = t / {HW}.0f;", "}",
                 f"for (int r = 0; r < {R}; ++r) {{"]
        body += ["  " + ln for ln in _sum_lines("acc1", "v", "in2[r]", f"in1 + r * {C}", "mean_", C)]
        body += ["  const float u = v;"] + ["  " + ln for ln in step_lines("v", "u", node.attrs["act"], f32)]
        body += ["  hid_[r] = v;", "}",
                 f"for (int c = 0; c < {C}; ++c) {{"]
        body += ["  " + ln for ln in _sum_lines("acc2", "v", "in4[c]", f"in3 + c * {R}", "hid_", R)]
        body += ["  const float u = v;"] + ["  " + ln for ln in step_lines("v", "u", node.attrs["gate"], f32)]
        body += ["  s_[c] = v;", "}"]
        body += self._scale_rows(M, C, KS)
        args = [Arg(f"in{i}", v) for i, v in enumerate(node.inputs)] + [Arg("out0", Y, writable=True)]
        return [Kernel(name, args, body, global_size=(1,), local_size=(1,),
                       index_type=index_type_for(X.type.size, Y.type.size), node_name=node.name or "",
                       flops=C * HW + 4 * R * C + Y.type.size)]

    @staticmethod
    def _scale_rows(M: int, C: int, KS: int) -> list[str]:
        """out0[m, c, k] = in5[m, c, k] * s_[c]: by rows m along c in vectors (KS = 1), else
        by rows (m, c) along k in vectors."""
        rows, n = (M, C) if KS == 1 else (M * C, KS)
        scale = f"vload{VEC}(0, s_ + j)" if KS == 1 else "s_[r % " + str(C) + "]"
        tail = "s_[j]" if KS == 1 else "s_[r % " + str(C) + "]"
        return [f"for (int r = 0; r < {rows}; ++r) {{",
                f"  __global const float* w = in5 + r * {n};",
                f"  __global float* o = out0 + r * {n};",
                "  int j = 0;",
                f"  for (; j + {VEC} <= {n}; j += {VEC}) vstore{VEC}(vload{VEC}(0, w + j) * {scale}, 0, o + j);",
                f"  for (; j < {n}; ++j) o[j] = w[j] * {tail};",
                "}"]


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering).
LOWERINGS: dict = {"squeeze_excite": SqueezeExciteGen()}
