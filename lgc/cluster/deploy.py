"""From what a user names on the command line to a running deployment.

A model is given as one of:
- a `.lgc` artifact: deployed as one stage (a compiled artifact cannot be split again);
- a directory (or its stages.json) written by `lgc plan --split` / shard.compile_stages:
  one stage per artifact, checked against stages.json;
- a `.onnx` model with `--plan plan.json` (the plan's cuts and replica counts) or `--stages S`
  (cuts balanced by the planner over S equal workers): compiled into stage artifacts first.

`connect(address, model, name, max_batch_size)` is what `lgc serve --address` calls: the
running deployment of that name, or a fresh one for the server's lifetime.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

from ..distributed import planner
from ..distributed.cost import CostModel
from ..distributed.graphs import load_graph
from ..distributed.shard import compile_from_plan, compile_stages, read_stages
from ..distributed.specs import parse_workers
from ..errors import InputError
from ..runtime.artifact_sign import public_keys
from .backend import RayBackend
from .connect import NAMESPACE, RESOURCE, ClusterError, join, require_ray
from .deployment import Deployment, registry_name


def default_name(model) -> str:
    """The deployment name a model gets unless one is given: the model file's stem."""
    p = Path(os.fspath(model))
    if p.name == "stages.json":
        p = p.parent
    if p.is_dir():
        try:
            import json
            model_name = json.loads((p / "stages.json").read_text()).get("model") or p.name
        except (OSError, ValueError):
            model_name = p.name
        return Path(model_name).stem
    return p.stem


def stage_artifacts(model, stages: int | None = None, plan: str | None = None,
                    out_dir: str | None = None, progress=None) -> tuple[list[Path], list[int] | None]:
    """(stage artifact paths, replica counts from the plan or None) for a model argument."""
    p = Path(os.fspath(model))
    if not p.exists():
        raise InputError(f"model {os.fspath(model)!r} does not exist")
    if p.name == "stages.json" or p.is_dir():
        base = p.parent if p.name == "stages.json" else p
        doc = read_stages(base)                             # checksums against stages.json
        if stages and stages != doc["stage_count"]:
            raise InputError(f"{base} holds {doc['stage_count']} stages, --stages {stages} asked")
        return [base / st["artifact"] for st in doc["stages"]], None
    if p.suffix == ".lgc":
        if plan or (stages or 1) > 1:
            raise InputError(f"{p.name}: a compiled artifact cannot be split into stages; give the "
                             f".onnx model (or a directory from `lgc plan --split`)")
        return [p], None
    if p.suffix != ".onnx":
        raise InputError(f"{p.name}: expected a .lgc artifact, a .onnx model or a stages directory")
    out = Path(out_dir) if out_dir else p.with_suffix("").with_name(p.stem + ".stages")
    if plan:
        doc = planner.load_plan(plan)
        paths = compile_from_plan(p, plan, out, progress=progress)
        return paths, [max(1, len(s.get("replicas") or [1])) for s in doc["stages"]]
    s = stages or 1
    graph = load_graph(p)
    cuts = balanced_cuts(graph, s) if s > 1 else []
    return compile_stages(graph, cuts, out, model=p.name, progress=progress), None


def balanced_cuts(graph, stages: int) -> list[int]:
    """Cuts the planner chooses for `stages` equal workers (compute balanced, transfers counted)."""
    p = planner.plan(CostModel(graph), parse_workers(f"cpu:1024GB*{stages}"), stages=stages, order="given")
    return p.cuts


def deploy(model, address: str | None = "auto", stages: int | None = None, replicas: int | None = None,
           plan: str | None = None, name: str | None = None, detached: bool = True,
           out_dir: str | None = None, max_restarts: int = -1, progress=None,
           trusted_keys=None) -> Deployment:
    """Compile stages if needed, then start the actors and wait for them to load.
    `trusted_keys`: deploy only artifacts signed by one of these keys (see lgc.load)."""
    if trusted_keys is not None:
        trusted_keys = public_keys(trusted_keys)       # a bad key file fails first
        if Path(os.fspath(model)).suffix == ".onnx":
            raise InputError("--trusted-keys deploys signed artifacts; compile and sign the "
                             "stages first (`lgc compile MODEL.onnx --plan PLAN --sign KEY`)")
    join(address)                          # fail fast (no Ray, no cluster) before compiling
    paths, planned = stage_artifacts(model, stages, plan, out_dir, progress)
    counts = [replicas] * len(paths) if replicas else planned or [1] * len(paths)
    return Deployment.create([str(x) for x in paths], name=name or default_name(model), replicas=counts,
                             address=address, detached=detached, max_restarts=max_restarts,
                             progress=progress, trusted_keys=trusted_keys)


def connect(address: str | None, model, name: str | None = None, max_batch_size: int = 8, progress=None,
            trusted_keys=None):
    """A RayBackend for `lgc serve --address`: attach to the deployment `name` (default: the
    model's) if one runs, else deploy `model` for as long as the server lives (only if it is
    signed by one of `trusted_keys`, when given)."""
    ray = join(address)
    name = name or default_name(model)
    try:
        ray.get_actor(registry_name(name), namespace="lgc")
    except ValueError:
        if progress:
            progress(f"no deployment {name!r} running: deploying {os.fspath(model)} for this server")
        dep = deploy(model, address, name=name, detached=False, progress=progress, trusted_keys=trusted_keys)
        return RayBackend(dep, max_batch_size=max_batch_size, owns_deployment=True)
    if trusted_keys:
        raise InputError(f"deployment {name!r} is already running, and its signatures were checked "
                         f"(or not) by `lgc deploy`: serve it without --trusted-keys, or redeploy it "
                         f"with `lgc deploy --trusted-keys`")
    return RayBackend(Deployment.attach(name, address), max_batch_size=max_batch_size,
                      owns_deployment=False)


def bench_factory(model_path, max_batch_size: int, stages: int | None = None, replicas: int | None = None,
                  address: str | None = None, units: int = 8):
    """A RayBackend for bench/serve.py (`--backend ray`): a local Ray instance with `units`
    lgc_device units unless this process has joined one (or `address` names one), and a
    deployment that goes away with the backend."""
    ray = require_ray()
    if not ray.is_initialized():
        if address:
            join(address)
        else:
            ray.init(num_cpus=os.cpu_count() or 2, resources={RESOURCE: units}, include_dashboard=False,
                     log_to_driver=False, namespace=NAMESPACE)
    name = f"bench-{os.getpid()}-{next(_bench_ids)}"
    dep = deploy(model_path, None, stages=stages, replicas=replicas, name=name, detached=False)
    return RayBackend(dep, max_batch_size=max_batch_size, owns_deployment=True)


_bench_ids = itertools.count()

__all__ = ["ClusterError", "bench_factory", "connect", "deploy", "default_name", "stage_artifacts"]
