"""lgc as a standard ONNX backend (onnx.backend.base.Backend), so onnx's own test tooling
can drive it: `lgc.onnx.backend.prepare(model).run(inputs)`."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep, namedtupledict

from ..api import Model
from ..runtime.device import list_devices


class LgcRep(BackendRep):
    def __init__(self, model: Model):
        self.model = model

    def run(self, inputs, **kwargs):
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        outs = self.model.run(inputs if isinstance(inputs, dict) else list(inputs))
        return namedtupledict("Outputs", list(outs))(*outs.values())


class LgcBackend(Backend):
    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs):
        super().prepare(model, device, **kwargs)
        return LgcRep(Model(model, device=_lgc_device(device)))

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        inputs = [np.asarray(x) for x in inputs]
        names = [n for n in node.input if n]
        graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                        for n, a in zip(names, inputs)]
        graph_outputs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
        graph = helper.make_graph([node], "run_node", graph_inputs, graph_outputs)
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        # outputs have no declared types, which onnx.checker (run by prepare) rejects
        return LgcRep(Model(model, device=_lgc_device(device))).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        want = str(device).split(":")[0].upper()
        kinds = {d.kind for d in list_devices() if d.usable}
        return (want == "CPU" and bool(kinds)) or (want in ("CUDA", "GPU") and "gpu" in kinds)


def _lgc_device(device: str):
    want = str(device).split(":")[0].upper()
    return "gpu" if want in ("CUDA", "GPU") else None


prepare = LgcBackend.prepare
run_model = LgcBackend.run_model
run_node = LgcBackend.run_node
supports_device = LgcBackend.supports_device
