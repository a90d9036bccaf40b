"""Checks on an ONNX model before lgc imports it, each failing with one line naming the node,
attribute, tensor or output at fault.

The converters may then assume what the ONNX standard promises: every node has the inputs,
outputs and attributes its operator schema (onnx.defs) declares, with the declared types, no
unknown attributes, each name defined once, and external data files inside the model's
folder. The schemas come from the onnx package, so this follows the standard rather than a
list kept here.
"""
from __future__ import annotations

import os
import re

import onnx
from onnx import defs, helper, shape_inference

from ...errors import ModelError, UnsupportedOp
from ...ir import dtypes

DEFAULT_DOMAINS = ("", "ai.onnx")
_Option = defs.OpSchema.FormalParameterOption
_TYPE_NAME = onnx.AttributeProto.AttributeType.Name


def node_name(proto: onnx.NodeProto) -> str:
    """How errors name a node: its name, else its first output, else its operator."""
    return proto.name or (proto.output[0] if proto.output else proto.op_type)


def default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in DEFAULT_DOMAINS:
            return int(o.version)
    return 1 if not model.opset_import else 21


def onnx_dtype(elem_type: int, where: str) -> dtypes.DType:
    """lgc's dtype for an ONNX element type (of an input, initializer or attribute like
    Cast's `to`); UnsupportedOp naming `where` for one lgc has no kernels for."""
    try:
        npt = helper.tensor_dtype_to_np_dtype(elem_type)
        return dtypes.from_numpy(npt)
    except (KeyError, TypeError, ValueError):
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in \
            onnx.TensorProto.DataType.values() else str(elem_type)
        raise UnsupportedOp(f"{where}: element type {name} is not supported") from None


def subgraphs(proto: onnx.NodeProto):
    """The graphs a node holds in attributes (If's branches, Loop's and Scan's body)."""
    for a in proto.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        yield from a.graphs


def check_model(model: onnx.ModelProto) -> None:
    """The opset is one onnx knows and every node (subgraphs included) follows its schema."""
    opset = default_opset(model)
    newest = defs.onnx_opset_version()
    if not 1 <= opset <= newest:
        raise ModelError(f"model imports ONNX opset {opset}; lgc reads opsets 1 to {newest}")

    def walk(graph, outer: frozenset):
        _check_names(graph)
        defined = _defined_names(graph, outer)
        for proto in graph.node:
            check_node(proto, opset)
            for name in proto.output:
                if name and name in defined:
                    raise ModelError(f"node {node_name(proto)!r} ({proto.op_type}) writes {name!r}, "
                                     f"which is already defined (ONNX names are assigned once)")
                defined.add(name)
            for g in subgraphs(proto):
                walk(g, frozenset(defined))
    walk(model.graph, frozenset())


def _check_names(graph: onnx.GraphProto) -> None:
    """Every name is text: protobuf hands back bytes for a string field that is not UTF-8."""
    fields = [("graph", graph.name)] + [("graph input", v.name) for v in graph.input] + \
        [("graph output", v.name) for v in graph.output] + \
        [("initializer", t.name) for t in graph.initializer]
    for n in graph.node:
        fields += [("node", n.name), ("operator", n.op_type), ("domain", n.domain)]
        fields += [("node input", x) for x in n.input] + [("node output", x) for x in n.output]
        fields += [("attribute", a.name) for a in n.attribute]
    for what, value in fields:
        if not isinstance(value, str):
            raise ModelError(f"{what} name {value!r} is not valid UTF-8 (damaged file?)")


def _defined_names(graph: onnx.GraphProto, outer: frozenset) -> set:
    names = set(outer) | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    return names | {t.values.name for t in graph.sparse_initializer}


def _schema(proto: onnx.NodeProto, opset: int):
    if proto.domain not in DEFAULT_DOMAINS:
        return None          # lgc's com.microsoft ops: no schema in onnx.defs; the converter checks
    try:
        return defs.get_schema(proto.op_type, opset, "")
    except defs.SchemaError:
        if defs.has(proto.op_type):
            raise ModelError(f"node {node_name(proto)!r} uses {proto.op_type}, which ONNX opset "
                             f"{opset} (the model's) does not have") from None
        return None          # no such operator at all: check_supported names it


def check_node(proto: onnx.NodeProto, opset: int) -> None:
    """Inputs, outputs and attributes as the operator's schema at `opset` declares them."""
    schema = _schema(proto, opset)
    if schema is None:
        return
    where = f"node {node_name(proto)!r} ({proto.op_type})"
    spec = f"{proto.op_type}-{schema.since_version}"
    _check_count(where, "inputs", len(proto.input), schema.min_input, schema.max_input, spec)
    _check_count(where, "outputs", len(proto.output), schema.min_output, schema.max_output, spec)
    for i, name in enumerate(proto.input):
        formal = schema.inputs[min(i, len(schema.inputs) - 1)]   # the last may be variadic
        if name == "" and formal.option != _Option.Optional:
            raise ModelError(f"{where}: input {i} ({formal.name}) is required but given as ''")
    known = schema.attributes
    seen = set()
    for a in proto.attribute:
        if a.name in seen:
            raise ModelError(f"{where}: attribute {a.name!r} is given twice")
        seen.add(a.name)
        if a.name not in known:
            raise ModelError(f"{where}: unknown attribute {a.name!r} ({spec} has "
                             f"{', '.join(sorted(known)) or 'no attributes'})")
        want = int(known[a.name].type.value)
        if a.ref_attr_name:
            raise ModelError(f"{where}: attribute {a.name!r} refers to {a.ref_attr_name!r}, "
                             f"which only a function body may do")
        if a.type != want:
            raise ModelError(f"{where}: attribute {a.name!r} is {_type_name(a.type)}, "
                             f"{spec} wants {_type_name(want)}")
    for name, attr in known.items():
        if attr.required and name not in seen:
            raise ModelError(f"{where}: required attribute {name!r} is missing")


def node_input_problem(proto: onnx.NodeProto, types: list, opset: int) -> str | None:
    """Why the node's inputs (TensorTypes, None where absent, a list for a sequence) do not
    fit its operator, naming the node, or None: onnx's own type and shape inference for the
    node (type constraints, ranks, broadcasting, attribute lengths) on the concrete types."""
    schema = _schema(proto, opset)
    if schema is None or any(a.type in _GRAPH_TYPES for a in proto.attribute) or \
            any(isinstance(t, list) for t in types):
        return None  # no schema; subgraphs (inferred with their outer scope); sequences
    given = {name: helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(t.dtype.np), t.shape)
             for name, t in zip(proto.input, types) if name and t is not None}
    try:
        shape_inference.infer_node_outputs(schema, proto, given,
                                           opset_imports=[helper.make_opsetid("", opset)])
    except Exception as e:  # InferenceError, ValidationError, ValueError (a bad attribute)...
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        text = re.sub(r"^\[\w+\]\s*", "", text)
        shown = ", ".join(str(t) if t is not None else "-" for t in types)
        return f"node {node_name(proto)!r} ({proto.op_type}): {text} (inputs: {shown})"
    return None


_GRAPH_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def _check_count(where, what, n, lo, hi, spec):
    if not lo <= n <= hi:
        allowed = str(lo) if lo == hi else f"{lo} or more" if hi >= 2**31 - 1 else f"{lo} to {hi}"
        raise ModelError(f"{where}: {spec} takes {allowed} {what if allowed != '1' else what[:-1]}, "
                         f"the node has {n}")


def _type_name(t: int) -> str:
    try:
        return _TYPE_NAME(t)
    except ValueError:
        return f"type {t}"


# ---- external data --------------------------------------------------------------------------

def tensors(model: onnx.ModelProto):
    """Every TensorProto in the model: initializers and attribute tensors, subgraphs included."""
    stack = [model.graph]
    while stack:
        g = stack.pop()
        yield from g.initializer
        for s in g.sparse_initializer:
            yield s.values
            yield s.indices
        for n in g.node:
            for a in n.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
            stack.extend(subgraphs(n))


def external_location(t: onnx.TensorProto) -> str | None:
    if t.data_location != onnx.TensorProto.EXTERNAL:
        return None
    return next((e.value for e in t.external_data if e.key == "location"), "")


def check_external_paths(model: onnx.ModelProto, base_dir: str | None) -> None:
    """Refuse external data that could read a file outside the model's folder: an absolute
    location, one with a '..' part, or one that resolves (through symlinks) elsewhere.
    base_dir None: the model came as bytes, so there is no folder to read from at all."""
    root = os.path.realpath(base_dir) if base_dir is not None else None
    for t in tensors(model):
        loc = external_location(t)
        if loc is None:
            continue
        where = f"tensor {t.name!r}: external data location {loc!r}"
        parts = loc.replace("\\", "/").split("/")
        if not loc or os.path.isabs(loc) or loc.startswith(("/", "\\")) or ".." in parts or \
                os.path.splitdrive(loc)[0]:
            raise ModelError(f"{where} is not a relative path inside the model's folder")
        if root is None:
            raise ModelError(f"{where}: a model given as bytes cannot read external data; "
                             f"load it from its file")
        path = os.path.realpath(os.path.join(root, loc))
        if os.path.commonpath([root, path]) != root:
            raise ModelError(f"{where} resolves to {path}, outside the model's folder {root}")
        if not os.path.isfile(path):
            raise ModelError(f"{where}: no such file in {root}")


# ---- declared output types ------------------------------------------------------------------

def check_declared_output(vi: onnx.ValueInfoProto, dtype_np, shape: tuple) -> None:
    """A graph output's declared element type and fixed dimensions agree with what the model
    computes (symbolic, unset and non-positive dimensions match anything)."""
    if not vi.type.HasField("tensor_type"):
        return
    tt = vi.type.tensor_type
    if tt.elem_type:
        declared = helper.tensor_dtype_to_np_dtype(tt.elem_type) \
            if tt.elem_type in onnx.TensorProto.DataType.values() else None
        if declared != dtype_np:
            name = onnx.TensorProto.DataType.Name(tt.elem_type) if declared is not None \
                else f"element type {tt.elem_type}"
            raise ModelError(f"graph output {vi.name!r} is declared {name}, but the model "
                             f"computes {dtype_np}")
    if tt.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if len(dims) != len(shape) or any(d and d > 0 and d != s for d, s in zip(dims, shape)):
            shown = tuple(d if d and d > 0 else "?" for d in dims)
            raise ModelError(f"graph output {vi.name!r} is declared with shape {shown}, but the "
                             f"model computes {tuple(shape)}")
