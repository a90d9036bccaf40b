"""A model deployed on Ray as S pipeline stages x R replicas, and the caller's side of it.

Each stage is a normal `.lgc` artifact whose inputs are the tensors it receives (model inputs
or an earlier stage's outputs, by name) and whose outputs are the tensors it sends. A request
is a chain of actor calls: stage k's call takes the ObjectRefs that earlier calls returned, so
tensors go from stage to stage through Ray's object store, never through the caller, which
only fetches the final outputs.

Fault handling is Ray's plus a little routing: actors restart after a crash (`max_restarts`);
Ray does not retry their calls itself (`max_task_retries=0`), because a request failed by a dead
actor is better sent at once to a live replica of its stage, here, up to `retries` times,
from that stage on (the earlier stages' outputs are reused from the object store).
A replica that failed a call is skipped until a health ping answers again.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..artifact import read_artifact
from ..errors import InputError, LgcError
from ..runtime.artifact_sign import public_keys, public_pems
from ..runtime.artifact_zip import open_regular
from .connect import NAMESPACE, RESOURCE, ClusterError, device_capacity, join


@dataclass
class Stage:
    index: int
    inputs: list[dict]        # [{"name", "dtype", "shape"}] as in the artifact's manifest
    outputs: list[dict]
    nbytes: int = 0
    sha256: str = ""

    @property
    def input_names(self) -> list[str]:
        return [s["name"] for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s["name"] for s in self.outputs]


@dataclass
class _Replica:
    stage: int
    index: int
    name: str
    handle: object
    down_since: float | None = None     # set when a call failed or a ping went unanswered
    inflight: int = 0
    last_ping: dict = field(default_factory=dict)


def registry_name(deployment: str) -> str:
    return f"{deployment}.registry"


def replica_name(deployment: str, stage: int, replica: int) -> str:
    return f"{deployment}.s{stage}.r{replica}"


def _spec(s: dict) -> dict:
    return {"name": s["name"], "dtype": s["dtype"], "shape": list(s["shape"])}


def describe_stages(paths: list[str], trusted_keys=None) -> tuple[list[Stage], list[bytes]]:
    """Stage descriptions and bytes of the artifacts, each checked (digests, and signatures
    given trusted keys) in the very bytes that are shipped."""
    stages, blobs = [], []
    for i, path in enumerate(paths):
        with open_regular(path) as f:
            data = f.read()
        manifest, _ = read_artifact(data, trusted_keys, os.path.basename(path))   # ArtifactError
        stages.append(Stage(i, [_spec(s) for s in manifest["inputs"]],
                            [_spec(s) for s in manifest["outputs"]], len(data),
                            hashlib.sha256(data).hexdigest()))
        blobs.append(data)
    return stages, blobs


def wire(stages: list[Stage], outputs: list[str] | None = None) -> tuple[list[dict], list[str]]:
    """(model inputs, model outputs) of a pipeline; ClusterError if a stage needs a tensor that
    no earlier stage sends and that is already a model input of another dtype or shape."""
    produced: dict[str, dict] = {}
    inputs: dict[str, dict] = {}
    consumed_later: set[str] = set()
    for st in stages:
        for s in st.inputs:
            src = produced.get(s["name"]) or inputs.get(s["name"])
            if src is None:
                inputs[s["name"]] = s
            elif (src["dtype"], src["shape"]) != (s["dtype"], s["shape"]):
                raise ClusterError(f"stage {st.index} expects {s['name']!r} as {s['dtype']}{s['shape']}, "
                                   f"but it arrives as {src['dtype']}{src['shape']}")
            consumed_later.add(s["name"])
        for s in st.outputs:
            produced[s["name"]] = s
    if outputs is None:
        last = stages[-1].output_names
        outputs = [n for st in stages[:-1] for n in st.output_names
                   if n not in consumed_later and n not in last] + last
    missing = [n for n in outputs if n not in produced]
    if missing:
        raise ClusterError(f"output {missing[0]!r} is not sent by any stage")
    return list(inputs.values()), list(outputs)


class Deployment:
    """Handle on a deployment: run requests through it, check its health, take it down."""

    def __init__(self, ray, name: str, description: dict, replicas: list[list[_Replica]],
                 retries: int = 3, ping_timeout: float = 1.0):
        self._ray = ray
        self.name = name
        self.description = description
        self.stages = [Stage(**s) for s in description["stages"]]
        self.inputs: list[dict] = description["inputs"]
        self.output_names: list[str] = description["outputs"]
        self.replicas = replicas
        self.retries = retries
        self.ping_timeout = ping_timeout
        self._lock = threading.Lock()
        self._turns = [itertools.count() for _ in replicas]
        self._by_actor = {r.handle._actor_id.hex(): r for rs in replicas for r in rs if r.handle}
        self._health_cache: tuple[float, bool] = (0.0, False)
        self.counts = {"ok": 0, "actor_failures": 0, "failed": 0}

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    # -- creation and lookup -------------------------------------------------------------
    @classmethod
    def create(cls, stage_paths: list[str], name: str | None = None, replicas: int | list[int] = 1,
               address: str | None = "auto", outputs: list[str] | None = None,
               detached: bool = True, max_restarts: int = -1, retries: int = 3,
               ready_timeout: float = 600.0, capacity_wait_s: float = 10.0,
               progress=None, trusted_keys=None) -> "Deployment":
        """Start one actor per (stage, replica) and wait until each has loaded its artifact.

        `detached=True` keeps the actors after this process exits (`lgc deploy`); tests and
        benchmarks pass False so that the actors go with them. `trusted_keys`: every stage
        must be signed by one of these keys, checked here and by each actor before it loads.
        """
        say = progress or (lambda msg: None)
        if not stage_paths:
            raise ClusterError("a deployment needs at least one stage artifact")
        if trusted_keys is not None:
            trusted_keys = public_keys(trusted_keys)
        stages, blobs = describe_stages([os.fspath(p) for p in stage_paths], trusted_keys)
        replicas = [replicas] * len(stages) if isinstance(replicas, int) else [int(r) for r in replicas]
        if len(replicas) != len(stages) or min(replicas) < 1:
            raise ClusterError(f"need one replica count >= 1 per stage ({len(stages)} stages), got {replicas}")
        inputs, outputs = wire(stages, outputs)
        name = name or os.path.splitext(os.path.basename(os.fspath(stage_paths[0])))[0]
        ray = join(address)
        total, free = device_capacity(ray)
        need = sum(replicas)
        deadline = time.monotonic() + (capacity_wait_s if need <= total else 0)
        while need > free and time.monotonic() < deadline:   # units of actors just removed
            time.sleep(0.2)                                    # show up free a little later
            total, free = device_capacity(ray)
        if need > free:
            raise ClusterError(f"{len(stages)} stage(s) with {'+'.join(map(str, replicas))} replica(s) "
                               f"need {need} {RESOURCE} units; the cluster has {total}, {free} free")
        try:
            ray.get_actor(registry_name(name), namespace=NAMESPACE)
            raise ClusterError(f"a deployment named {name!r} is already running "
                               f"(`lgc cluster down {name}` removes it)")
        except ValueError:
            pass
        from .actor import Registry, StageWorker   # imports ray: only when deploying
        lifetime = "detached" if detached else None
        description = {"name": name, "replicas": replicas, "inputs": inputs, "outputs": outputs,
                       "stages": [st.__dict__ for st in stages], "created": time.time(),
                       "max_restarts": max_restarts,
                       "trusted_keys": None if trusted_keys is None else public_pems(trusted_keys)}
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        registry = Registry.options(name=registry_name(name), namespace=NAMESPACE, lifetime=lifetime,
                                    scheduling_strategy=NodeAffinitySchedulingStrategy(_head_node(ray), soft=False),
                                    ).remote(description)
        ray.get([registry.put_artifact.remote(i, b) for i, b in enumerate(blobs)])
        say(f"shipped {len(blobs)} artifact(s), {sum(map(len, blobs)) / 2**20:.1f} MiB; "
            f"starting {need} actor(s)")
        reps = []
        for st in stages:
            row = []
            for r in range(replicas[st.index]):
                rname = replica_name(name, st.index, r)
                handle = StageWorker.options(
                    name=rname, namespace=NAMESPACE, lifetime=lifetime, resources={RESOURCE: 1},
                    max_restarts=max_restarts, max_task_retries=0,
                ).remote(name, st.index, r, registry_name(name), NAMESPACE)
                row.append(_Replica(st.index, r, rname, handle))
            reps.append(row)
        dep = cls(ray, name, description, reps, retries)
        dep._registry = registry     # a non-detached actor lives only while a handle does
        try:
            dep._wait_loaded(ready_timeout, say)
        except BaseException:
            dep.shutdown()
            raise
        return dep

    def _wait_loaded(self, timeout: float, say) -> None:
        pending = {r.handle.ping.remote(): r for rs in self.replicas for r in rs}
        start = time.monotonic()
        deadline, next_note = start + timeout, start + 30
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClusterError(f"{len(pending)} actor(s) did not load within {timeout:.0f} s "
                                   f"(see `lgc cluster status`)")
            if time.monotonic() >= next_note:
                say(f"  still waiting for {len(pending)} actor(s) after {time.monotonic() - start:.0f} s "
                    f"(loading, or no free {RESOURCE} unit on a live node)")
                next_note += 30
            done, _ = self._ray.wait(list(pending), num_returns=1, timeout=min(left, 5.0))
            for ref in done:
                rep = pending.pop(ref)
                try:
                    rep.last_ping = self._ray.get(ref)
                except self._ray.exceptions.RayError as e:
                    raise ClusterError(f"actor {rep.name} failed to start: {_raised_line(e)}") from None
                say(f"  {rep.name} loaded on {rep.last_ping['node']} ({rep.last_ping['device']}) "
                    f"in {rep.last_ping['load_s']} s")

    @classmethod
    def attach(cls, name: str, address: str | None = "auto", retries: int = 3) -> "Deployment":
        """The running deployment `name` (as `lgc deploy` left it)."""
        ray = join(address)
        try:
            registry = ray.get_actor(registry_name(name), namespace=NAMESPACE)
        except ValueError:
            known = ", ".join(list_deployments(ray)) or "none"
            raise ClusterError(f"no deployment named {name!r} on this cluster (running: {known})") from None
        description = ray.get(registry.describe.remote())
        reps = []
        for st in description["stages"]:
            row = []
            for r in range(description["replicas"][st["index"]]):
                rname = replica_name(name, st["index"], r)
                try:
                    handle = ray.get_actor(rname, namespace=NAMESPACE)
                except ValueError:               # dead for good (out of restarts)
                    handle = None
                row.append(_Replica(st["index"], r, rname, handle, None if handle else time.time()))
            reps.append(row)
        return cls(ray, name, description, reps, retries)

    def shutdown(self, wait_s: float = 30.0) -> None:
        """Kill every actor of the deployment (no restart) and wait until Ray has let them go
        (their names freed, so their device units are free again)."""
        names = [r.name for rs in self.replicas for r in rs] + [registry_name(self.name)]
        for n in names:
            try:
                self._ray.kill(self._ray.get_actor(n, namespace=NAMESPACE), no_restart=True)
            except ValueError:
                pass
        deadline = time.monotonic() + wait_s
        while names and time.monotonic() < deadline:
            alive = {a["name"] for a in self._ray.util.list_named_actors(all_namespaces=True)
                     if a.get("namespace") == NAMESPACE}
            names = [n for n in names if n in alive]
            if names:
                time.sleep(0.05)

    # -- requests ------------------------------------------------------------------------
    def _pick(self, stage: int) -> _Replica:
        with self._lock:
            live = [r for r in self.replicas[stage] if r.handle is not None]
            if not live:
                raise ClusterError(f"stage {stage} of {self.name!r} has no replica left")
            up = [r for r in live if r.down_since is None]
            if up:
                turn = next(self._turns[stage])
                rep = min(up, key=lambda r: (r.inflight, (r.index - turn) % len(up)))
            else:                                # all suspect: the longest down may be back
                rep = min(live, key=lambda r: r.down_since)
            rep.inflight += 1
            return rep

    def _mark(self, reps: list[_Replica], failed_actor: str | None) -> None:
        with self._lock:
            for r in reps:
                r.inflight -= 1
            if failed_actor and failed_actor in self._by_actor:
                rep = self._by_actor[failed_actor]
                rep.down_since = rep.down_since or time.time()
                self._health_cache = (0.0, False)
            elif failed_actor is None:
                for r in reps:
                    r.down_since = None          # a call went through: they are up

    def infer(self, feeds: dict[str, np.ndarray], timeout: float = 60.0) -> dict[str, np.ndarray]:
        """Run one request through the pipeline; retried on live replicas when an actor dies."""
        ray = self._ray
        names = [s["name"] for s in self.inputs]
        missing = [n for n in names if n not in feeds]
        unknown = [n for n in feeds if n not in names]
        if missing or unknown:
            raise InputError(f"missing input {missing[0]!r}" if missing else
                             f"unknown input {unknown[0]!r} (inputs are: {', '.join(names)})")
        deadline = time.monotonic() + timeout
        last = None
        env: dict = dict(feeds)       # tensor name -> array or ObjectRef, kept across attempts
        first = 0                     # the stage an attempt starts from
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.1 * 2 ** (attempt - 1), max(0.0, deadline - time.monotonic())))
            chosen: list[_Replica] = []
            failed_actor = None
            try:
                for st in self.stages[first:]:
                    rep = self._pick(st.index)
                    chosen.append(rep)
                    refs = rep.handle.infer.options(num_returns=len(st.outputs)).remote(
                        *[env[n] for n in st.input_names])
                    env.update(zip(st.output_names, refs if len(st.outputs) > 1 else [refs]))
                left = deadline - time.monotonic()
                values = ray.get([env[n] for n in self.output_names], timeout=max(left, 0.001))
            except ray.exceptions.GetTimeoutError:
                self._mark(chosen, "")
                self._count("failed")
                raise ClusterError(f"{self.name}: request timed out after {timeout:.0f} s") from None
            except ClusterError:
                self._mark(chosen, "")
                self._count("failed")
                raise
            except ray.exceptions.RayError as e:
                cause = _actor_failure(ray, e)
                if cause is None:                 # the stage itself raised: not worth retrying
                    self._mark(chosen, "")
                    self._count("failed")
                    inner = getattr(e, "cause", None)
                    if isinstance(inner, LgcError):
                        raise inner from None
                    raise ClusterError(f"{self.name}: {_first_line(e)}") from None
                failed_actor = cause
                self._mark(chosen, failed_actor)
                # start again at the dead actor's stage: earlier stages' outputs are still in
                # the object store (if they were lost too, the next failure names their actor,
                # or none, and the attempt after starts earlier, at stage 0 at the latest)
                dead = self._by_actor.get(failed_actor)
                first = dead.stage if dead is not None else 0
                later = {n for st in self.stages[first:] for n in st.output_names}
                self._drain([v for n, v in env.items() if n in later and isinstance(v, ray.ObjectRef)])
                env = {n: v for n, v in env.items() if n not in later}
                if first == 0:
                    env = dict(feeds)
                last = e
                self._count("actor_failures")
                if time.monotonic() >= deadline:
                    break
                continue
            self._mark(chosen, None)
            self._count("ok")
            return dict(zip(self.output_names, values))
        self._count("failed")
        raise ClusterError(f"{self.name}: no live replica answered after {self.retries} retries "
                           f"({_first_line(last)})")

    def _drain(self, refs: list, wait_s: float = 1.0) -> None:
        """Fetch the errors of a failed attempt's other objects (stage calls fed by the dead
        actor fail too), so that Ray does not log each one as an unhandled error."""
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=wait_s) if refs else ([], [])
        for ref in ready:
            try:
                self._ray.get(ref)
            except self._ray.exceptions.RayError:
                pass

    # -- health --------------------------------------------------------------------------
    def health(self, timeout: float | None = None) -> list[list[dict | None]]:
        """Ping every replica; per stage, each replica's ping answer or None if it gave none."""
        ray = self._ray
        timeout = self.ping_timeout if timeout is None else timeout
        refs = {}
        for rs in self.replicas:
            for r in rs:
                if r.handle is not None:
                    refs[r.handle.ping.remote()] = r
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout) if refs else ([], [])
        answers = {}
        for ref in ready:
            try:
                answers[id(refs[ref])] = ray.get(ref)
            except ray.exceptions.RayError:
                pass
        with self._lock:
            for rep in refs.values():
                ans = answers.get(id(rep))
                if ans is not None:
                    rep.down_since, rep.last_ping = None, ans
                elif rep.down_since is None:
                    rep.down_since = time.time()
        return [[answers.get(id(r)) for r in rs] for rs in self.replicas]

    def ready(self, max_age: float = 0.5) -> bool:
        """True while every stage has a replica that answers a health ping (cached max_age s)."""
        t, ok = self._health_cache
        if time.monotonic() - t < max_age:
            return ok
        ok = all(any(a is not None for a in row) for row in self.health())
        self._health_cache = (time.monotonic(), ok)
        return ok


def _head_node(ray) -> str:
    """The head node's id (the registry lives there: the cluster ends with it anyway), else
    this process's node."""
    for n in ray.nodes():
        if n.get("Alive") and "node:__internal_head__" in n.get("Resources", {}):
            return n["NodeID"]
    return ray.get_runtime_context().get_node_id()


def _actor_failure(ray, e) -> str | None:
    """The id of the actor whose death failed this call ("" if unknown), or None if the call
    failed for another reason (the stage's own code raised)."""
    ex = ray.exceptions
    inner = getattr(e, "cause", None)
    for err in (e, inner):
        if isinstance(err, ex.RayActorError):
            return getattr(err, "actor_id", None) or ""
        if isinstance(err, (ex.ObjectLostError, ex.OwnerDiedError, ex.WorkerCrashedError)):
            return ""
    return None


def _raised_line(e) -> str:
    """What an actor's constructor raised ("SignatureError: stage0.lgc: unsigned ..."): the
    last `module.Error: message` line of the traceback Ray reports, else its first line."""
    for line in reversed(str(e).strip().splitlines()):
        m = re.match(r"\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)", line)
        if m:
            return f"{m.group(1)}: {m.group(2)}"[:300]
    return _first_line(e)


def _first_line(e) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "ray::", "File ")):
            return line[:300]
    return type(e).__name__


def list_deployments(ray) -> list[str]:
    """Names of the deployments whose registry actor is alive on the connected cluster."""
    names = ray.util.list_named_actors(all_namespaces=True)
    return sorted(a["name"][:-len(".registry")] for a in names
                  if a.get("namespace") == NAMESPACE and a["name"].endswith(".registry"))
