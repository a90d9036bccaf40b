"""A graph compiled for one device and fixed input shapes, ready to run."""
from __future__ import annotations

import numpy as np

from ..backends.program import Program
from ..backends.target import Target
from ..compiler import Options, backend_for, compile as compile_graph
from ..errors import InputError
from ..ir import dtypes
from ..ir.graph import Graph, TensorType
from .device import select_device
from .executor import Executor


class CallToRun:
    """f(*inputs in input order, **inputs by name): the output, or a tuple when there are
    several; for anything with `input_names` and `run(feeds) -> {name: array}`."""

    def __call__(self, *args, **kwargs):
        feeds = dict(zip(self.input_names, args))
        feeds.update(kwargs)
        outs = list(self.run(feeds).values())
        return outs[0] if len(outs) == 1 else tuple(outs)


class Executable(CallToRun):
    """A graph compiled for one device and fixed input shapes; call it with NumPy arrays."""

    def __init__(self, program: Program, graph: Graph | None = None, device=None,
                 ir_text: str | None = None, profile: bool = False):
        self.program = program
        self.graph = graph
        self._ir_text = ir_text
        self.device = select_device(device)
        self.executor = Executor(program, self.device, profile=profile)

    @classmethod
    def from_graph(cls, graph: Graph, device=None, opt_level: int = 2, profile=False,
                   target: Target | None = None, donate=()):
        """Compile `graph` for `device` (default: LGC_DEVICE, else the first working GPU, else
        the CPU). `target` generates for that Target instead of the device's own facts.
        `donate`: input names whose buffers may hold results (see Options.donate); `run`
        copies inputs in per call anyway, `executor.run_buffers` writes into the caller's."""
        device = select_device(device).retargeted(target)
        compiled = compile_graph(graph, backend_for(device.target),
                                 Options(opt_level, donate=frozenset(donate)))
        return cls(compiled.program, compiled.graph, device, profile=profile)

    # -- signature ---------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.program.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.program.outputs]

    @property
    def ir_text(self) -> str:
        if self._ir_text is None and self.graph is not None:
            self._ir_text = str(self.graph)
        return self._ir_text or ""

    def input_types(self) -> dict[str, TensorType]:
        return {s.name: TensorType(dtypes.by_name(s.dtype), tuple(s.shape)) for s in self.program.inputs}

    # -- running -----------------------------------------------------------------------
    def run(self, feeds) -> dict[str, np.ndarray]:
        arrays = check_feeds(feeds, self.input_types())
        outs = self.executor.run(arrays)
        return dict(zip(self.output_names, outs))

    def launch_times(self, feeds: dict, runs: int = 3, warmup: int = 0) -> np.ndarray:
        """Seconds of each launch of the program, the median over `runs` runs after `warmup`
        untimed ones, from OpenCL profiling events on a profiling queue of its own."""
        prof = Executor(self.program, self.device, profile=True)
        arrays = [feeds[n] for n in self.input_names]
        for _ in range(warmup):
            prof.run(arrays)
        per_run = []
        for _ in range(max(1, runs)):
            prof.run(arrays)
            per_run.append([t for _, _, t in prof.last_profile])
        return np.median(np.array(per_run), axis=0) if per_run[0] else np.zeros(0)

    def save(self, path, sign_key=None) -> None:
        """Write a .lgc artifact; `sign_key` (an Ed25519 private key or its PEM file) signs it."""
        from .artifact import save_artifact   # lgc.runtime.artifact loads into Executables
        save_artifact(path, self, sign_key=sign_key)


def named_feeds(feeds, names: list[str]) -> dict:
    """Feeds as {name: value}, from a dict or a list in input order; names checked."""
    if not isinstance(feeds, dict):
        feeds = list(feeds)
        if len(feeds) != len(names):
            raise InputError(f"expected {len(names)} inputs ({', '.join(names)}), got {len(feeds)}")
        feeds = dict(zip(names, feeds))
    unknown = [k for k in feeds if k not in names]
    if unknown:
        raise InputError(f"unknown input {unknown[0]!r} (inputs are: {', '.join(names) or 'none'})")
    missing = [k for k in names if k not in feeds]
    if missing:
        raise InputError(f"missing input {missing[0]!r}")
    return feeds


def check_feeds(feeds, types: dict[str, TensorType]) -> list[np.ndarray]:
    names = list(types)
    feeds = named_feeds(feeds, names)
    out = []
    for name in names:
        a = np.asarray(feeds[name])
        t = types[name]
        if a.dtype != t.dtype.np:
            raise InputError(f"input {name!r} has dtype {a.dtype}, expected {t.dtype.np}")
        if tuple(a.shape) != tuple(t.shape):
            raise InputError(f"input {name!r} has shape {tuple(a.shape)}, expected {tuple(t.shape)}")
        out.append(a)
    return out
