"""An FX graph of ATen operators compiled per input signature, called with torch tensors.

Both ways in share it: an ExportedProgram's graph (lgc.torch.from_exported_program) and the
forward graph AOTAutograd hands a torch.compile backend (lgc.torch.dynamo). Placeholders are
constants (parameters, buffers: folded into the program) or run-time arguments: tensors
become the program's inputs, Python numbers (SymInts) are specialised on, as lgc.compile
specialises an ONNX model's symbolic dimensions. Each new signature compiles once.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from ..errors import InputError
from ..frontend.torch.context import lgc_dtype
from ..ir import dtypes
from ..frontend.torch.importer import Placeholder, check_supported, import_fx, output_leaves
from ..ir.graph import TensorType
from ..runtime import Executable, memory, select_device
from .resident import device_copies


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor's values as a C-contiguous array (shared with the tensor where possible)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.dtype == torch.bfloat16:
        raise InputError("bfloat16 tensors are not supported by lgc")
    return np.asarray(t.numpy(), order="C")   # (ascontiguousarray would make 0-d arrays 1-d)


class FxProgram:
    """`graph`'s placeholders: `constants` maps a placeholder's position to its array; the
    others arrive with each call, in order. `names` names the graph inputs; `attributes`
    holds the arrays get_attr nodes read (constants AOTAutograd lifted)."""

    def __init__(self, graph, constants: dict[int, np.ndarray], names: list[str], device=None,
                 opt_level: int = 2, name: str = "torch", attributes: dict | None = None,
                 resident: bool = False):
        check_supported(graph)
        self.graph = graph
        self.constants = constants
        self.attributes = attributes or {}
        self.names = names
        self.device = select_device(device)
        self.opt_level = opt_level
        self.name = name
        n = sum(1 for node in graph.nodes if node.op == "placeholder")
        self.runtime_positions = [i for i in range(n) if i not in constants]
        self.out_devices = _output_devices(graph)
        # inputs through kept device copies (lgc.torch.resident), for training's parameters
        self.copies = device_copies(self.device) if resident else None
        self._constant_buffers: dict[int, object] = {}   # id(plan's array) -> device copy
        self._cache: dict = {}
        self._lock = threading.Lock()

    def _signature(self, args) -> tuple:
        return tuple((str(a.dtype), tuple(a.shape)) if isinstance(a, torch.Tensor) else
                     ("value", a) for a in args)

    def _placeholders(self, args) -> list[Placeholder]:
        out, it = [], iter(args)
        for i in range(len(self.runtime_positions) + len(self.constants)):
            if i in self.constants:
                out.append(Placeholder("const", value=self.constants[i]))
                continue
            a = next(it)
            if isinstance(a, torch.Tensor):
                t = TensorType(lgc_dtype(a.dtype), tuple(int(d) for d in a.shape))
                out.append(Placeholder("input", name=self.names[i], type=t))
            else:
                out.append(Placeholder("value", value=int(a) if isinstance(a, torch.SymInt) else a))
        return out

    def compiled(self, args) -> tuple[Executable | None, list]:
        """(executable, output plan) for these run-time arguments, compiling when new."""
        key = self._signature(args)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                graph, plan = import_fx(self.graph, self._placeholders(args), self.name,
                                        self.attributes)
                exe = Executable.from_graph(graph, self.device, self.opt_level) \
                    if graph.outputs else None
                hit = self._cache[key] = (exe, plan)
            return hit

    def __call__(self, args: list) -> list:
        """Outputs (torch tensors, or Python values) for run-time arguments `args`."""
        if len(args) != len(self.runtime_positions):
            raise InputError(f"expected {len(self.runtime_positions)} arguments, got {len(args)}")
        exe, plan = self.compiled(args)
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        results = []
        if exe is not None:
            by_name = {self.names[p]: a for p, a in zip(self.runtime_positions, args)}
            if self.copies is not None:
                results = self._run_resident(exe, [by_name[n] for n in exe.input_names])
            else:
                feeds = {n: to_numpy(by_name[n]) for n in exe.input_names}
                results = [torch.from_numpy(r) for r in exe.run(feeds).values()]
        outs = []
        for slot in plan:
            if slot.kind == "graph":
                outs.append(results[slot.index])
            elif slot.kind == "input":
                outs.append(tensors[slot.index])
            elif isinstance(slot.value, np.ndarray):
                outs.append(self._constant_output(slot.value))
            else:
                outs.append(slot.value)
        return [_to_device(o, d) for o, d in zip(outs, self.out_devices)]

    def _constant_output(self, value: np.ndarray) -> torch.Tensor:
        """A fresh tensor of an output lgc computed at compile time (a mask, position ids);
        resident, it shares one device copy, uploaded once, so the backward that takes it
        finds it there."""
        t = torch.from_numpy(value.copy())
        if self.copies is not None:   # the plans keep `value`: its id stays its own
            buf = self._constant_buffers.get(id(value))
            if buf is None:
                self._constant_buffers[id(value)] = self.copies.upload(t, value)
            else:
                self.copies.keep(t, buf)
        return t

    def _run_resident(self, exe: Executable, inputs: list) -> list[torch.Tensor]:
        """Run on the inputs' kept device copies (uploading those new or changed); each
        output is downloaded into a tensor whose device copy is then kept too, so a forward
        output the backward takes (a saved activation) is not uploaded again."""
        copies, ex = self.copies, exe.executor
        buffers = ex.run_buffers([copies.buffer(t, to_numpy(t)) for t in inputs])
        hosts = [np.empty(spec.shape, dtypes.by_name(spec.dtype).np) for spec in ex.program.outputs]
        memory.download_all(ex.queue, zip(buffers, hosts), ex.lock)
        results = []
        for buf, host in zip(buffers, hosts):
            t = torch.from_numpy(host)
            copies.keep(t, buf, downloaded=host.nbytes)
            results.append(t)
        return results


def _output_devices(graph) -> list:
    """The device torch recorded for each output (lgc's results come back on the host)."""
    return [getattr(getattr(n, "meta", {}).get("val"), "device", None) for n in output_leaves(graph)]


def _to_device(x, device):
    if isinstance(x, torch.Tensor) and device is not None and x.device != device:
        return x.to(device)
    return x
