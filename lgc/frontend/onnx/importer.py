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
from ...ir.builder import GraphBuilder, size_problem
from ...ir.graph import Graph, TensorType, Value
from ...ir.registry import OpError
from . import functions
from .context import Context, NeedsInputValue
from .converters import CONVERTERS
from .validate import (DEFAULT_DOMAINS, check_declared_output, check_external_paths,
                       check_model, default_opset, node_input_problem, node_name, onnx_dtype,
                       subgraphs)

# A converter that trips over inputs its op's schema allows but its code did not expect (a rank,
# an attribute's length): still a one-line error naming the node, not a traceback. The fuzz
# test (tests/test_onnx_fuzz.py) requires its corpus to be refused by the checks before this.
CONVERTER_SLIPS = (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError,
                   AttributeError)
CANNOT_CONVERT = "lgc's converter cannot handle"


class OnnxNode:
    """A NodeProto with attributes decoded to Python values."""

    def __init__(self, proto: onnx.NodeProto):
        self.proto = proto
        self.op_type = proto.op_type
        self.domain = proto.domain
        self.name = node_name(proto)
        self.attrs = {a.name: self._decoded(a) for a in proto.attribute}
        self.num_outputs = len(proto.output)

    def attr(self, name, default=None):
        return self.attrs.get(name, default)

    def _decoded(self, a: onnx.AttributeProto):
        try:
            return _attr_value(a)
        except Exception as e:
            raise ModelError(f"node {self.name!r} ({self.op_type}): attribute {a.name!r} cannot be "
                             f"read ({_first_line(e, 'bad value')})") from None


# 4-bit initializers (blocked DequantizeLinear's weights) are read as int8 / uint8; the
# DequantizeLinear converter packs them again where a MatMul reads them (qmatmul_nbits)
FOUR_BIT = {onnx.TensorProto.INT4: np.int8, onnx.TensorProto.UINT4: np.uint8}


def _attr_value(a):
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode("utf-8", "replace") for x in v]
    return v


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
    """Read an ONNX model from a path, bytes or a ModelProto and check it (validate.py);
    a clear one-line ModelError when it is malformed."""
    if isinstance(source, onnx.ModelProto):
        model, base_dir = source, None
    else:
        model, base_dir = _parse(source)
    if not model.graph.node and not model.graph.output:
        raise ModelError("model has an empty graph (is the file an ONNX model?)")
    check_external_paths(model, base_dir)
    if base_dir is not None:
        _read_external_data(model, base_dir)
    check_model(model)
    return model


def _parse(source) -> tuple[onnx.ModelProto, str | None]:
    """The model without its external data, and the folder that data is read from."""
    where = "model bytes" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            return onnx.load_from_string(bytes(source)), None
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise ModelError(f"{path}: no such file" if not os.path.exists(path) else
                             f"{path}: not a regular file")
        return onnx.load(path, load_external_data=False), os.path.dirname(os.path.abspath(path))
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"{where}: not a readable ONNX model ({_first_line(e, 'parse error')})") from None


def _read_external_data(model: onnx.ModelProto, base_dir: str) -> None:
    try:
        onnx.load_external_data_for_model(model, base_dir)
    except Exception as e:
        raise ModelError(f"external data of the model cannot be read ({_first_line(e, 'read error')})") \
            from None


def _first_line(e: Exception, default: str) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else default}"


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
                raise UnsupportedOp(f"unsupported ONNX operator {proto.op_type}{dom} "
                                    f"(node {node_name(proto)!r}, opset {opset})")
            for g in subgraphs(proto):
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
        problem = size_problem(input_types[vi.name])
        if problem:
            raise ModelError(f"input {vi.name!r}: {problem}")
        v = b.input(vi.name, input_types[vi.name])
        input_of[v] = vi.name
        env[vi.name] = v
        graph_inputs.append(v)
    for init in model.graph.initializer:
        four_bit = FOUR_BIT.get(init.data_type)
        if four_bit is None:
            onnx_dtype(init.data_type, f"initializer {init.name!r}")
        try:
            arr = numpy_helper.to_array(init)
            if four_bit is not None:      # lgc has no 4-bit dtype: the values widened to 8 bits
                arr = arr.astype(four_bit)
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
        check_declared_output(o, env[o.name].dtype.np, env[o.name].shape)
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
        problem = node_input_problem(proto, [v.type if isinstance(v, Value) else v for v in inputs],
                                     opset)
        if fn is None:
            if problem:
                raise ModelError(problem)
            results = _expand_function(ctx, node, inputs, opset)
        else:
            results = _convert(ctx, node, fn, inputs, env, opset, problem)
        for name, v in zip(proto.output, results):
            if name:
                env[name] = v


def _convert(ctx: Context, node: OnnxNode, fn, inputs: list, env: dict, opset: int,
             problem: str | None) -> list:
    """The node's converter run on its inputs, its outputs as a list; every failure a one-line
    lgc error naming the node. `problem`: why onnx's inference rejects the inputs. The
    converter's own OpError says it in lgc's words where it has them; otherwise the problem
    is the error, also when the converter would have gone on."""
    ctx.node, ctx.env = node, env
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
        raise ModelError(problem) if problem else \
            UnsupportedOp(f"node {node.name!r} ({node.op_type}, opset {opset}): {e}") from None
    except CONVERTER_SLIPS as e:
        raise ModelError(problem or f"node {node.name!r} ({node.op_type}): {CANNOT_CONVERT} inputs "
                         f"{_types_of(inputs)} and attributes {sorted(node.attrs)} "
                         f"({_first_line(e, 'no detail')})") from None
    finally:
        ctx.node = None
    if problem:
        raise ModelError(problem)
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _types_of(inputs) -> str:
    return "(" + ", ".join(str(v.type) if isinstance(v, Value) else type(v).__name__.lower()
                           for v in inputs) + ")"


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
