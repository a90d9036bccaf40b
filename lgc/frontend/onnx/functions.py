"""ONNX function ops expanded from their schema-defined bodies.

Many ONNX operators (RMSNormalization, RotaryEmbedding, Attention, GroupNormalization,
Shrink, SwiGLU, ...) are defined by the standard itself as a function of simpler operators.
When lgc has no converter of its own for such an op, it inlines that body, so the op costs
no code here and follows the standard's definition exactly.
"""
from __future__ import annotations

import onnx
from onnx import defs, helper

from ...ir.graph import Value


def has_body(op_type: str, domain: str, opset: int) -> bool:
    schema = _schema(op_type, domain, opset)
    return schema is not None and (schema.has_function or schema.has_context_dependent_function)


def _schema(op_type, domain, opset):
    try:
        return defs.get_schema(op_type, opset, domain)
    except Exception:  # onnx raises SchemaError (C++ binding) for unknown ops
        return None


def body_of(proto: onnx.NodeProto, inputs: list[Value | None], opset: int) -> onnx.FunctionProto | None:
    schema = _schema(proto.op_type, proto.domain, opset)
    if schema is None:
        return None
    if schema.has_context_dependent_function:
        types = [_type_proto(v).SerializeToString() for v in inputs]
        try:
            data = schema.get_context_dependent_function_with_opset_version(
                opset, proto.SerializeToString(), types)
        except (AttributeError, TypeError):
            data = schema.get_context_dependent_function(proto.SerializeToString(), types)
        if not data:
            return None
        fn = onnx.FunctionProto()
        fn.ParseFromString(data)
        return fn
    if schema.has_function:
        return schema.function_body
    return None


def _type_proto(v: Value | None) -> onnx.TypeProto:
    if v is None:
        return onnx.TypeProto()
    return helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(v.dtype.np), list(v.shape))


def instantiate(fn: onnx.FunctionProto, caller: onnx.NodeProto) -> list[onnx.NodeProto]:
    """The body's nodes with attribute references replaced by the caller's values (or the
    function's defaults; an unset optional attribute is dropped)."""
    given = {a.name: a for a in caller.attribute}
    defaults = {a.name: a for a in fn.attribute_proto}
    nodes = []
    for node in fn.node:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        del new.attribute[:]
        for a in node.attribute:
            if a.ref_attr_name:
                src = given.get(a.ref_attr_name) or defaults.get(a.ref_attr_name)
                if src is None:
                    continue
                b = onnx.AttributeProto()
                b.CopyFrom(src)
                b.name = a.name
                new.attribute.append(b)
            else:
                new.attribute.append(a)
        nodes.append(new)
    return nodes


def function_opset(fn: onnx.FunctionProto, default: int) -> int:
    for o in fn.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return default
