"""Runs a Program on one OpenCL device: build (cached), allocate, upload constants once,
then per call copy inputs in, launch in order, and copy outputs back; calls from several
threads each get buffers and a queue of their own (Executor)."""
from __future__ import annotations

import re
import threading

import numpy as np
import pyopencl as cl

from ..backends.memory import in_place_launches
from ..backends.program import Program
from ..ir import dtypes
from . import cache
from ..errors import LgcError
from .device import Device, DeviceError, select_device


MAX_CONCURRENCY = 4   # default for calls of one Executor.run at once, each in its own buffer set


class BuildError(LgcError, RuntimeError):
    """The device's OpenCL compiler refused a program (or it needs what the device lacks)."""


def build_program(device: Device, source: str, options: str = "") -> cl.Program:
    """The built program, from the binary cache (memory, then disk) or built from source."""
    return cache.build(device, source, options, _build_source)


def _build_source(device: Device, source: str, options: str) -> cl.Program:
    try:
        return cl.Program(device.context, source).build(options)
    except cl.RuntimeError as e:
        raise BuildError(_explain_build_error(str(e), source)) from None


def _explain_build_error(log: str, source: str) -> str:
    """First compiler error with the kernel and source line it points at."""
    lines = source.splitlines()
    m = re.search(r"\.cl:(\d+):(\d+)(.*)", log)
    if not m:
        first = next((ln for ln in log.splitlines() if "error" in ln), log.splitlines()[0])
        return f"OpenCL build failed: {first.strip()}"
    lineno, msg = int(m.group(1)), m.group(3).rsplit(": ", 1)[-1].strip()
    kernel = "?"
    for ln in reversed(lines[:lineno]):
        k = re.match(r"__kernel void (\w+)\(", ln)
        if k:
            kernel = k.group(1)
            break
    text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    return f"OpenCL build failed in kernel {kernel}, line {lineno}: {msg}: `{text}`"


def _view(arena: cl.Buffer, spec, device: Device) -> tuple[cl.Buffer, bool]:
    """A temp's sub-buffer of the arena (lgc.backends.memory), and True; a buffer of its own
    where the device needs a coarser offset alignment than the plan's, and False."""
    if spec.offset % max(device.cl_device.mem_base_addr_align // 8, 1) == 0:
        try:
            return arena.get_sub_region(spec.offset, spec.nbytes), True
        except cl.Error:
            pass
    return cl.Buffer(arena.context, cl.mem_flags.READ_WRITE, spec.nbytes), False


def _check_allocations(program: Program, device: Device) -> None:
    """Refuse, naming the tensor, a buffer larger than the device allocates at once (else
    pyopencl fails later with INVALID_BUFFER_SIZE or MemoryError, naming nothing)."""
    limit = device.cl_device.max_mem_alloc_size
    for i, spec in enumerate(program.buffers):
        if spec.arena < 0 and spec.nbytes > limit:
            what = f"{spec.role} {spec.name!r}" if spec.name else f"{spec.role} buffer {i}"
            raise DeviceError(f"{what} needs {spec.nbytes} bytes, more than {device.name} "
                              f"allocates at once ({limit})")


class Executor:
    """Runs one Program; safe to call from several threads at once.

    Constants are uploaded once and shared: kernels only read them. Everything a call writes
    (inputs, temporaries, outputs) and the kernels bound to it form a BufferSet. `run` checks
    one out of a small pool, each with its own queue, so up to `max_concurrency` calls run at
    once in memory of their own (further callers wait for a set to come back); the pool
    grows only when calls overlap, so one thread uses one set.

    `run_buffers` (lgc.jit, eager ops) runs on `queue`, which lgc.numpy shares between all its
    executors, in the first BufferSet, which it keeps from then on; `lock` (shared with
    whoever shares the queue) keeps each call's commands together, and the in-order queue
    keeps the calls' use of the set's temporaries apart.

    `external`: input buffer ids the caller binds (a loop's cond and body take their carry
    and constants from the enclosing program) and that get no buffer here. A `nested`
    executor (a loop's cond or body) makes no BufferSet itself: each set of the enclosing
    executor makes the sets of its loops."""

    def __init__(self, program: Program, device: Device | None = None, profile: bool = False,
                 queue: cl.CommandQueue | None = None, cl_program: cl.Program | None = None,
                 external=(), lock=None, max_concurrency: int | None = None,
                 nested: bool = False):
        self.program = program
        self.device = device or select_device()
        if program.uses_fp64 and not self.device.has_fp64:
            raise BuildError(f"the graph needs float64 but {self.device.name} has no cl_khr_fp64")
        _check_allocations(program, self.device)
        self.profile = profile
        self.queue = queue or self.new_queue()
        self.cl_program = cl_program or build_program(self.device, program.source)
        self.external = frozenset(external)
        self.constants = {}
        for i, host in program.constants.items():
            if i not in self.external:
                host = np.ascontiguousarray(host)
                data = host.view(np.uint8).reshape(-1) if host.size else np.zeros(1, np.uint8)
                self.constants[i] = cl.Buffer(self.device.context, cl.mem_flags.READ_ONLY |
                                              cl.mem_flags.COPY_HOST_PTR, hostbuf=data)
        self.loop_parts = [(self._nested(lp.body, lp.body.inputs[len(lp.outputs):]),
                            self._nested(lp.cond, lp.cond.inputs)) for lp in program.loops]
        self.lock = lock or threading.Lock()
        self.max_concurrency = max(1, int(max_concurrency or MAX_CONCURRENCY))
        self._pool = threading.Condition()
        self._free: list[BufferSet] = []
        self._made = 0               # sets of the pool (not the one run_buffers keeps)
        self._first = None
        if not nested:               # now, so that running out of memory shows here
            self._first = BufferSet(self, self.queue)
            self._free.append(self._first)
            self._made = 1
        self._device_set = None      # the set run_buffers keeps (the first)
        self.last_profile: list[tuple[str, str, float]] = []

    def _nested(self, program: Program, external_inputs) -> "Executor":
        return Executor(program, self.device, queue=self.queue, cl_program=self.cl_program,
                        external={s.buffer for s in external_inputs}, nested=True)

    def new_queue(self) -> cl.CommandQueue:
        props = cl.command_queue_properties.PROFILING_ENABLE if self.profile else 0
        return cl.CommandQueue(self.device.context, properties=props)

    @property
    def skipped(self) -> set:
        """Launches not run: concats whose inputs were written into place (see BufferSet)."""
        return self._first.skipped

    @property
    def _steps(self) -> list:
        return self._first.steps

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Inputs in program order, already checked for shape and dtype by the caller."""
        bs = self._checkout()
        try:
            outs, profile = bs.run(arrays)
        finally:
            self._give_back(bs)
        if profile is not None:
            self.last_profile = profile
        return outs

    def _checkout(self) -> "BufferSet":
        with self._pool:
            while not self._free and self._made >= self.max_concurrency:
                self._pool.wait()
            if self._free:
                return self._free.pop()
            self._made += 1
        try:                         # outside the lock: allocating takes a while
            return BufferSet(self, self.new_queue())
        except BaseException:
            with self._pool:
                self._made -= 1
                self._pool.notify()
            raise

    def _give_back(self, bs: "BufferSet") -> None:
        with self._pool:
            self._free.append(bs)
            self._pool.notify()

    def run_buffers(self, inputs: list[cl.Buffer]) -> list[cl.Buffer]:
        """Run on device buffers without copying to the host or waiting (lgc.jit, eager ops).

        Inputs are buffers in program order; each output gets a new buffer, except an output
        that is an input or a constant (or a view of one), which is returned as that buffer.
        An output that lives in the memory plan's arena (or has views into it) is copied
        out on the device instead."""
        with self.lock:
            if self._device_set is None:
                self._device_set = self._keep_first()
                self._prepare_buffers_path()
            return self._run_buffers(inputs)

    def _keep_first(self) -> "BufferSet":
        """Take the first set (on self.queue) out of the pool for good, once `run` is done
        with it; the pool may make another in its place. Its kernels' input and output
        arguments are rebound per call from then on."""
        with self._pool:
            while self._first not in self._free:
                self._pool.wait()
            self._free.remove(self._first)
            self._made -= 1
            self._pool.notify()
        return self._first

    def _run_buffers(self, inputs: list[cl.Buffer]) -> list[cl.Buffer]:
        bs, prog = self._device_set, self.program
        ctx, rw = self._ctx, cl.mem_flags.READ_WRITE
        fresh = [cl.Buffer(ctx, rw, nbytes) for nbytes in self._fresh_bytes]
        for k, j, i in self._in_sites:
            k.set_arg(j, inputs[i])
        for k, j, f in self._fresh_sites:
            k.set_arg(j, fresh[f])
        q = bs.queue
        if prog.loops:
            subst = dict(zip(self._in_ids, inputs))
            subst.update(zip(self._fresh_ids, fresh))
            buffers = bs.buffers
            bs.enqueue(lambda b: subst[b] if b in subst else buffers[b])
        else:
            for k, gs, ls in self._dev_launches:
                cl.enqueue_nd_range_kernel(q, k, gs, ls)
        copies = []
        for b, nbytes in self._copies:
            copies.append(cl.Buffer(ctx, rw, nbytes))
            cl.enqueue_copy(q, copies[-1], bs.buffers[b], byte_count=nbytes)
        pick = (inputs, fresh, copies)
        return [pick[kind][i] if kind < 3 else bs.buffers[i] for kind, i in self._out_from]

    def _prepare_buffers_path(self) -> None:
        """What run_buffers needs per call, worked out once: the kernel arguments that take
        the caller's inputs or fresh output buffers, and where each output comes from."""
        prog, bs = self.program, self._device_set
        self._ctx = self.device.context
        self._dev_launches = [(bs.kernels[t], ln.global_size, ln.local_size)
                              for t, ln in enumerate(prog.launches) if t not in bs.skipped]
        viewed = {b.arena for b in prog.buffers}
        copy_out = {s.buffer for s in prog.outputs
                    if prog.buffers[s.buffer].arena >= 0 or s.buffer in viewed}
        self._in_ids = [s.buffer for s in prog.inputs]
        self._fresh_ids, self._copy_ids = [], []
        for s in prog.outputs:
            b = s.buffer
            if b in self._in_ids or b in self._fresh_ids or b in self._copy_ids:
                continue
            if b in copy_out:
                self._copy_ids.append(b)
            elif prog.buffers[b].role == "output":
                self._fresh_ids.append(b)
        self._fresh_bytes = [prog.buffers[b].nbytes for b in self._fresh_ids]
        self._copies = [(b, prog.buffers[b].nbytes) for b in self._copy_ids]
        sites: dict = {}
        for launch, k in zip(prog.launches, bs.kernels):
            for j, b in enumerate(launch.args):
                sites.setdefault(b, []).append((k, j))
        self._in_sites = [(k, j, i) for i, b in enumerate(self._in_ids) for k, j in sites.get(b, ())]
        self._fresh_sites = [(k, j, f) for f, b in enumerate(self._fresh_ids)
                             for k, j in sites.get(b, ())]
        # each output: (0, input index), (1, fresh index), (2, copy index) or (3, buffer id)
        self._out_from = []
        for s in prog.outputs:
            b = s.buffer
            if b in self._in_ids:
                self._out_from.append((0, self._in_ids.index(b)))
            elif b in self._fresh_ids:
                self._out_from.append((1, self._fresh_ids.index(b)))
            elif b in self._copy_ids:
                self._out_from.append((2, self._copy_ids.index(b)))
            else:
                self._out_from.append((3, b))


class BufferSet:
    """One call's device memory for an Executor: a buffer per non-constant buffer id (the
    memory plan's temporaries as views of its arena), a kernel object per launch bound to
    them, the loops' own sets, and the queue its calls go to. One call at a time uses it."""

    def __init__(self, ex: Executor, queue: cl.CommandQueue):
        self.program, self.queue, self.device = ex.program, queue, ex.device
        program, ctx = ex.program, ex.device.context
        self.buffers = []
        for i, spec in enumerate(program.buffers):
            if i in ex.external:
                self.buffers.append(None)
            elif i in ex.constants:
                self.buffers.append(ex.constants[i])
            elif spec.arena < 0:
                self.buffers.append(cl.Buffer(ctx, cl.mem_flags.READ_WRITE, spec.nbytes))
            else:
                self.buffers.append(None)           # a view of the memory plan's arena: below
        copied = set()                      # views that had to get a buffer of their own
        for i, spec in enumerate(program.buffers):
            if self.buffers[i] is None and i not in ex.external:
                self.buffers[i], real = _view(self.buffers[spec.arena], spec, ex.device)
                if not real:
                    copied.add(i)
        self.kernels = self._bind(ex.cl_program)
        # concats made in place: their inputs were written into the output's memory by their
        # producers, so there is nothing to do, unless a view had to be a copy of its own
        self.skipped = {t for t, ins in in_place_launches(program.buffers, program.launches).items()
                        if not copied & set(ins + [program.launches[t].args[-1]])}
        # the order of work: launch i >= 0, or loop ~i; loops run before launches[loop.at]
        self.steps = []
        for t in range(len(program.launches) + 1):
            self.steps += [~j for j, lp in enumerate(program.loops) if lp.at == t]
            if t < len(program.launches) and t not in self.skipped:
                self.steps.append(t)
        self.loops = [_LoopRunner(lp, body, cond, queue)
                      for lp, (body, cond) in zip(program.loops, ex.loop_parts)]

    def _bind(self, cl_program: cl.Program) -> list:
        """A kernel object per launch with this set's buffers set."""
        kernels = []
        for launch in self.program.launches:
            k = cl.Kernel(cl_program, launch.kernel)
            for j, b in enumerate(launch.args):
                if self.buffers[b] is not None:
                    k.set_arg(j, self.buffers[b])
            for j, v in enumerate(launch.scalars, len(launch.args)):
                k.set_arg(j, np.int32(v))
            kernels.append(k)
        return kernels

    def enqueue(self, buf, events=None) -> None:
        """Launch everything in order; buf(buffer id) -> the cl.Buffer loops read and write."""
        q, launches = self.queue, self.program.launches
        for t in self.steps:
            if t < 0:
                self.loops[~t].run(buf)
                continue
            ln = launches[t]
            e = cl.enqueue_nd_range_kernel(q, self.kernels[t], ln.global_size, ln.local_size)
            if events is not None:
                events.append(e)

    def run(self, arrays: list[np.ndarray]):
        """(outputs, profile or None): inputs copied in, everything run, outputs copied out."""
        q, program = self.queue, self.program
        for spec, a in zip(program.inputs, arrays):
            a = np.ascontiguousarray(a)
            if a.size:
                cl.enqueue_copy(q, self.buffers[spec.buffer], a, is_blocking=False)
        events = []
        self.enqueue(self.buffers.__getitem__, events)
        outs = []
        for spec in program.outputs:
            out = np.empty(spec.shape, dtypes.by_name(spec.dtype).np)
            if out.size:
                cl.enqueue_copy(q, out, self.buffers[spec.buffer], is_blocking=False)
            outs.append(out)
        q.finish()
        if not q.properties & cl.command_queue_properties.PROFILING_ENABLE:
            return outs, None
        times = iter([(e.profile.end - e.profile.start) * 1e-9 for e in events])
        return outs, [(ln.kernel, ln.node, 0.0 if t in self.skipped else next(times))
                      for t, ln in enumerate(program.launches)]


def _copy(queue, dst: cl.Buffer, src: cl.Buffer, nbytes: int) -> None:
    if dst is not src:
        cl.enqueue_copy(queue, dst, src, byte_count=nbytes)


class _LoopRunner:
    """Runs one Program.loop on the host for one BufferSet: cond and body run in sets of
    their own (made from the enclosing Executor's nested executors, so on the same built
    cl.Program and constants), with the carry kept in the body's input buffers and read by
    cond in place."""

    def __init__(self, loop, body_ex: Executor, cond_ex: Executor, queue: cl.CommandQueue):
        self.loop, self.queue = loop, queue
        self.n = n = len(loop.outputs)
        self.body, self.cond = BufferSet(body_ex, queue), BufferSet(cond_ex, queue)
        self.carry_ids = [s.buffer for s in loop.body.inputs[:n]]
        self.nbytes = [loop.body.buffers[b].nbytes for b in self.carry_ids]
        self._sites = {}
        for bs, ext in ((self.body, body_ex.external), (self.cond, cond_ex.external)):
            for launch, k in zip(bs.program.launches, bs.kernels):
                for j, b in enumerate(launch.args):
                    if b in ext:
                        self._sites.setdefault((id(bs), b), []).append((k, j))
        ctx = body_ex.device.context
        # a body output that is another carry slot's buffer (a swap) goes through a spare
        outs = [s.buffer for s in loop.body.outputs]
        self.spare = {j: cl.Buffer(ctx, cl.mem_flags.READ_WRITE, self.nbytes[j])
                      for j, b in enumerate(outs) if b in self.carry_ids and b != self.carry_ids[j]}
        self.pred = np.zeros((), np.bool_)

    def _bind(self, bs: BufferSet, subst: dict) -> None:
        for b, buf in subst.items():
            for k, j in self._sites.get((id(bs), b), ()):
                k.set_arg(j, buf)

    def run(self, buf) -> None:
        lp, n, q = self.loop, self.n, self.queue
        ins = [buf(b) for b in lp.inputs]
        body, cond = self.body, self.cond
        carry = [body.buffers[b] for b in self.carry_ids]
        bsub = {s.buffer: ins[n + j] for j, s in enumerate(lp.body.inputs[n:])}
        csub = {s.buffer: (carry[k] if k < n else ins[k]) for k, s in enumerate(lp.cond.inputs)}
        self._bind(body, bsub)
        self._bind(cond, csub)
        bbuf = lambda b: bsub[b] if b in bsub else body.buffers[b]  # noqa: E731
        cbuf = lambda b: csub[b] if b in csub else cond.buffers[b]  # noqa: E731
        for i in range(n):
            _copy(q, carry[i], ins[i], self.nbytes[i])
        pred_buf = cbuf(lp.cond.outputs[0].buffer)
        src = [bbuf(s.buffer) for s in lp.body.outputs]
        while True:
            cond.enqueue(cbuf)
            cl.enqueue_copy(q, self.pred, pred_buf, is_blocking=True)
            if not self.pred:
                break
            body.enqueue(bbuf)
            for j, spare in self.spare.items():
                _copy(q, spare, src[j], self.nbytes[j])
            for j in range(n):
                _copy(q, carry[j], self.spare.get(j, src[j]), self.nbytes[j])
        for i, b in enumerate(lp.outputs):
            _copy(q, buf(b), carry[i], self.nbytes[i])
