"""`lgc.torch`: PyTorch models on lgc (`pip install lgc[torch]`).

    model = lgc.torch.compile(module, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    y = model(x)                                   # torch tensors in and out
    model = lgc.torch.from_exported_program(ep)    # an ExportedProgram from torch.export
    fast = torch.compile(module, backend="lgc")    # the torch.compile backend (lgc.torch.dynamo)

`import lgc` does not import torch; this module does, when first used.
"""
from .dynamo import lgc_backend  # noqa: F401
from .exported import ExportedModel, compile, from_exported_program  # noqa: F401

__all__ = ["ExportedModel", "compile", "from_exported_program", "lgc_backend"]
