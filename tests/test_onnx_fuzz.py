"""Mutation fuzzing of the ONNX front end: every damaged model either compiles or is refused
with an lgc error (one line), never a raw KeyError, TypeError, pyopencl error or MemoryError.

Seeds are small real models (the onnx package's test data and a few built here); each mutant
applies one seeded damage (a deleted or duplicated node, an undefined input, a changed or
unknown attribute, absurd dims, a wrong dtype, a dropped initializer, truncated or flipped
protobuf bytes...) and goes through the path `lgc compile` takes: load, check, import,
passes, lowering and the OpenCL build. A sample of those that compile also runs.

`python tests/test_onnx_fuzz.py N` runs N mutants and counts the outcomes (exploration).
"""
from __future__ import annotations

import os
import random
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import lgc
from lgc.errors import LgcError
from lgc.frontend.onnx.importer import CANNOT_CONVERT

N_MUTANTS = 240
SEED = 12
RUN_EVERY = 2          # run one in RUN_EVERY of the mutants that compile
SLOW_SECONDS = 5.0     # no mutant may take longer to compile or to be refused

_DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
_DATA_MODELS = ("simple/test_single_relu_model", "pytorch-operator/test_operator_add_broadcast",
                "simple/test_shrink", "pytorch-converted/test_Conv2d",
                "pytorch-converted/test_Linear", "pytorch-converted/test_BatchNorm2d_eval",
                "pytorch-converted/test_MaxPool2d", "pytorch-converted/test_Softmax",
                "pytorch-converted/test_Embedding", "pytorch-converted/test_PixelShuffle",
                "pytorch-converted/test_GLU", "pytorch-converted/test_ConvTranspose2d",
                "pytorch-converted/test_ReflectionPad2d", "pytorch-operator/test_operator_pad",
                "pytorch-operator/test_operator_chunk", "pytorch-operator/test_operator_view",
                "pytorch-operator/test_operator_reduced_mean_keepdim",
                "pytorch-operator/test_operator_index", "pytorch-operator/test_operator_mm",
                "pytorch-operator/test_operator_repeat", "pytorch-operator/test_operator_permute2",
                "pytorch-operator/test_operator_flatten", "pytorch-operator/test_operator_concat2")


# ---- seed models --------------------------------------------------------------------------

def _built_models() -> dict[str, onnx.ModelProto]:
    """Small models exercising shape arithmetic, gathers, casts and control flow."""
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    rng = np.random.default_rng(0)
    out = {}

    def model(name, nodes, inputs, outputs, inits=(), opset=17):
        g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
        out[name] = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])

    model("mlp", [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
                  helper.make_node("Add", ["h", "b1"], ["hb"], name="bias1"),
                  helper.make_node("Relu", ["hb"], ["r"], name="relu"),
                  helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="gemm", transB=1),
                  helper.make_node("Softmax", ["y"], ["p"], name="softmax", axis=-1)],
          [helper.make_tensor_value_info("x", f32, ["N", 8])],
          [helper.make_tensor_value_info("p", f32, ["N", 3])],
          [numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1"),
           numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1"),
           numpy_helper.from_array(rng.standard_normal((3, 16)).astype(np.float32), "w2"),
           numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b2")])
    model("reshape", [helper.make_node("Shape", ["x"], ["s"], name="shape"),
                      helper.make_node("Gather", ["s", "zero"], ["n"], name="batch", axis=0),
                      helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"], name="unsq"),
                      helper.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
                      helper.make_node("Reshape", ["x", "target"], ["flat"], name="reshape"),
                      helper.make_node("ReduceSum", ["flat", "one1"], ["y"], name="sum", keepdims=1),
                      helper.make_node("Cast", ["y"], ["yi"], name="cast", to=TensorProto.INT32),
                      helper.make_node("Transpose", ["x"], ["t"], name="transpose", perm=[0, 2, 1])],
          [helper.make_tensor_value_info("x", f32, ["N", 3, 4])],
          [helper.make_tensor_value_info("yi", TensorProto.INT32, ["N", 1]),
           helper.make_tensor_value_info("t", f32, ["N", 4, 3])],
          [numpy_helper.from_array(np.array(0, np.int64), "zero"),
           numpy_helper.from_array(np.array([0], np.int64), "zero1"),
           numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
           numpy_helper.from_array(np.array([1], np.int64), "one1")])
    model("gather_slice", [helper.make_node("Gather", ["table", "idx"], ["rows"], name="embed", axis=0),
                           helper.make_node("Slice", ["rows", "st", "en", "ax"], ["part"], name="slice"),
                           helper.make_node("ConstantOfShape", ["shp"], ["fill"], name="fill",
                                            value=numpy_helper.from_array(np.array([2.0], np.float32))),
                           helper.make_node("Mul", ["part", "fill"], ["y"], name="mul"),
                           helper.make_node("TopK", ["y", "k"], ["v", "i"], name="topk", axis=-1)],
          [helper.make_tensor_value_info("idx", i64, [2, 3])],
          [helper.make_tensor_value_info("v", f32, [2, 3, 2]),
           helper.make_tensor_value_info("i", i64, [2, 3, 2])],
          [numpy_helper.from_array(rng.standard_normal((10, 6)).astype(np.float32), "table"),
           numpy_helper.from_array(np.array([1], np.int64), "st"),
           numpy_helper.from_array(np.array([5], np.int64), "en"),
           numpy_helper.from_array(np.array([2], np.int64), "ax"),
           numpy_helper.from_array(np.array([2, 3, 4], np.int64), "shp"),
           numpy_helper.from_array(np.array([2], np.int64), "k")])
    then_g = helper.make_graph([helper.make_node("Neg", ["x"], ["a"], name="neg")], "then", [],
                               [helper.make_tensor_value_info("a", f32, [4])])
    else_g = helper.make_graph([helper.make_node("Abs", ["x"], ["b"], name="abs")], "else", [],
                               [helper.make_tensor_value_info("b", f32, [4])])
    model("if", [helper.make_node("ReduceSum", ["x"], ["s"], name="sum", keepdims=0),
                 helper.make_node("Greater", ["s", "zerof"], ["c"], name="positive"),
                 helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then_g,
                                  else_branch=else_g)],
          [helper.make_tensor_value_info("x", f32, [4])],
          [helper.make_tensor_value_info("y", f32, [4])],
          [numpy_helper.from_array(np.array(0, np.float32), "zerof")])
    body = helper.make_graph(
        [helper.make_node("Add", ["acc", "x"], ["acc2"], name="acc_add"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep")], "body",
        [helper.make_tensor_value_info("i", i64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc", f32, [4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc2", f32, [4])])
    model("loop", [helper.make_node("Loop", ["trips", "", "init"], ["y"], name="loop", body=body)],
          [helper.make_tensor_value_info("x", f32, [4])],
          [helper.make_tensor_value_info("y", f32, [4])],
          [numpy_helper.from_array(np.array(3, np.int64), "trips"),
           numpy_helper.from_array(np.zeros(4, np.float32), "init")])
    return out


def seed_models() -> dict[str, onnx.ModelProto]:
    seeds = {}
    for rel in _DATA_MODELS:
        path = os.path.join(_DATA, rel, "model.onnx")
        if os.path.exists(path):
            seeds[rel.split("/")[1]] = onnx.load(path)
    seeds.update(_built_models())
    return seeds


# ---- mutations ----------------------------------------------------------------------------
# Each takes a copy of a model and a Random; returns the damaged ModelProto or bytes, or None
# where it does not apply to this model.

ABSURD = (0, -5, -1, 2**40, 2**31, 2**62, 2**20)


def _all_graphs(model):
    stack = [model.graph]
    while stack:
        g = stack.pop()
        yield g
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                stack.extend(a.graphs)


def _pick_node(model, r, having=lambda n: True):
    """A random node (subgraphs included) for which having(node) holds, or None."""
    nodes = [n for g in _all_graphs(model) for n in g.node if having(n)]
    return r.choice(nodes) if nodes else None


def _pick_attribute(model, r):
    """A random attribute that does not hold a graph, or None."""
    attrs = [a for g in _all_graphs(model) for n in g.node for a in n.attribute
             if a.type != onnx.AttributeProto.GRAPH]
    return r.choice(attrs) if attrs else None


def delete_node(m, r):
    g = m.graph
    if not g.node:
        return None
    del g.node[r.randrange(len(g.node))]
    return m


def duplicate_node(m, r):
    g = m.graph
    if not g.node:
        return None
    i = r.randrange(len(g.node))
    copy = onnx.NodeProto()
    copy.CopyFrom(g.node[i])
    g.node.insert(r.randrange(len(g.node) + 1), copy)
    return m


def swap_nodes(m, r):
    g = m.graph
    if len(g.node) < 2:
        return None
    i, j = r.sample(range(len(g.node)), 2)
    a, b = onnx.NodeProto(), onnx.NodeProto()
    a.CopyFrom(g.node[i])
    b.CopyFrom(g.node[j])
    g.node[i].CopyFrom(b)
    g.node[j].CopyFrom(a)
    return m


def undefined_input(m, r):
    n = _pick_node(m, r, lambda n: n.input)
    if n is None:
        return None
    n.input[r.randrange(len(n.input))] = "no_such_tensor"
    return m


def extra_input(m, r):
    n = _pick_node(m, r)
    if n is None:
        return None
    n.input.append(r.choice([n.input[0] if n.input else "", "", "no_such_tensor"]))
    return m


def _dropping(field: str):
    """The mutation that deletes one entry of a node's `field` (input or attribute)."""
    def mutate(m, r):
        n = _pick_node(m, r, lambda n: getattr(n, field))
        if n is None:
            return None
        entries = getattr(n, field)
        del entries[r.randrange(len(entries))]
        return m
    mutate.__name__ = f"drop_{field}"
    return mutate


drop_input = _dropping("input")


def change_op_type(m, r):
    n = _pick_node(m, r)
    if n is None:
        return None
    n.op_type = r.choice(["Relu", "Add", "Concat", "Reshape", "Gemm", "Conv", "Softmax", "Split",
                          "NoSuchOp", "Loop", "Where", "Pad"])
    return m


def change_attribute(m, r):
    a = _pick_attribute(m, r)
    if a is None:
        return None
    T = onnx.AttributeProto
    if a.type == T.INT:
        a.i = r.choice(ABSURD + (3, 7, -2))
    elif a.type == T.INTS:
        choice = r.randrange(3)
        if choice == 0 and a.ints:
            a.ints[r.randrange(len(a.ints))] = r.choice(ABSURD)
        elif choice == 1:
            a.ints.append(r.choice((0, 1, -1, 5)))
        else:
            del a.ints[:]
    elif a.type == T.FLOAT:
        a.f = r.choice([float("nan"), float("inf"), -1e30, 0.0])
    elif a.type == T.STRING:
        a.s = r.choice([b"", b"NOTSET_X", b"\xff\xfe", b"SAME_UPPER" * 3])
    elif a.type == T.TENSOR:
        a.t.dims[:] = [r.choice(ABSURD)] + list(a.t.dims[1:])
    else:
        return None
    return m


def change_attribute_type(m, r):
    a = _pick_attribute(m, r)
    if a is None:
        return None
    name = a.name
    a.Clear()
    a.CopyFrom(r.choice([helper.make_attribute(name, 1.5), helper.make_attribute(name, "text"),
                         helper.make_attribute(name, [1, 2, 3]), helper.make_attribute(name, 2),
                         helper.make_attribute(name, [0.5, 1.0]),
                         helper.make_attribute(name, numpy_helper.from_array(np.ones(2, np.float32)))]))
    return m


def unknown_attribute(m, r):
    n = _pick_node(m, r)
    if n is None:
        return None
    n.attribute.append(helper.make_attribute(
        r.choice(["no_such_attr", "alpha_", "bogus"]), r.choice([1, 2.0, "x", [1, 2]])))
    return m


drop_attribute = _dropping("attribute")


def _value_infos(m):
    return [vi for g in _all_graphs(m) for vi in list(g.input) + list(g.output) + list(g.value_info)
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape")]


def absurd_dim(m, r):
    infos = [vi for vi in _value_infos(m) if vi.type.tensor_type.shape.dim]
    if not infos:
        return None
    dims = r.choice(infos).type.tensor_type.shape.dim
    d = dims[r.randrange(len(dims))]
    d.Clear()
    d.dim_value = r.choice(ABSURD)
    return m


def absurd_input_shape(m, r):
    infos = [vi for vi in m.graph.input if vi.type.HasField("tensor_type")]
    if not infos:
        return None
    shape = infos[0].type.tensor_type.shape
    del shape.dim[:]
    for d in r.choice([[2**20, 2**20], [2**16] * 3, [-5, 4], [0, 3], [1] * 40, [2**40]]):
        shape.dim.add().dim_value = d
    return m


def wrong_output_shape(m, r):
    outs = [o for o in m.graph.output if o.type.HasField("tensor_type")]
    if not outs:
        return None
    shape = r.choice(outs).type.tensor_type.shape
    del shape.dim[:]
    for d in r.choice([[7], [1, 2, 3, 4, 5], [3, 9]]):
        shape.dim.add().dim_value = d
    return m


def change_dtype(m, r):
    infos = [vi for g in _all_graphs(m) for vi in list(g.input) + list(g.output)
             if vi.type.HasField("tensor_type")]
    inits = list(m.graph.initializer)
    if not infos and not inits:
        return None
    new = r.choice([TensorProto.INT8, TensorProto.STRING, TensorProto.BOOL, TensorProto.DOUBLE,
                    TensorProto.FLOAT16, TensorProto.COMPLEX64, TensorProto.UNDEFINED, 999])
    if inits and r.random() < 0.4:
        r.choice(inits).data_type = new
    else:
        r.choice(infos).type.tensor_type.elem_type = new
    return m


def drop_initializer(m, r):
    inits = m.graph.initializer
    if not inits:
        return None
    del inits[r.randrange(len(inits))]
    return m


def damage_initializer(m, r):
    inits = [t for t in m.graph.initializer]
    if not inits:
        return None
    t = r.choice(inits)
    choice = r.randrange(4)
    if choice == 0:
        t.dims[:] = list(t.dims) + [r.choice((2, 2**20, 2**40))]
    elif choice == 1:
        t.dims[:] = [r.choice((-3, 0, 2**33))] + list(t.dims[1:])
    elif choice == 2 and t.raw_data:
        t.raw_data = t.raw_data[:len(t.raw_data) // 2]
    else:
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for k, v in (("location", r.choice(["../../etc/passwd", "/etc/passwd", "missing.bin"])),
                     ("length", str(r.choice((16, 2**40))))):
            e = t.external_data.add()
            e.key, e.value = k, v
    return m


def change_opset(m, r):
    if not m.opset_import:
        return None
    m.opset_import[0].version = r.choice([0, 1, 6, 99, -3])
    return m


def drop_output(m, r):
    if not m.graph.output:
        return None
    if r.random() < 0.5:
        m.graph.output[0].name = "never_produced"
    else:
        del m.graph.output[:]
    return m


def truncate(m, r):
    data = m.SerializeToString()
    return data[:r.randrange(1, max(2, len(data)))]


def flip_bytes(m, r):
    data = bytearray(m.SerializeToString())
    for _ in range(r.choice((1, 2, 4, 16))):
        i = r.randrange(len(data))
        data[i] ^= 1 << r.randrange(8)
    return bytes(data)


MUTATIONS = (delete_node, duplicate_node, swap_nodes, undefined_input, extra_input, drop_input,
             change_op_type, change_attribute, change_attribute_type, unknown_attribute,
             drop_attribute, absurd_dim, absurd_input_shape, wrong_output_shape, change_dtype,
             drop_initializer, damage_initializer, change_opset, drop_output, truncate, flip_bytes)


def mutants(n: int, seed: int = SEED):
    """n (name, serialized model) pairs, the same for the same seed."""
    seeds = seed_models()
    names = sorted(seeds)
    r = random.Random(seed)
    made = slot = 0
    while made < n:
        mutate = MUTATIONS[slot % len(MUTATIONS)]   # every mutation in turn
        slot += 1
        for _ in range(20):                         # seeds it applies to
            base = r.choice(names)
            m = onnx.ModelProto()
            m.CopyFrom(seeds[base])
            out = mutate(m, r)
            if out is not None:
                data = out if isinstance(out, bytes) else out.SerializeToString()
                yield f"{made:03d}-{base}-{mutate.__name__}", data
                made += 1
                break


# ---- the compile path ---------------------------------------------------------------------

def compile_bytes(data: bytes, path: str, run: bool = False):
    """What `lgc compile` does with a model file, short of writing the artifact."""
    with open(path, "wb") as f:
        f.write(data)
    model = lgc.compile(path)
    exe = model.executable(model.default_types())
    types = exe.input_types()
    if run and all(t.size <= 1 << 16 for t in types.values()):   # small inputs only
        rng = np.random.default_rng(0)
        exe.run({name: (rng.integers(0, 2, t.shape) if t.dtype.np.kind in "iub" else
                        rng.standard_normal(t.shape)).astype(t.dtype.np)
                 for name, t in types.items()})
    return exe


def outcome(data: bytes, path: str, run: bool = False) -> tuple[str, str, float]:
    """('ok' | 'refused' | 'slip' | 'raw', the message, seconds). A slip is refused by the
    importer's last resort (a converter tripped over its inputs) rather than by a check."""
    t = time.perf_counter()
    try:
        compile_bytes(data, path, run)
        kind, msg = "ok", ""
    except LgcError as e:
        kind, msg = "slip" if CANNOT_CONVERT in str(e) else "refused", str(e)
    except Exception as e:  # noqa: BLE001 (what this test looks for)
        kind, msg = "raw", f"{type(e).__module__}.{type(e).__name__}: {e}"
    return kind, msg, time.perf_counter() - t


# ---- tests ---------------------------------------------------------------------------------

def test_seed_models_compile(tmp_path):
    """The undamaged seeds compile, so a refused mutant is refused for its damage."""
    for name, m in sorted(seed_models().items()):
        kind, msg, _ = outcome(m.SerializeToString(), str(tmp_path / "seed.onnx"), run=True)
        assert kind == "ok", f"{name}: {msg}"


def test_mutants_compile_or_refuse_with_lgc_error(tmp_path):
    counts = {"ok": 0, "refused": 0, "slip": 0, "raw": 0}
    bad = []
    for i, (name, data) in enumerate(mutants(N_MUTANTS)):
        kind, msg, secs = outcome(data, str(tmp_path / "m.onnx"), run=i % RUN_EVERY == 0)
        counts[kind] += 1
        if kind in ("raw", "slip") or secs > SLOW_SECONDS:
            bad.append(f"{name}: {kind} in {secs:.1f} s: {msg}")
        if kind == "refused":
            assert "\n" not in msg.strip(), f"{name}: a refusal is one line: {msg!r}"
    assert not bad, "\n".join(bad)
    assert counts["ok"] > 20 and counts["refused"] > 100, counts   # both paths are exercised


if __name__ == "__main__":
    import collections
    import tempfile
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N_MUTANTS
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else SEED
    tally = collections.Counter()
    with tempfile.TemporaryDirectory() as d:
        for i, (name, data) in enumerate(mutants(n, seed)):
            kind, msg, secs = outcome(data, os.path.join(d, "m.onnx"), run=i % RUN_EVERY == 0)
            tally[kind] += 1
            if kind in ("raw", "slip") or secs > SLOW_SECONDS or "-v" in sys.argv:
                print(f"{name}: {kind} {secs:.2f}s {msg[:300]}", flush=True)
    print(dict(tally))
