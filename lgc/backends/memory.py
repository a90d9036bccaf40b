"""Memory planning: intermediate values share device memory when their lifetimes do not
overlap.

Works on the lowered program (buffer table + launch list), where lifetimes are exact: a temp
buffer is live from the first launch that touches it to the last one. Reshape-like aliases
already share their input's buffer id, so a use through an alias extends the buffer's life.
Inputs, outputs and constants keep buffers of their own.

All temps become views (sub-buffers) of one arena at fixed byte offsets. Offsets are chosen
greedily, each tensor placed in the smallest gap left by the tensors already placed whose
lifetimes overlap its own (best fit), else on top; three orders are tried (largest first,
most bytes x launches first, program order) and the smallest arena kept. Whole buffers shared
between temps cannot get close to the bound on branchy nets (Inception, DenseNet: 1.4-1.5x);
offsets reach it or come within a few percent on every light model. Offsets are multiples of ALIGN = 512 bytes, the largest
sub-buffer alignment common devices ask for (NVIDIA 4096 bits; AMD 2048; PoCL, Intel 1024);
the runtime gives a view a buffer of its own on a device that asks for more.

The lower bound is the largest total size of temps live during one launch: no placement can
use less.

A while loop (Program.loops) is one step of its own, just before the launch it precedes: it
reads its initial carry and constants and writes its results within that step, so they all
stay live across it and never share memory with each other. What the loop carries from one
iteration to the next lives in its body program's own buffers (planned separately).

A concat made in place (lgc.backends.program: each input a contiguous block of the output,
written there by its producer) is one tensor to the planner: its inputs are views of the
output at fixed byte offsets, and the output is live from the first producer's write to its
last use. The table says which buffers these are by itself: a launch whose every other
argument lies inside its last argument's memory (`in_place_launches`), which reuse never
makes, since two buffers touched by one launch are live at once.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

ALIGN = 512


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass
class MemoryPlan:
    offsets: dict[int, int]      # temp buffer id -> byte offset in the arena
    peak_bytes: int              # the arena's size: activation memory with reuse
    lower_bound_bytes: int       # max over launches of the bytes of temps live at once
    unshared_bytes: int          # what temps took with one buffer each

    @property
    def ratio(self) -> float:
        return self.peak_bytes / self.lower_bound_bytes if self.lower_bound_bytes else 1.0

    def summary(self) -> str:
        mib = 2 ** 20
        return (f"peak activation bytes (temps, with reuse): {self.peak_bytes:,} "
                f"({self.peak_bytes / mib:.1f} MiB)\n"
                f"lower bound (largest live set):            {self.lower_bound_bytes:,} "
                f"({self.lower_bound_bytes / mib:.1f} MiB)\n"
                f"ratio: {self.ratio:.3f}   (one buffer per temp: {self.unshared_bytes:,} bytes)")


def region(buffers, b: int) -> tuple[int, int, int]:
    """(the buffer holding b's memory, start byte, end byte) for b or a view of another."""
    spec = buffers[b]
    if spec.arena >= 0:
        return spec.arena, spec.offset, spec.offset + spec.nbytes
    return b, 0, spec.nbytes


def in_place_launches(buffers, launches) -> dict[int, list[int]]:
    """Launch index -> its input buffers, for each launch whose inputs all lie inside the
    memory of its output (its last argument): a concat made in place, with nothing to do
    when the views are real."""
    out: dict[int, list[int]] = {}
    for t, ln in enumerate(launches):
        if len(ln.args) < 2:
            continue
        root, lo, hi = region(buffers, ln.args[-1])
        ins = ln.args[:-1]
        if buffers[ln.args[-1]].role != "temp" or ln.args[-1] in ins:
            continue
        if all(buffers[a].role == "temp" and (lambda r: r[0] == root and lo <= r[1] and r[2] <= hi)(
                region(buffers, a)) for a in ins):
            out[t] = list(ins)
    return out


def parts_of(buffers, launches) -> dict[int, tuple[int, int]]:
    """Input buffer -> (output buffer, byte offset in it) of the in-place concats."""
    into = {}
    for t, ins in in_place_launches(buffers, launches).items():
        o = launches[t].args[-1]
        for a in ins:
            into[a] = (o, region(buffers, a)[1] - region(buffers, o)[1])
    return into


def resolve(into: dict, b: int) -> tuple[int, int]:
    """The outermost buffer b is part of (through nested in-place concats) and b's offset."""
    off = 0
    while b in into:
        b, o = into[b]
        off += o
    return b, off


def steps(launches, loops=()) -> list[list[int]]:
    """The buffer ids each step touches, in order: launches, with each loop (its inputs and
    outputs) placed before the launch it precedes."""
    if not loops:
        return [ln.args for ln in launches]
    out: list[list[int]] = []
    for t in range(len(launches) + 1):
        out += [list(lp.inputs) + list(lp.outputs) for lp in loops if lp.at == t]
        if t < len(launches):
            out.append(launches[t].args)
    return out


def live_ranges(buffers, launches, loops=()) -> dict[int, tuple[int, int]]:
    """Temp buffer id -> (first, last) step (launch index, when there are no loops) that
    reads or writes it."""
    ranges: dict[int, tuple[int, int]] = {}
    for t, args in enumerate(steps(launches, loops)):
        for b in args:
            if buffers[b].role == "temp":
                first, _ = ranges.get(b, (t, t))
                ranges[b] = (first, t)
    return ranges


def planned_ranges(buffers, launches, loops=(), into=None) -> dict[int, tuple[int, int]]:
    """`live_ranges` with each in-place concat input's range folded into its outermost
    output's: one tensor, live from the first producer's write to the last read."""
    ranges = live_ranges(buffers, launches, loops)
    into = parts_of(buffers, launches) if into is None else into
    for b in into:
        if b in ranges:
            r = resolve(into, b)[0]
            lo, hi = ranges.pop(b)
            rlo, rhi = ranges.get(r, (lo, hi))
            ranges[r] = (min(lo, rlo), max(hi, rhi))
    return ranges


def _place(order, ranges, sizes) -> dict[int, int]:
    """Offsets for temps taken in `order`: each in the smallest gap between the tensors placed
    so far whose lifetimes overlap its own (best fit), else on top of them."""
    placed: list[tuple[int, int, int, int]] = []   # (offset, size, first, last)
    offsets: dict[int, int] = {}
    for b in order:
        lo, hi = ranges[b]
        size = sizes[b]
        busy = sorted((o, o + s) for o, s, f, l in placed if not (hi < f or l < lo))
        top, best = 0, None
        for start, end in busy:
            gap = start - top
            if gap >= size and (best is None or gap < best[1]):
                best = (top, gap)
            top = max(top, end)
        offsets[b] = best[0] if best else top
        placed.append((offsets[b], size, lo, hi))
    return offsets


def plan(buffers, launches, loops=(), into=None) -> MemoryPlan:
    """into: buffer -> (buffer, byte offset) it is part of (in-place concats); default: read
    from the table (`parts_of`). Such parts are planned as their outermost buffer."""
    ranges = planned_ranges(buffers, launches, loops, into)
    sizes = {b: _align(buffers[b].nbytes) for b in ranges}
    span = {b: hi - lo + 1 for b, (lo, hi) in ranges.items()}
    orders = (  # no one order wins everywhere; placing is cheap, so keep the best of three
        sorted(ranges, key=lambda b: (-sizes[b], ranges[b][0], b)),              # largest first
        sorted(ranges, key=lambda b: (-sizes[b] * span[b], ranges[b][0], b)),    # most byte-launches
        sorted(ranges, key=lambda b: (ranges[b][0], -sizes[b], b)))             # program order
    peak_of = lambda offs: max((o + sizes[b] for b, o in offs.items()), default=0)  # noqa: E731
    offsets = min((_place(order, ranges, sizes) for order in orders), key=peak_of)

    live = [0] * (len(launches) + len(loops))
    for b, (lo, hi) in ranges.items():
        for t in range(lo, hi + 1):
            live[t] += buffers[b].nbytes
    return MemoryPlan(offsets, peak_of(offsets), max(live, default=0),
                      sum(buffers[b].nbytes for b in ranges))


def place_parts(buffers, into: dict) -> list:
    """The table with each in-place concat input made a view of its outermost output (no
    memory plan: the output keeps a buffer of its own)."""
    new = list(buffers)
    for b in into:
        r, off = resolve(into, b)
        new[b] = replace(buffers[b], arena=r, offset=off)
    return new


def share_buffers(buffers, launches, where: dict, constants: dict, loops=(), into=None):
    """Apply `plan` to a lowered program's parts: the temps become views of one arena buffer
    appended to the table; `into` (in-place concat inputs, see `plan`) views at their
    output's offset. Returns (buffers, launches, where, constants, plan)."""
    from .program import BufferSpec   # lgc.backends.program imports this module
    into = into or {}
    p = plan(buffers, launches, loops, into)
    if not p.offsets:
        return place_parts(buffers, into), launches, where, constants, p
    arena = len(buffers)
    offset = dict(p.offsets)
    for b in into:
        r, off = resolve(into, b)
        offset[b] = p.offsets[r] + off
    new = [replace(spec, arena=arena, offset=offset[b]) if b in offset else spec
           for b, spec in enumerate(buffers)]
    new.append(BufferSpec(max(p.peak_bytes, 1), "temp", "arena"))
    return new, launches, where, constants, p
