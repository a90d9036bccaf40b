"""Memory planning: intermediate values share device buffers when their lifetimes do not
overlap.

Works on the lowered program (buffer table + launch list), where lifetimes are exact: a temp
buffer is live from the first launch that touches it to the last one. Reshape-like aliases
already share their input's buffer id, so a use through an alias extends the buffer's life.
Inputs, outputs and constants keep buffers of their own.

Assignment is greedy by size (largest first) to shared buffers, each temp going to the
smallest existing buffer whose occupants are all dead while it lives (best fit), else to a new
one. Sizes are rounded up to 256 bytes. The lower bound is the largest total size of temps
live during one launch: no assignment of whole buffers can use less.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

ALIGN = 256


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass
class MemoryPlan:
    mapping: dict[int, int]      # old buffer id -> new buffer id
    sizes: list[int]             # new buffer table's sizes (temps: shared, aligned)
    peak_bytes: int              # total bytes of the shared temp buffers
    lower_bound_bytes: int       # max over launches of the bytes of temps live at once
    unshared_bytes: int          # what temps took with one buffer each

    @property
    def ratio(self) -> float:
        return self.peak_bytes / self.lower_bound_bytes if self.lower_bound_bytes else 1.0

    def summary(self) -> str:
        mib = 2 ** 20
        return (f"peak activation bytes (shared temps): {self.peak_bytes:,} ({self.peak_bytes / mib:.1f} MiB)\n"
                f"lower bound (largest live set):        {self.lower_bound_bytes:,} "
                f"({self.lower_bound_bytes / mib:.1f} MiB)\n"
                f"ratio: {self.ratio:.3f}   (one buffer per temp: {self.unshared_bytes:,} bytes)")


def live_ranges(buffers, launches) -> dict[int, tuple[int, int]]:
    """Temp buffer id -> (first, last) launch index that reads or writes it."""
    ranges: dict[int, tuple[int, int]] = {}
    for t, ln in enumerate(launches):
        for b in ln.args:
            if buffers[b].role == "temp":
                first, _ = ranges.get(b, (t, t))
                ranges[b] = (first, t)
    return ranges


def plan(buffers, launches) -> MemoryPlan:
    ranges = live_ranges(buffers, launches)
    size = {b: _align(buffers[b].nbytes) for b in ranges}
    slots: list[list] = []  # per shared buffer: [size, [(first, last), ...]]
    slot_of: dict[int, int] = {}
    for b in sorted(ranges, key=lambda b: (-size[b], ranges[b][0])):
        lo, hi = ranges[b]
        best = None
        for k, (cap, held) in enumerate(slots):
            if all(hi < f or l < lo for f, l in held) and (best is None or cap < slots[best][0]):
                best = k
        if best is None:
            slots.append([size[b], []])
            best = len(slots) - 1
        slots[best][1].append((lo, hi))
        slot_of[b] = best

    mapping, sizes = {}, []
    for b, spec in enumerate(buffers):  # non-temps and unused temps keep their own buffer
        if b not in slot_of:
            mapping[b] = len(sizes)
            sizes.append(spec.nbytes)
    first_slot = len(sizes)
    sizes += [cap for cap, _ in slots]
    for b, k in slot_of.items():
        mapping[b] = first_slot + k

    live = [0] * len(launches)
    for b, (lo, hi) in ranges.items():
        for t in range(lo, hi + 1):
            live[t] += size[b]
    return MemoryPlan(mapping, sizes, sum(cap for cap, _ in slots), max(live, default=0),
                      sum(size.values()))


def share_buffers(buffers, launches, where: dict, constants: dict):
    """Apply `plan` to a lowered program's parts: (buffers, launches, where, constants, plan)."""
    p = plan(buffers, launches)
    new = [None] * len(p.sizes)
    for b, spec in enumerate(buffers):
        k = p.mapping[b]
        if new[k] is None:
            new[k] = replace(spec, nbytes=p.sizes[k], name=spec.name if spec.role != "temp" else "")
    launches = [replace(ln, args=[p.mapping[a] for a in ln.args]) for ln in launches]
    where = {v: p.mapping[b] for v, b in where.items()}
    constants = {p.mapping[b]: a for b, a in constants.items()}
    return new, launches, where, constants, p
