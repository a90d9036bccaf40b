"""Split a graph into contiguous pipeline stages, and compile one artifact per stage.

API
---
`schedule(graph) -> list[int]`
    The indices (into `graph.nodes`) of the graph's *dynamic* nodes, in the graph's
    topological order: the units a cut divides. Const nodes and nodes computed only from
    constants ("static" nodes: e.g. a weight made by `broadcast_to` of a constant) are not
    scheduled; every stage that reads a static value recomputes or holds its own copy, so
    weights never cross a cut.
`split(graph, cuts) -> list[Stage]`
    `cuts` are strictly increasing positions 0 < c1 < ... < c_{S-1} < len(schedule(graph));
    stage k runs the dynamic nodes `schedule[c_k : c_{k+1}]` (c_0 = 0, c_S = len). Each
    `Stage.graph` is a normal self-contained Graph.
`live_across(graph, sched=None) -> list[list[Value]]`
    For each boundary position p (0..len(schedule)), the values that must cross a cut made
    there (what `split` would send), in a stable order. Used by the planner's cost model.
`tensor_names(graph) -> dict[Value, str]`
    The name every crossing tensor gets.
`compile_stages(graph, cuts, out_dir, device=None, target=None, opt_level=2) -> list[Path]`
    Writes `stage{k}.lgc` (k = 0..S-1, lgc's normal artifact format) and `stages.json`
    (see STAGES_SCHEMA below) into out_dir; returns the artifact paths in stage order.
`compile_from_plan(model_path, plan_path, out_dir, device=None) -> list[Path]`
    The same for the cuts recorded in a plan file from `lgc plan` (lgc/distributed/planner.py).
`read_stages(dir) -> dict`, `load_stages(dir, device=None) -> list[Executable]`,
`run_stages(executables, feeds) -> dict`
    Read and check stages.json; load the stage artifacts (checked); run them in sequence.

Interface between stages (pass-through): the tensors stage k sends are exactly the tensors
stage k+1 receives, with the same names and order. Stage 0 receives the graph's inputs
(under their names); stage k's sends are every value live across the cut after it, so a
tensor needed by a later stage (or a graph output computed early) *passes through* the
intermediate stages (each returns it unchanged) rather than being sent directly. The last
stage sends the graph's outputs, under the graph's output names, in the graph's order.
So a pipeline runner is: `feeds = request; for stage in stages: feeds = stage.run(feeds)`.
The cost of this choice is that a pass-through tensor crosses every cut it spans; the
planner counts exactly those bytes, so its transfer times match what the stages send.

Names: graph inputs and outputs keep their user names; other crossing values keep their
Value name if they have a unique one, else get `t{i}` (`t{i}_{j}` for output j > 0) where i
is the index of the producing node in `graph.nodes` of the graph that was split.

stages.json (STAGES_SCHEMA, version 1)::

    {"format": "lgc-stages", "version": 1, "model": str, "stage_count": S,
     "cuts": [c1, ...], "inputs": [graph input names], "outputs": [graph output names],
     "stages": [{"index": k, "artifact": "stage{k}.lgc", "nodes": [first, end),
                 "receives": [{"name", "dtype", "shape", "nbytes"}],
                 "sends": [{"name", "dtype", "shape", "nbytes"}],
                 "sha256": hex digest of the artifact file}]}

The artifact format has no free metadata slot, so the stage index, count and tensor names
live in stages.json; each artifact's own manifest also lists its inputs and outputs (the
received and sent names).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..backends.target import TARGETS, by_name
from ..errors import InputError
from ..ir.graph import Graph, Node, Value
from ..runtime import Executable
from ..runtime.artifact import load_artifact
from .graphs import load_graph

STAGES_FORMAT = "lgc-stages"
STAGES_VERSION = 1


@dataclass(frozen=True)
class Stage:
    index: int
    graph: Graph
    nodes: tuple[int, int]          # [first, end) positions in schedule(original graph)

    @property
    def receives(self) -> list[str]:
        return list(self.graph.input_names)

    @property
    def sends(self) -> list[str]:
        return list(self.graph.output_names)


def static_values(graph: Graph) -> set[Value]:
    """Values computed from constants only (const outputs and everything derived from them)."""
    static: set[Value] = set()
    for n in graph.nodes:
        if n.op == "const" or all(v in static for v in n.inputs):
            static.update(n.outputs)
    return static


def schedule(graph: Graph) -> list[int]:
    """Indices of the dynamic (non-static) nodes of graph.nodes, in order: what cuts divide."""
    static = static_values(graph)
    return [i for i, n in enumerate(graph.nodes) if not all(o in static for o in n.outputs)]


def tensor_names(graph: Graph) -> dict[Value, str]:
    """A unique name for every value a stage may receive or send."""
    names: dict[Value, str] = {}
    for v, n in zip(graph.inputs, graph.input_names):
        names[v] = n
    for v, n in zip(graph.outputs, graph.output_names):
        names.setdefault(v, n)
    taken = set(names.values())
    counts: dict[str, int] = {}
    for n in graph.nodes:
        for o in n.outputs:
            if o.name:
                counts[o.name] = counts.get(o.name, 0) + 1
    for i, n in enumerate(graph.nodes):
        for j, o in enumerate(n.outputs):
            if o in names:
                continue
            name = o.name if o.name and counts[o.name] == 1 and o.name not in taken else \
                f"t{i}" if j == 0 else f"t{i}_{j}"
            while name in taken:
                name = "_" + name
            names[o] = name
            taken.add(name)
    return names


def upstream(values, producer: dict[Value, Node]) -> set[Value]:
    """`values` and every value they are computed from (producer: Graph.producers())."""
    seen, need = set(), list(values)
    while need:
        v = need.pop()
        if v not in seen:
            seen.add(v)
            if v in producer:
                need.extend(producer[v].inputs)
    return seen


def live_across(graph: Graph, sched: list[int] | None = None) -> list[list[Value]]:
    """live[p]: the dynamic values defined before schedule position p and needed at or after
    it (by a dynamic node or as a graph output); live[0] is the graph's inputs."""
    sched = schedule(graph) if sched is None else sched
    static = static_values(graph)
    pos = {i: p for p, i in enumerate(sched)}
    n_pos = len(sched)
    defined: dict[Value, int] = {v: -1 for v in graph.inputs}
    last_use: dict[Value, int] = {}
    order: list[Value] = list(graph.inputs)
    for i in sched:
        node = graph.nodes[i]
        for v in node.inputs:
            if v not in static:
                last_use[v] = max(last_use.get(v, -1), pos[i])
        for o in node.outputs:
            defined[o] = pos[i]
            order.append(o)
    for v in graph.outputs:
        if v not in static:
            last_use[v] = n_pos
    live: list[list[Value]] = [[] for _ in range(n_pos + 1)]
    for v in order:
        d, u = defined[v], last_use.get(v)
        if u is None:
            continue
        for p in range(d + 1, min(u, n_pos) + 1):
            live[p].append(v)
    live[0] = list(graph.inputs)
    return live


def _check_cuts(cuts, n: int) -> list[int]:
    cuts = [int(c) for c in cuts]
    if any(not 0 < c < n for c in cuts) or any(a >= b for a, b in zip(cuts, cuts[1:])):
        raise InputError(f"cut positions must be strictly increasing and between 1 and {n - 1} "
                         f"(the graph has {n} dynamic nodes), got {cuts}")
    return cuts


def split(graph: Graph, cuts) -> list[Stage]:
    """Contiguous stage graphs for these cut positions (see the module docstring)."""
    sched = schedule(graph)
    if not sched:
        raise InputError(f"graph {graph.name!r} has no dynamic nodes to split")
    cuts = _check_cuts(cuts, len(sched))
    live = live_across(graph, sched)
    names = tensor_names(graph)
    producer = graph.producers()
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    static = static_values(graph)
    bounds = [0, *cuts, len(sched)]
    stages = []
    for k in range(len(bounds) - 1):
        first, end = bounds[k], bounds[k + 1]
        dynamic = sched[first:end]
        last = k == len(bounds) - 2      # stage 0 takes the model inputs, the last gives its outputs
        ins = list(graph.inputs) if k == 0 else live[first]
        in_names = list(graph.input_names) if k == 0 else [names[v] for v in ins]
        outs = list(graph.outputs) if last else live[end]
        out_names = list(graph.output_names) if last else [names[v] for v in outs]
        # the static closure this stage reads (weights, shapes), kept in graph order
        need = [v for i in dynamic for v in graph.nodes[i].inputs if v in static]
        need += [v for v in outs if v in static]
        keep = {index[id(producer[v])] for v in upstream(need, producer) if v in producer}
        nodes: list[Node] = [graph.nodes[i] for i in sorted(keep | set(dynamic))]
        sg = Graph(f"{graph.name}_stage{k}", ins, outs, nodes, in_names, out_names)
        stages.append(Stage(k, sg, (first, end)))
    return stages


def tensor_json(name: str, v: Value) -> dict:
    return {"name": name, "dtype": v.dtype.name, "shape": list(v.shape), "nbytes": v.type.nbytes}


def _sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def compile_stages(graph: Graph, cuts, out_dir, device=None, target=None, opt_level: int = 2,
                   model: str = "", progress=None) -> list[Path]:
    """Compile each stage of split(graph, cuts) to out_dir/stage{k}.lgc and write
    out_dir/stages.json; returns the artifact paths in stage order. `target` (a Target, a
    name such as "gfx803", or a list of those, one per stage) picks the kernel variants, as
    `lgc compile --target` does; None: the device's own."""
    if getattr(graph, "from_artifact", False):
        raise InputError("splitting needs the model the artifact was compiled from (a .lgc keeps "
                         "its weights packed for its kernels); give the .onnx model")
    stages = split(graph, cuts)
    targets = list(target) if isinstance(target, (list, tuple)) else [target] * len(stages)
    if len(targets) != len(stages):
        raise InputError(f"{len(targets)} targets given for {len(stages)} stages")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, entries = [], []
    for st, tgt in zip(stages, targets):
        if progress:
            progress(f"compiling stage {st.index + 1}/{len(stages)} "
                     f"(nodes {st.nodes[0]}-{st.nodes[1] - 1}) ...")
        exe = Executable.from_graph(st.graph, device, opt_level,
                                    target=by_name(tgt) if isinstance(tgt, str) else tgt)
        path = out / f"stage{st.index}.lgc"
        exe.save(path)
        paths.append(path)
        entries.append({
            "index": st.index, "artifact": path.name, "nodes": list(st.nodes),
            "target": tgt if isinstance(tgt, str) or tgt is None else tgt.name,
            "receives": [tensor_json(n, v) for n, v in zip(st.graph.input_names, st.graph.inputs)],
            "sends": [tensor_json(n, v) for n, v in zip(st.graph.output_names, st.graph.outputs)],
            "sha256": _sha_file(path)})
    doc = {"format": STAGES_FORMAT, "version": STAGES_VERSION, "model": model or graph.name,
           "stage_count": len(stages), "cuts": [s.nodes[0] for s in stages[1:]],
           "fingerprint": fingerprint(graph),
           "inputs": list(graph.input_names), "outputs": list(graph.output_names),
           "stages": entries}
    write_json(out / "stages.json", doc)
    return paths


def read_json(path, what: str = "", name=None):
    """The JSON document in file `path`. A missing file or bad JSON is an InputError that
    begins with `what` and names the file (as `name` for bad JSON, when given)."""
    lead = f"{what} " if what else ""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{lead}{path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{lead}{name or path}: not valid JSON ({e})") from None


def write_json(path, doc) -> None:
    """`doc` as JSON in file `path`, written whole or not at all (a temporary file renamed)."""
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def check_format(doc, fmt: str, version: int, where: str, kind: str) -> dict:
    """`doc` if it is an lgc `kind` of this format and version, else an InputError that
    begins with `where`."""
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise InputError(f"{where}: not an lgc {kind}")
    if doc.get("version") != version:
        raise InputError(f"{where}: unknown {kind} version {doc.get('version')!r} "
                         f"(this lgc reads version {version})")
    return doc


def read_stages(path) -> dict:
    """The stages.json next to stage artifacts, checked (format, version, files, checksums)."""
    p = Path(path)
    if p.is_dir():
        p = p / "stages.json"
    doc = check_format(read_json(p), STAGES_FORMAT, STAGES_VERSION, str(p), "stages file")
    for st in doc.get("stages", []):
        art = p.parent / st["artifact"]
        if not art.exists():
            raise InputError(f"{p}: stage {st['index']} artifact {art.name} is missing")
        if _sha_file(art) != st["sha256"]:
            raise InputError(f"{p}: stage {st['index']} artifact {art.name} does not match its "
                             f"checksum (rebuilt or tampered with)")
    return doc


def load_stages(path, device=None) -> list:
    """The stage Executables of a directory written by compile_stages, checked against
    stages.json (checksums, and each artifact's inputs/outputs equal its receives/sends)."""
    p = Path(path)
    doc = read_stages(p)
    base = p if p.is_dir() else p.parent
    exes = []
    for st in doc["stages"]:
        exe = load_artifact(base / st["artifact"], device)
        if exe.input_names != [t["name"] for t in st["receives"]] or \
                exe.output_names != [t["name"] for t in st["sends"]]:
            raise InputError(f"{st['artifact']}: its inputs/outputs are not the tensors "
                             f"stages.json says stage {st['index']} receives and sends")
        exes.append(exe)
    return exes


def run_stages(stages, feeds: dict) -> dict:
    """Run stage Executables in sequence, in one process: each one's outputs are the next
    one's inputs by name. The reference a distributed runner must agree with."""
    for exe in stages:
        feeds = exe.run(feeds)
    return feeds


def compile_from_plan(model_path, plan_path, out_dir, device=None, progress=None) -> list[Path]:
    """Stage artifacts for the cuts a plan file records (`lgc plan -o plan.json`), each stage
    compiled for its worker's target when lgc knows it (gfx803), else for `device`. The
    model is imported as the planner imported it (the plan's input shapes, -O2) and must
    give the same schedule (checked by fingerprint)."""
    from .planner import load_plan   # lgc.distributed.planner imports this module
    plan = load_plan(plan_path)
    graph = load_graph(model_path, plan.get("input_shapes") or {})
    want = plan.get("graph", {}).get("fingerprint")
    if want and fingerprint(graph) != want:
        raise InputError(f"{os.path.basename(os.fspath(model_path))} does not give the graph "
                         f"{os.path.basename(os.fspath(plan_path))} was planned for (schedule "
                         f"fingerprint {fingerprint(graph)}, plan has {want})")
    cuts = [int(s["nodes"][0]) for s in plan["stages"][1:]]
    targets = [compile_target(s.get("target")) for s in plan["stages"]]
    return compile_stages(graph, cuts, out_dir, device=device, target=targets,
                          model=os.path.basename(os.fspath(model_path)), progress=progress)


def compile_target(kind) -> str | None:
    """The codegen target for a worker kind: a GPU lgc knows by name (gfx803), else None
    (the compiling device's own kernels, e.g. PoCL's for a cpu worker)."""
    t = TARGETS.get(str(kind).lower())
    return t.name if t is not None and t.is_gpu else None


def fingerprint(graph: Graph) -> str:
    """A hash of the schedule (ops and output types, in order): a plan's node positions mean
    the same nodes in another import of the model only if the fingerprints agree."""
    h = hashlib.sha256()
    for i in schedule(graph):
        n = graph.nodes[i]
        h.update(f"{n.op}:{','.join(str(o.type) for o in n.outputs)};".encode())
    return h.hexdigest()[:16]
