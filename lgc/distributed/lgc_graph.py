"""The graph inside a .lgc artifact, for planning: its IR text with zero-filled stand-ins for
the weights the text refers to by name.

A .lgc stores the weights as the kernels use them (GPU convolutions repack theirs), not as
the graph's constants, so the graph cannot be recovered with its values: it is good for the
cost model (shapes, FLOPs, bytes), not for compiling stages. Splitting needs the model it
was compiled from (`lgc plan model.onnx --split`, `compile_from_plan(model.onnx, ...)`).
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..artifact import read_artifact
from ..errors import ArtifactError
from ..ir import dtypes
from ..ir.graph import Graph

_REF = re.compile(r'= const @("(?:[^"\\]|\\.)*"|[^\s:]+) : (\w+)\[([^\]]*)\]')


def graph_of_artifact(path) -> Graph:
    from ..ir.text import ParseError, parse_graph   # loads lark: only for an artifact's IR
    manifest, members = read_artifact(path)
    text = members["ir.txt"].decode()
    where = os.path.basename(os.fspath(path))
    if not text.strip():
        raise ArtifactError(f"{where}: the artifact holds no IR (nothing to plan)")
    weights = {}
    for name, dt, dims in _REF.findall(text):
        key = name[1:-1].encode().decode("unicode_escape") if name.startswith('"') else name
        shape = tuple(int(d) for d in dims.split(",") if d.strip())
        a = np.zeros(shape, dtypes.by_name(dt).np)   # untouched pages: costs no memory
        a.setflags(write=False)
        weights[key] = a
    try:
        graph = parse_graph(text, weights)
    except ParseError as e:
        raise ArtifactError(f"{where}: its IR does not parse ({e})") from None
    graph.from_artifact = True          # weights are stand-ins: plan with it, do not compile it
    return graph
