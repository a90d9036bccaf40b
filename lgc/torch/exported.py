"""torch.export's ExportedProgram on lgc: decomposed to core ATen, its parameters and buffers
made constants, compiled per input signature (a Dim takes each call's size)."""
from __future__ import annotations

import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from ..errors import InputError, ModelError, UnsupportedOp
from ..frontend.torch.converters.recurrent import RECURRENT_OPS
from .runner import FxProgram, to_numpy


class ExportedModel:
    """Call it as the exported module: same arguments (torch tensors), same output structure."""

    def __init__(self, ep: ExportedProgram, device=None, opt_level: int = 2):
        self.ep = ep = ep.run_decompositions(_decompositions())
        writes = [o for o in ep.graph_signature.output_specs if o.kind != OutputKind.USER_OUTPUT]
        if writes:
            raise ModelError(f"the program writes {writes[0].target!r} ({writes[0].kind.name.lower()}); "
                             f"lgc runs pure inference graphs (model.eval() before exporting?)")
        constants, names, self.user_dtypes = _inputs(ep)
        self.program = FxProgram(ep.graph, constants, names, device, opt_level, "exported")

    def __call__(self, *args, **kwargs):
        flat = self._flat_inputs(args, kwargs)
        for (name, want), a in zip(self.user_dtypes, flat):
            if want is not None and isinstance(a, torch.Tensor) and a.dtype != want:
                raise InputError(f"input {name!r} has dtype {a.dtype}, expected {want}")
        outs = self.program(list(flat))
        return torch.utils._pytree.tree_unflatten(outs, self.ep.call_spec.out_spec)

    def _flat_inputs(self, args, kwargs) -> list:
        """The user inputs in graph order, checked by torch against the program's Dims."""
        check = getattr(self.ep, "_get_flat_args_with_check", None)
        try:
            if check is not None:
                return list(check(args, kwargs)[0])
            return torch.utils._pytree.tree_leaves((args, kwargs))
        except Exception as e:
            msg = str(e).strip().splitlines()
            raise InputError(msg[0] if msg else type(e).__name__) from None


def _decompositions() -> dict:
    """The default table (the core ATen operators) less the recurrent layers, which lgc
    runs as one op each instead of the per-step graph their decompositions unroll into."""
    table = torch.export.default_decompositions()
    for name in RECURRENT_OPS:
        table.pop(getattr(torch.ops.aten, name.split(".")[1]).input, None)
    return table


def _inputs(ep: ExportedProgram):
    """(constants by placeholder position, every placeholder's name, (name, dtype) of each
    user input): parameters, buffers and lifted constants become the program's constants."""
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    constants, names, user = {}, [], []
    for i, spec in enumerate(ep.graph_signature.input_specs):
        names.append(spec.arg.name)
        if spec.kind == InputKind.USER_INPUT:
            user.append((spec.arg.name, getattr(placeholders[i].meta.get("val"), "dtype", None)))
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            value = ep.state_dict[spec.target] if spec.target in ep.state_dict else ep.constants[spec.target]
            constants[i] = to_numpy(value)
        else:
            raise UnsupportedOp(f"input {spec.arg.name!r} of kind {spec.kind.name} is not supported")
    return constants, names, user


def from_exported_program(ep: ExportedProgram, device=None, opt_level: int = 2) -> ExportedModel:
    """An ExportedProgram (torch.export.export) as a callable running on lgc's device."""
    return ExportedModel(ep, device, opt_level)


def compile(module: torch.nn.Module, example_args, example_kwargs: dict | None = None,
            dynamic_shapes=None, device=None, opt_level: int = 2) -> ExportedModel:
    """Export `module` with torch.export (dynamic_shapes as there: torch.export.Dim for the
    batch and sequence axes) and compile it for lgc."""
    if isinstance(example_args, torch.Tensor):
        example_args = (example_args,)
    try:
        ep = torch.export.export(module, tuple(example_args), kwargs=example_kwargs,
                                 dynamic_shapes=dynamic_shapes)
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise ModelError(f"torch.export failed: {msg[0] if msg else type(e).__name__}") from e
    return ExportedModel(ep, device, opt_level)
