"""The ONNX past_key_values convention rewritten onto a fixed-capacity KV cache.

Decoders exported from transformers (and Optimum) take the cache so far as inputs
`past_key_values.{i}.key/value` [B, H, P, D] and return `present.{i}.*` [B, H, P + S, D],
made by one concat of the past and the S new positions along axis 2; the attention then
reads that concat, and an `attention_mask` [B, P + S] says which positions are real. Run as
written, the cache grows by a copy every token and every length is a new input shape.

lgc imports such a model twice, with concrete shapes, and rewrites each concat of a past
input into a write into a cache of fixed capacity C (`tensor_scatter` at `write_index`),
whose input the caller donates, so the write lands in place (lgc.backends.in_place):

- **step** (S = 1, imported with P = C - 1): the concat's value [B, H, C, D] becomes the
  scatter's, the whole cache with the new position written at write_index. The graph is
  unchanged downstream: its causal mask lets the one query see all C positions, and the
  attention_mask (1 up to and including the new position, 0 after) hides what is not
  written yet. Positions come from `position_ids`, so the model must take them as an input.
- **prefill** (S = L, imported with P = 0): the attention reads the L new positions as
  before (the concat of nothing and them), and the present outputs become the scatters of
  those positions into the caches at write_index, so the prompt's keys and values land in
  the same device buffers the steps then use.

The past inputs keep their names and take the caches [B, H, C, D]; `write_index` [B] is a
new input; outputs keep their names (present.* are the caches, written in place).
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from ..ir.dtypes import from_numpy
from ..ir.graph import Graph, TensorType, Value
from ..passes.rewrite import Rewriter

WRITE_INDEX = "write_index"


def past_inputs(names, types: dict) -> list[str]:
    """The model's cache inputs: rank-4 float inputs whose name says past (transformers'
    past_key_values.{i}.key/value, Optimum's past_key_values.{i}.*, older past.{i}.*)."""
    return [n for n in names if "past" in n.lower() and len(types[n][1] or ()) == 4
            and types[n][0].np.kind == "f"]


def step_graph(graph: Graph, pasts: list[str], capacity: int) -> tuple[Graph, dict[str, str]]:
    """The step (imported with S = 1, P = capacity - 1) on fixed-capacity caches, and which
    output holds each cache ({past input: present output}); a ModelError names the input
    when the model does not follow the convention."""
    by_name = _check_inputs(graph, pasts)
    users, outputs = graph.users(), dict(zip(graph.outputs, graph.output_names))
    concat_of = {}
    for name in pasts:
        v = by_name[name]
        use = users.get(v, [])
        if len(use) != 1 or use[0].op != "concat" or use[0].inputs[0] is not v or \
                len(use[0].inputs) != 2 or use[0].attrs["axis"] % 4 != 2:
            raise ModelError(f"decoder input {name!r} is not used only as the first operand of "
                             f"a concat along axis 2 (the past_key_values convention)")
        if use[0].output not in outputs:
            raise ModelError(f"the concat of decoder input {name!r} is not an output (present)")
        if v.shape[2] + use[0].inputs[1].shape[2] != capacity:
            raise ModelError(f"decoder input {name!r} was imported with past length {v.shape[2]}")
        concat_of[use[0]] = name
    rw, index, caches = _start(graph)
    for node in graph.nodes:
        name = concat_of.get(node)
        if name is None:
            rw.keep(node)
            continue
        caches[name] = _cache_like(node.inputs[0], name, capacity)
        rw.replace(node.output, _write(rw, caches[name], node.inputs[1], index, name))
    presents = {concat_of[n]: outputs[n.output] for n in concat_of}
    return _finish(rw, graph, caches, index, {}), presents


def prefill_graph(graph: Graph, presents: dict[str, str], capacity: int) -> Graph:
    """The prefill (imported with P = 0) with each present output, the prompt's keys or
    values, written into its fixed-capacity cache (the concat with an empty past is the new
    positions themselves; the importer has usually folded it away already)."""
    by_name = _check_inputs(graph, list(presents))
    producers = graph.producers()
    out_value = dict(zip(graph.output_names, graph.outputs))
    rw, index, caches = _start(graph)
    for node in graph.nodes:
        rw.keep(node)
    written = {}
    for name, present in presents.items():
        past, v = by_name[name], out_value[present]
        if past.shape[2] != 0:
            raise ModelError(f"decoder input {name!r} was imported with past length {past.shape[2]}")
        p = producers.get(v)
        if p is not None and p.op == "concat" and p.inputs[0] is past:
            v = p.inputs[1]
        caches[name] = _cache_like(past, name, capacity)
        written[present] = _write(rw, caches[name], v, index, name)
    return _finish(rw, graph, caches, index, written)


def _check_inputs(graph: Graph, pasts: list[str]) -> dict:
    by_name = dict(zip(graph.input_names, graph.inputs))
    missing = [n for n in pasts if n not in by_name]
    if missing:
        raise ModelError(f"decoder has no input {missing[0]!r}")
    if WRITE_INDEX in by_name:
        raise ModelError(f"decoder already has an input named {WRITE_INDEX!r}")
    return by_name


def _start(graph: Graph):
    index = Value(TensorType(from_numpy(np.dtype(np.int64)), (graph.inputs[0].shape[0],)), WRITE_INDEX)
    return Rewriter(graph), index, {}


def _cache_like(past: Value, name: str, capacity: int) -> Value:
    b, h, _, d = past.shape
    return Value(TensorType(past.dtype, (b, h, capacity, d)), name)


def _write(rw: Rewriter, cache: Value, new: Value, index: Value, name: str) -> Value:
    return rw.op("tensor_scatter", [cache, new, index], {"axis": 2}, name=f"{name}.write")


def _finish(rw: Rewriter, graph: Graph, caches: dict, index: Value, written: dict) -> Graph:
    """The rewritten graph: caches in place of the past inputs (same names), write_index
    last; outputs renamed nothing, those in `written` replaced."""
    rw.changed = True
    out = rw.finish()
    inputs = [caches.get(n, v) for n, v in zip(graph.input_names, graph.inputs)] + [index]
    outputs = [written.get(n, rw.get(v)) for n, v in zip(graph.output_names, graph.outputs)]
    return out.replace(inputs=inputs, outputs=outputs, input_names=graph.input_names + [WRITE_INDEX])


# ops whose output row at a position comes from their first input's row there alone (the
# rest are weights): a prefill's last position needs that input's last row only
ROW_OPS = ("matmul", "qmatmul_nbits")


def last_position_only(graph: Graph, output: str) -> Graph:
    """`graph` with output `output` [B, S, V] cut to its last position [B, 1, V] (a prefill
    needs only the last position's logits: less to copy back). Where a matmul over weights
    makes it (the LM head), the cut moves to that matmul's input, so the head multiplies one
    row, not S (TinyLlama's shapes: 32 positions x 2048 x 32000)."""
    i = graph.output_names.index(output)
    v = graph.outputs[i]
    b, s, n = v.shape
    node = next((nd for nd in graph.nodes if v in nd.outputs), None)
    rw = Rewriter(graph)
    for nd in graph.nodes:
        rw.keep(nd)

    def last_row(x):
        return rw.op("slice", [x], {"starts": (0, s - 1, 0), "steps": (1, 1, 1), "shape": (b, 1, x.shape[-1])})
    x = node.inputs[0] if node is not None and node.op in ROW_OPS else None
    if x is not None and x.shape[:2] == (b, s) and len(x.shape) == 3 and \
            all(w.shape and len(w.shape) <= (3 if node.op == "qmatmul_nbits" else 2) for w in node.inputs[1:]):
        last = rw.op(node.op, [last_row(rw.get(x))] + [rw.get(w) for w in node.inputs[1:]], node.attrs,
                     name=node.name)
    else:
        last = last_row(v)
    out = rw.finish()
    outputs = list(out.outputs)
    outputs[i] = last
    return out.replace(outputs=outputs)
