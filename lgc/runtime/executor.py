"""Runs a Program on one OpenCL device: build (cached), allocate, upload constants once,
then per call copy inputs in, launch in order, and copy outputs back."""
from __future__ import annotations

import re
import time

import numpy as np
import pyopencl as cl

from ..codegen.program import Program
from ..ir import dtypes
from . import cache
from .device import Device, select_device


class BuildError(RuntimeError):
    pass


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


def _view(arena: cl.Buffer, spec, device: Device) -> cl.Buffer:
    """A temp's sub-buffer of the arena (lgc.codegen.memory); a buffer of its own where the
    device needs a coarser offset alignment than the plan's."""
    if spec.offset % max(device.cl_device.mem_base_addr_align // 8, 1) == 0:
        try:
            return arena.get_sub_region(spec.offset, spec.nbytes)
        except cl.Error:
            pass
    return cl.Buffer(arena.context, cl.mem_flags.READ_WRITE, spec.nbytes)


class Executor:
    def __init__(self, program: Program, device: Device | None = None, profile: bool = False,
                 queue: cl.CommandQueue | None = None):
        self.program = program
        self.device = device or select_device()
        if program.uses_fp64 and not self.device.has_fp64:
            raise BuildError(f"the graph needs float64 but {self.device.name} has no cl_khr_fp64")
        ctx = self.device.context
        props = cl.command_queue_properties.PROFILING_ENABLE if profile else 0
        self.queue = queue or cl.CommandQueue(ctx, properties=props)
        self.cl_program = build_program(self.device, program.source)
        mf = cl.mem_flags
        self.buffers = []
        for i, spec in enumerate(program.buffers):
            if i in program.constants:
                host = np.ascontiguousarray(program.constants[i])
                data = host.view(np.uint8).reshape(-1) if host.size else np.zeros(1, np.uint8)
                self.buffers.append(cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=data))
            elif spec.arena < 0:
                self.buffers.append(cl.Buffer(ctx, mf.READ_WRITE, spec.nbytes))
            else:
                self.buffers.append(None)           # a view of the memory plan's arena: below
        for i, spec in enumerate(program.buffers):
            if self.buffers[i] is None:
                self.buffers[i] = _view(self.buffers[spec.arena], spec, self.device)
        self._bound = []
        for launch in program.launches:
            k = cl.Kernel(self.cl_program, launch.kernel)
            for j, b in enumerate(launch.args):
                k.set_arg(j, self.buffers[b])
            self._bound.append(k)
        self.last_profile: list[tuple[str, str, float]] = []

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Inputs in program order, already checked for shape and dtype by the caller."""
        for spec, a in zip(self.program.inputs, arrays):
            a = np.ascontiguousarray(a)
            if a.size:
                cl.enqueue_copy(self.queue, self.buffers[spec.buffer], a, is_blocking=False)
        events = []
        for launch, k in zip(self.program.launches, self._bound):
            events.append(cl.enqueue_nd_range_kernel(self.queue, k, launch.global_size,
                                                     launch.local_size))
        outs = []
        for spec in self.program.outputs:
            out = np.empty(spec.shape, dtypes.by_name(spec.dtype).np)
            if out.size:
                cl.enqueue_copy(self.queue, out, self.buffers[spec.buffer], is_blocking=False)
            outs.append(out)
        self.queue.finish()
        if self.queue.properties & cl.command_queue_properties.PROFILING_ENABLE:
            self.last_profile = [(ln.kernel, ln.node, (e.profile.end - e.profile.start) * 1e-9)
                                 for ln, e in zip(self.program.launches, events)]
        return outs

    def run_buffers(self, inputs: list[cl.Buffer]) -> list[cl.Buffer]:
        """Run on device buffers without copying to the host or waiting (lgc.jit, eager ops).

        Inputs are buffers in program order; each output gets a new buffer, except an output
        that is an input or a constant (or a view of one), which is returned as that buffer.
        An output that lives in the memory plan's arena (or has views into it) is copied
        out on the device instead. Kernels here are a second bound set, so `run` keeps its
        own buffers."""
        prog = self.program
        if not hasattr(self, "_dev_bound"):
            self._dev_bound = [cl.Kernel(self.cl_program, ln.kernel) for ln in prog.launches]
            for launch, k in zip(prog.launches, self._dev_bound):
                for j, b in enumerate(launch.args):
                    k.set_arg(j, self.buffers[b])
            viewed = {getattr(b, "arena", -1) for b in prog.buffers}
            self._copy_out = {s.buffer for s in prog.outputs
                              if getattr(prog.buffers[s.buffer], "arena", -1) >= 0
                              or s.buffer in viewed}
        ctx, mf = self.device.context, cl.mem_flags
        subst = {spec.buffer: b for spec, b in zip(prog.inputs, inputs)}
        for spec in prog.outputs:
            if (spec.buffer not in subst and spec.buffer not in self._copy_out
                    and prog.buffers[spec.buffer].role == "output"):
                subst[spec.buffer] = cl.Buffer(ctx, mf.READ_WRITE, prog.buffers[spec.buffer].nbytes)
        for launch, k in zip(prog.launches, self._dev_bound):
            for j, b in enumerate(launch.args):
                if b in subst:
                    k.set_arg(j, subst[b])
            cl.enqueue_nd_range_kernel(self.queue, k, launch.global_size, launch.local_size)
        for b in self._copy_out:
            if b not in subst:
                nbytes = prog.buffers[b].nbytes
                subst[b] = cl.Buffer(ctx, mf.READ_WRITE, nbytes)
                cl.enqueue_copy(self.queue, subst[b], self.buffers[b], byte_count=nbytes)
        return [subst.get(spec.buffer, self.buffers[spec.buffer]) for spec in prog.outputs]

    def timed_run(self, arrays):
        t = time.perf_counter()
        out = self.run(arrays)
        return out, time.perf_counter() - t
