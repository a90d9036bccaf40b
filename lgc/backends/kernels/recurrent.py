"""OpenCL kernel of the recurrent op (lgc.ops.recurrent holds its semantics): one launch for
the whole sequence. Each work-item owns one (direction, batch row) and loops over the time
steps itself, so there is no barrier and no launch per step; the recurrence weights are read
from the same buffer at every step and stay in the cache.

A step is a matrix-vector product h_{t-1} R^T in "axpy" form: for each k, h[k] times row k of
R^T (contiguous) into vector accumulators, all gates of a slice of hidden units at once, then
the gates' activations and the state update on those vectors. h_{t-1} is read back from Y
(step t-1's output), so no state is held in private arrays. The GRU without
linear_before_reset needs r * h_{t-1} complete before its last gate's product: it goes
through Y_h (written last) as scratch, in a second pass over the hidden units.

PoCL runs each work-item on one core (work-group size 1): a batch of one sequence in one
direction runs on one core, which is what a sequential recurrence allows. A GPU runs the
same kernel (it compiles and is correct; one work-item per sequence is not fast there).
"""
from __future__ import annotations

from ...ops.recurrent import DEFAULT_ACTIVATIONS, GATES, directions, flops
from ..gemm.loads import Load, vstore
from ..kernel import Arg, Kernel, index_type_for
from ..templates import literal


def _vector_width(H: int) -> tuple[int, int]:
    """(V, NV): lanes per vector, the largest power of two <= 16 dividing H, and vectors
    per slice of hidden units (two where H allows: more independent accumulators)."""
    V = 1
    while V < 16 and H % (V * 2) == 0:
        V *= 2
    return V, 2 if (H // V) % 2 == 0 else 1


class _Step:
    """The C text of one direction's loop body, for a node of dtype `dt`."""

    def __init__(self, node, d: int):
        self.node, self.d, self.attrs = node, d, node.attrs
        xw, rt = node.inputs[0].type, node.inputs[1].type
        self.kind = self.attrs["kind"]
        self.S, self.B, self.D, self.GH = xw.shape
        self.H = rt.shape[1]
        self.dt = xw.dtype
        self.ct = self.dt.cl_compute
        self.V, self.NV = _vector_width(self.H)
        self.vt = self.ct if self.V == 1 else f"{self.ct}{self.V}"
        per = len(DEFAULT_ACTIVATIONS[self.kind])
        a = self.attrs
        self.acts = [(a["activations"][d * per + k].lower(), a["activation_alpha"][d * per + k],
                      a["activation_beta"][d * per + k]) for k in range(per)]

    def lit(self, v) -> str:
        return literal(v, self.dt)

    def load(self, buf: str, index: str) -> str:
        return Load(buf, self.dt).vector(index, self.V)

    def store(self, buf: str, index: str, value: str) -> str:
        return vstore(buf, self.dt, index, value, self.V, self.ct)

    def act(self, k: int, x: str) -> str:
        """Activation k of this direction applied to the vector expression x (clip first)."""
        name, alpha, beta = self.acts[k]
        clip = self.attrs["clip"]
        u = f"clamp({x}, {self.lit(-clip)}, {self.lit(clip)})" if clip is not None else f"({x})"
        one, zero, a, b = self.lit(1), self.lit(0), self.lit(alpha), self.lit(beta)
        return {
            "sigmoid": f"({one} / ({one} + exp(-{u})))",
            "tanh": f"tanh({u})",
            "relu": f"fmax({u}, {zero})",
            "hardsigmoid": f"clamp({u} * {a} + {b}, {zero}, {one})",
            "leakyrelu": f"select({u}, {u} * {a}, {u} < {zero})",
            "softsign": f"({u} / ({one} + fabs({u})))",
            "softplus": f"log(exp({u}) + {one})",
            "affine": f"({u} * {a} + {b})",
            "scaledtanh": f"({a} * tanh({u} * {b}))",
            "elu": f"select({u}, {a} * (exp({u}) - {one}), {u} < {zero})",
            "thresholdedrelu": f"select(({self.vt})({zero}), {u}, {u} > {a})",
        }[name]

    # -- the product h R^T for some gates, into accumulators acc{g}_{v} -----------------
    def product(self, gates, h: str, first: dict) -> list[str]:
        """Accumulators of `gates` over the hidden slice at j0, started at `first[g](v)`,
        plus sum_k h[k] * R^T[d, k, g*H + j]."""
        H, GH, V = self.H, self.GH, self.V
        pairs = [(g, v) for g in gates for v in range(self.NV)]
        lines = [f"{self.vt} acc{g}_{v} = {first[g](v)};" for g, v in pairs]
        lines += [f"for (int k = 0; k < {H}; ++k) {{",
                  f"  const {self.ct} hk = {Load(h, self.dt).scalar('k')};",
                  f"  const int rk = ({self.d * H} + k) * {GH} + j0;"]
        lines += [f"  acc{g}_{v} += hk * {self.load('in1', f'rk + {g * H + v * V}')};" for g, v in pairs]
        return lines + ["}"]

    def slices(self, body) -> list[str]:
        """A loop over the slices of hidden units; body(v, j) gives the lines for vector v,
        whose first unit is at the C expression j."""
        lines = [f"for (int j0 = 0; j0 < {self.H}; j0 += {self.V * self.NV}) {{"]
        for part in body:
            lines += ["  " + ln for ln in part]
        return lines + ["}"]

    def rb(self, g: int):
        return lambda v: self.load("in2", f"{self.d * self.GH + g * self.H} + j0 + {v * self.V}")

    def xw(self, g: int, v: int) -> str:
        return self.load("x", f"{g * self.H} + j0 + {v * self.V}")

    def body(self) -> list[str]:
        """Statements of one step: reads x (this step's projection) and hp (h_{t-1}), writes y."""
        G, V, NV = GATES[self.kind], self.V, self.NV
        vt, one = self.vt, self.lit(1)
        at = [f"j0 + {v * V}" for v in range(NV)]
        if self.kind == "rnn":
            start = {0: lambda v: f"{self.xw(0, v)} + {self.rb(0)(v)}"}
            update = [self.store("y", at[v], self.act(0, f"acc0_{v}")) for v in range(NV)]
            return self.slices([self.product([0], "hp", start), update])
        if self.kind == "lstm":
            start = {g: (lambda g: lambda v: f"{self.xw(g, v)} + {self.rb(g)(v)}")(g) for g in range(G)}
            update = []
            for v in range(NV):
                p = [self.load("in6", f"{(self.d * 3 + k) * self.H} + {at[v]}") for k in range(3)]
                f = f"{one} - i{v}" if self.attrs["input_forget"] else self.act(0, f"acc2_{v} + {p[2]} * c{v}")
                update += [f"const {vt} c{v} = {self.load('c', at[v])};",
                           f"const {vt} i{v} = {self.act(0, f'acc0_{v} + {p[0]} * c{v}')};",
                           f"const {vt} f{v} = {f};",
                           f"const {vt} cn{v} = f{v} * c{v} + i{v} * {self.act(1, f'acc3_{v}')};",
                           f"const {vt} o{v} = {self.act(0, f'acc1_{v} + {p[1]} * cn{v}')};",
                           self.store("c", at[v], f"cn{v}"),
                           self.store("y", at[v], f"o{v} * {self.act(2, f'cn{v}')}")]
            return self.slices([self.product(range(G), "hp", start), update])
        # GRU: z and r, then the candidate n, then h = (1 - z) n + z h_{t-1}
        zr = {g: (lambda g: lambda v: f"{self.xw(g, v)} + {self.rb(g)(v)}")(g) for g in range(2)}
        gates = [f"const {vt} z{v} = {self.act(0, f'acc0_{v}')};" for v in range(NV)]
        gates += [f"const {vt} r{v} = {self.act(0, f'acc1_{v}')};" for v in range(NV)]
        mix = [f"y_{v} = ({one} - z{v}) * {self.act(1, f'{self.xw(2, v)} + n{v}')} + "
               f"z{v} * {self.load('hp', at[v])};" for v in range(NV)]
        if self.attrs["linear_before_reset"]:
            n = [f"const {vt} n{v} = r{v} * acc2_{v};" for v in range(NV)]
            out = [f"{vt} " + m for m in mix] + [self.store("y", at[v], f"y_{v}") for v in range(NV)]
            return self.slices([self.product(range(3), "hp", {**zr, 2: self.rb(2)}), gates, n, out])
        first = [self.store("y", at[v], f"z{v}") for v in range(NV)]     # z parked in Y
        first += [self.store("rh", at[v], f"r{v} * {self.load('hp', at[v])}") for v in range(NV)]
        second = [f"const {vt} z{v} = {self.load('y', at[v])};" for v in range(NV)]
        second += [f"const {vt} n{v} = acc2_{v};" for v in range(NV)]
        second += [f"{vt} " + m for m in mix] + [self.store("y", at[v], f"y_{v}") for v in range(NV)]
        return (self.slices([self.product(range(2), "hp", zr), gates, first])
                + self.slices([self.product([2], "rh", {2: self.rb(2)}), second]))


def _direction(node, d: int) -> list[str]:
    """The whole sequence of direction d for batch row b (L of its steps run)."""
    s = _Step(node, d)
    S, B, D, GH, H, st = s.S, s.B, s.D, s.GH, s.H, s.dt.cl_storage
    reverse = node.attrs["direction"] == "reverse" or d == 1
    state = f"({d * B} + b) * {H}"
    lines = [f"__global const {st}* hp = in3 + {state};",
             f"__global {st}* rh = out1 + {state};"]
    if s.kind == "lstm":
        lines += [f"__global {st}* c = out2 + {state};",
                  f"for (int j = 0; j < {H}; ++j) c[j] = in5[{state} + j];"]
    lines += ["for (int s = 0; s < L; ++s) {",
              f"  const int t = {'L - 1 - s' if reverse else 's'};",
              f"  __global const {st}* x = in0 + ((t * {B} + b) * {D} + {d}) * {GH};",
              f"  __global {st}* y = out0 + ((t * {D} + {d}) * {B} + b) * {H};"]
    lines += ["  " + ln for ln in s.body()]
    lines += ["  hp = y;", "}",
              f"for (int t = L; t < {S}; ++t)",
              f"  for (int j = 0; j < {H}; ++j) out0[((t * {D} + {d}) * {B} + b) * {H} + j] = 0;",
              f"for (int j = 0; j < {H}; ++j) rh[j] = L > 0 ? hp[j] : 0;"]   # empty: zero states
    if s.kind == "lstm":
        lines.append(f"if (L == 0) for (int j = 0; j < {H}; ++j) c[j] = 0;")
    return lines


class RecurrentGen:
    def kernels(self, node, name):
        S, B, D, _ = node.inputs[0].shape
        if D * B == 0:
            return []
        outs = [Arg(f"out{j}", v, writable=True) for j, v in enumerate(node.outputs)]
        body = ["const int gid = (int)get_global_id(0);",
                f"const int b = gid % {B};",
                f"const int L = clamp(in4[b], 0, {S});"]
        for d in range(directions(node.attrs["direction"])):
            body += [f"if (gid / {B} == {d}) {{"] + ["  " + ln for ln in _direction(node, d)] + ["}"]
        it = index_type_for(*(v.type.size for v in list(node.inputs) + list(node.outputs)))
        assert it == "int", "recurrent: tensors over 2^31 elements"
        return [Kernel(name, [Arg(f"in{i}", v) for i, v in enumerate(node.inputs)] + outs, body,
                       global_size=(D * B,), local_size=(1,), node_name=node.name or "",
                       flops=flops([v.type for v in node.inputs], None))]


LOWERINGS: dict = {"recurrent": RecurrentGen()}
