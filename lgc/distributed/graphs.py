"""The graph the planner and the splitter work on: an ONNX model imported at fixed input
shapes and optimised (-O2), the same graph `lgc compile` lowers, so node positions and names
in a plan mean the same thing when the stages are compiled later."""
from __future__ import annotations

import os

from ..errors import InputError
from ..frontend.onnx.importer import check_supported, default_input_types, import_graph, load_model
from ..ir.graph import Graph
from ..passes import optimize
from .lgc_graph import graph_of_artifact


def load_graph(source, input_shapes: dict | None = None, opt_level: int = 2) -> Graph:
    """An optimised Graph from a Graph, an .onnx path / bytes / ModelProto, or a .lgc artifact
    (its IR with the weights the artifact holds)."""
    if isinstance(source, Graph):
        return source
    if isinstance(source, (str, os.PathLike)) and os.fspath(source).endswith(".lgc"):
        if input_shapes:
            raise InputError(f"{os.path.basename(os.fspath(source))} was compiled for fixed shapes; "
                             f"--input-shape needs the .onnx model")
        return graph_of_artifact(source)
    model = load_model(source)
    check_supported(model)
    return optimize(import_graph(model, default_input_types(model, input_shapes)), opt_level)
