"""ONNX ModelProto -> lgc Graph, for concrete input shapes.

Import happens per concrete input signature: every shape is known, so Shape/Size and the
arithmetic on them fold to constants. An input used as a shape, axes or similar value
(NeedsInputValue) makes the caller specialise on that input's value as well.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...errors import ModelError, UnsupportedOp
from ...ir import dtypes
from ...ir.builder import GraphBuilder
from ...ir.graph import Graph, TensorType, Value
from ...ir.registry import OpError
from . import functions
from .context import Context, NeedsInputValue
from .converters import CONVERTERS

DEFAULT_DOMAINS = ("", "ai.onnx")


class OnnxNode:
    """A NodeProto with attributes decoded to Python values."""

    def __init__(self, proto: onnx.NodeProto):
        self.proto = proto
        self.op_type = proto.op_type
        self.domain = proto.domain
        self.name = proto.name or (proto.output[0] if proto.output else proto.op_type)
        self.attrs = {a.name: _attr_value(a) for a in proto.attribute}
        self.num_outputs = len(proto.output)

    def attr(self, name, default=None):
        return self.attrs.get(name, default)


def _attr_value(a):
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode("utf-8", "replace") for x in v]
    return v


def onnx_dtype(elem_type: int, where: str) -> dtypes.DType:
    try:
        npt = helper.tensor_dtype_to_np_dtype(elem_type)
        return dtypes.from_numpy(npt)
    except (KeyError, TypeError, ValueError):
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in \
            onnx.TensorProto.DataType.values() else str(elem_type)
        raise UnsupportedOp(f"{where}: element type {name} is not supported") from None


def default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in DEFAULT_DOMAINS:
            return int(o.version)
    return 1 if not model.opset_import else 21


def declared_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def declared_shape(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def default_input_types(model: onnx.ModelProto, input_shapes: dict | None = None) -> dict[str, TensorType]:
    """The declared input types, shapes from input_shapes where given, every symbolic or
    missing dimension 1: the signature `lgc inspect` and the planner import a model at."""
    types = {}
    for vi in declared_inputs(model):
        dt = onnx_dtype(vi.type.tensor_type.elem_type, f"input {vi.name!r}")
        shape = (input_shapes or {}).get(vi.name) or declared_shape(vi) or []
        types[vi.name] = TensorType(dt, tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape))
    return types


def load_model(source) -> onnx.ModelProto:
    """Read an ONNX model from a path, bytes or a ModelProto; clear error when malformed."""
    if isinstance(source, onnx.ModelProto):
        return source
    try:
        if isinstance(source, (bytes, bytearray)):
            model = onnx.load_from_string(bytes(source))
        else:
            path = os.fspath(source)
            if not os.path.exists(path):
                raise ModelError(f"{path}: no such file")
            model = onnx.load(path, load_external_data=True)
    except ModelError:
        raise
    except Exception as e:
        where = "model bytes" if isinstance(source, (bytes, bytearray)) else str(source)
        raise ModelError(f"{where}: not a readable ONNX model ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'parse error'})") from None
    if not model.graph.node and not model.graph.output:
        raise ModelError("model has an empty graph (is the file an ONNX model?)")
    return model


def check_supported(model: onnx.ModelProto) -> None:
    """Fail at load time, naming operator, node and opset, if any node (subgraphs included)
    has no converter."""
    opset = default_opset(model)

    def walk(graph):
        for proto in graph.node:
            domain = proto.domain if proto.domain not in DEFAULT_DOMAINS else ""
            if (domain, proto.op_type) not in CONVERTERS and \
                    not functions.has_body(proto.op_type, proto.domain, opset):
                dom = f" in domain {proto.domain!r}" if domain else ""
                name = proto.name or (proto.output[0] if proto.output else proto.op_type)
                raise UnsupportedOp(f"unsupported ONNX operator {proto.op_type}{dom} "
                                    f"(node {name!r}, opset {opset})")
            for a in proto.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for g in a.graphs:
                    walk(g)
    walk(model.graph)


def import_graph(model: onnx.ModelProto, input_types: dict[str, TensorType],
                 static_values: dict[str, np.ndarray] | None = None) -> Graph:
    """Import with concrete input types. Inputs in static_values become constants."""
    static_values = static_values or {}
    opset = default_opset(model)
    b = GraphBuilder(_ident(model.graph.name or "main"))
    input_of: dict[Value, str] = {}
    ctx = Context(b, opset, input_of)
    env: dict[str, Value] = {}
    graph_inputs = []
    for vi in declared_inputs(model):
        if vi.name in static_values:
            env[vi.name] = ctx.const(static_values[vi.name])
            continue
        v = b.input(vi.name, input_types[vi.name])
        input_of[v] = vi.name
        env[vi.name] = v
        graph_inputs.append(v)
    for init in model.graph.initializer:
        try:
            arr = numpy_helper.to_array(init)
        except Exception as e:
            raise ModelError(f"initializer {init.name!r} cannot be read: {e}") from None
        if arr.dtype == object:
            raise UnsupportedOp(f"initializer {init.name!r}: string tensors are not supported")
        env[init.name] = ctx.const(arr)
    convert_nodes(ctx, model.graph.node, env, opset)
    outputs = []
    for o in model.graph.output:
        if o.name not in env:
            raise ModelError(f"graph output {o.name!r} is not produced by any node")
        if not isinstance(env[o.name], Value):
            raise UnsupportedOp(f"graph output {o.name!r} is a sequence or optional, which lgc "
                                f"cannot return (only tensors)")
        outputs.append(env[o.name])
    return b.build(outputs, [input_of[v] for v in graph_inputs],
                   [o.name for o in model.graph.output])


def convert_nodes(ctx: Context, nodes, env: dict, opset: int) -> None:
    """Each ONNX node onto core ops in ctx's graph, in order, its outputs bound in `env`
    (the converters of If, Loop and Scan inline their subgraphs through here)."""
    for proto in nodes:
        node = OnnxNode(proto)
        fn = CONVERTERS.get((node.domain if node.domain not in DEFAULT_DOMAINS else "", node.op_type))
        if fn is None and not functions.has_body(node.op_type, node.domain, opset):
            dom = f" in domain {node.domain!r}" if node.domain not in DEFAULT_DOMAINS else ""
            raise UnsupportedOp(f"unsupported ONNX operator {node.op_type}{dom} "
                                f"(node {node.name!r}, opset {opset})")
        inputs = []
        for name in proto.input:
            if name == "":
                inputs.append(None)
            elif name in env:
                inputs.append(env[name])
            else:
                raise ModelError(f"node {node.name!r} ({node.op_type}) reads {name!r}, "
                                 f"which no earlier node or input defines")
        if fn is None:
            results = _expand_function(ctx, node, inputs, opset)
            for name, v in zip(proto.output, results):
                if name:
                    env[name] = v
            continue
        ctx.node = node
        ctx.env = env
        try:
            result = fn(ctx, node, *inputs)
        except (NeedsInputValue, ModelError):
            raise
        except OpError as e:
            msg = str(e)
            inner = f"node {node.name!r} ("
            if msg.startswith(inner) and "): " in msg:  # the builder already named the node
                msg = msg.split("): ", 1)[1]
            raise ModelError(f"node {node.name!r} ({node.op_type}): {msg}") from None
        except NotImplementedError as e:
            raise UnsupportedOp(f"node {node.name!r} ({node.op_type}, opset {opset}): {e}") from None
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        for name, v in zip(proto.output, results):
            if name:
                env[name] = v
        ctx.node = None


def _expand_function(ctx: Context, node: OnnxNode, inputs: list, opset: int) -> list:
    """Inline the standard's function body for an op lgc has no converter for."""
    body = functions.body_of(node.proto, inputs, opset)
    if body is None:
        raise UnsupportedOp(f"unsupported ONNX operator {node.op_type} (node {node.name!r}, "
                            f"opset {opset}): no function body for these inputs")
    env = {formal: v for formal, v in zip(body.input, inputs) if v is not None}
    inner_opset = functions.function_opset(body, opset)
    saved = (ctx.node, ctx.opset, ctx.env)
    ctx.opset = inner_opset
    try:
        convert_nodes(ctx, functions.instantiate(body, node.proto), env, inner_opset)
    finally:
        ctx.node, ctx.opset, ctx.env = saved
    wanted = list(node.proto.output)
    results = []
    for i, formal in enumerate(body.output):
        requested = i < len(wanted) and wanted[i] != ""
        if requested and formal not in env:
            raise ModelError(f"node {node.name!r} ({node.op_type}): function body does not produce {formal!r}")
        results.append(env.get(formal))
    return results


def _ident(s: str) -> str:
    import re
    return re.sub(r"[^0-9A-Za-z_]", "_", s) or "main"
