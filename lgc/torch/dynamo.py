"""The torch.compile backend: `torch.compile(model, backend="lgc")`.

torch finds it through the `torch_dynamo_backends` entry point in pyproject.toml, so nothing
needs importing first. Dynamo hands over each graph it captured (graph breaks run eagerly in
between, as with any backend); AOTAutograd lowers it to core ATen operators and gives its
forward graph to `forward_compiler` and, when autograd needs one, its backward graph to
`backward_compiler`; both run on lgc's device.

Inference (no input requires grad): parameters and buffers are frozen into the program as
constants (so weights are packed and batch norms folded at compile time, as inductor's
freezing does); a parameter changed in place afterwards (its version counter moves) makes
the next call compile again.

Training: the forward takes parameters and buffers as run-time inputs (they change every
optimizer step) and returns what the backward saves; training-mode batch norms return their
new running statistics, which AOTAutograd copies back. Both graphs run on device copies of
their inputs kept between calls (lgc.torch.resident): a parameter is uploaded once after each
change, a saved activation not at all. The optimizer runs in PyTorch on the host tensors.

Options (`torch.compile(..., options={...})`): device (as lgc's --device), opt_level, and
freeze (default True; False passes parameters as run-time inputs in inference too).
"""
from __future__ import annotations

import threading

import torch
from torch._decomp import core_aten_decompositions
from torch._functorch.aot_autograd import aot_module_simplified, make_boxed_func

from ..frontend.torch.importer import check_supported
from .runner import FxProgram, to_numpy


class AotGraph:
    """One of AOTAutograd's graphs on lgc. Its `static` inputs (an inference forward's
    parameters and buffers) are constants, taken from the first call's arguments and taken
    again if one of them changes; `resident`: the other inputs through kept device copies
    (training's forward and backward)."""

    def __init__(self, gm: torch.fx.GraphModule, static: list[int], device, opt_level: int,
                 resident: bool = False):
        self.gm, self.static, self.device, self.opt_level = gm, static, device, opt_level
        self.resident = resident
        self.names = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
        self._stamp = None
        self._program: FxProgram | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _stamp_of(t) -> tuple:
        return (id(t), t.data_ptr(), t._version) if isinstance(t, torch.Tensor) else (id(t),)

    def program(self, args) -> FxProgram:
        stamp = tuple(self._stamp_of(args[i]) for i in self.static)
        with self._lock:
            if stamp != self._stamp or self._program is None:
                constants = {i: to_numpy(args[i]) for i in self.static}
                # constants AOTAutograd lifted onto the module (read here, outside its
                # fake-tensor mode)
                attributes = {n.target: to_numpy(_attribute(self.gm, n.target))
                              for n in self.gm.graph.nodes if n.op == "get_attr"}
                self._program = FxProgram(self.gm.graph, constants, self.names, self.device,
                                          self.opt_level, "dynamo", attributes, self.resident)
                self._stamp = stamp
            return self._program

    def __call__(self, *args):
        program = self.program(args)
        static = set(self.static)
        return program([a for i, a in enumerate(args) if i not in static])


def _attribute(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _static_inputs(n_inputs: int) -> list[int]:
    """The forward graph's inputs dynamo marked static (parameters and buffers), less those
    the graph writes to (a training-mode batch norm's running statistics)."""
    from torch._guards import TracingContext
    tc = TracingContext.try_get()
    meta = getattr(tc, "fw_metadata", None) if tc is not None else None
    if meta is None:
        return []
    mutated = {i for i, info in enumerate(meta.input_info) if info.mutates_data or info.mutates_metadata}
    return [i for i in meta.static_input_indices if i < n_inputs and i not in mutated]


def lgc_backend(gm: torch.fx.GraphModule, example_inputs, options: dict | None = None):
    """A torch.compile backend: dynamo's graph through AOTAutograd onto lgc."""
    options = dict(options or {})
    device = options.pop("device", None)
    opt_level = options.pop("opt_level", 2)
    freeze = options.pop("freeze", True)
    # autograd will ask for a backward: parameters are run-time inputs then (they change with
    # every optimizer step), not constants
    training = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in example_inputs)
    if options:
        raise TypeError(f"unknown lgc backend option(s): {', '.join(sorted(options))}")

    def forward_compiler(fw: torch.fx.GraphModule, fw_inputs):
        check_supported(fw.graph)   # now, not at the first call: dynamo reports it as its own
        n = sum(1 for node in fw.graph.nodes if node.op == "placeholder")
        static = _static_inputs(n) if freeze and not training else []
        return make_boxed_func(AotGraph(fw, static, device, opt_level, resident=training))

    def backward_compiler(bw: torch.fx.GraphModule, bw_inputs):
        check_supported(bw.graph)
        return make_boxed_func(AotGraph(bw, [], device, opt_level, resident=True))

    # oneDNN off while tracing: the RNN decompositions then unroll into matmuls and pointwise
    # ops instead of calling aten.mkldnn_rnn_layer, a CPU library kernel
    onednn = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        return aot_module_simplified(gm, example_inputs, fw_compiler=forward_compiler,
                                     bw_compiler=backward_compiler,
                                     decompositions=core_aten_decompositions())
    finally:
        torch._C._set_mkldnn_enabled(onednn)
