"""`lgc deploy`, `lgc cluster status` and `lgc cluster down`; `lgc.tools.cli.build_parser` calls
`add_parsers`. lgc.cluster (and Ray) is imported only when a command runs: `lgc --help` works
without Ray, and other commands do not load it."""
from __future__ import annotations

from ..errors import InputError
from .common import say


def cmd_deploy(args) -> int:
    from ..cluster.connect import RESOURCE
    from ..cluster.deploy import deploy
    if args.replicas is not None and args.replicas < 1:
        raise InputError(f"--replicas must be at least 1, got {args.replicas}")
    dep = deploy(args.model, args.address, stages=args.stages, replicas=args.replicas, plan=args.plan,
                 name=args.name, out_dir=args.out_dir, max_restarts=args.max_restarts, progress=say,
                 trusted_keys=args.trusted_keys)
    counts = [len(rs) for rs in dep.replicas]
    print(f"deployed {dep.name!r}: {len(counts)} stage(s), replicas {'+'.join(map(str, counts))}, "
          f"{sum(counts)} {RESOURCE} unit(s); ready: {dep.ready()}")
    print(f"serve it with: lgc serve {args.model} --address {args.address} --name {dep.name}")
    print(f"remove it with: lgc cluster down {dep.name} --address {args.address}")
    return 0


def status_text(ray, deployments) -> str:
    """Workers (nodes with their resources) and each deployment's replicas with their health."""
    from ..cluster.connect import RESOURCE
    lines = [f"{'node':<16} {'alive':<5} {'CPU':>4} {RESOURCE:>10}"]
    for n in sorted(ray.nodes(), key=lambda n: n["NodeManagerAddress"]):
        res = n.get("Resources", {})
        lines.append(f"{n['NodeManagerAddress']:<16} {'yes' if n['Alive'] else 'no':<5} "
                     f"{int(res.get('CPU', 0)):>4} {int(res.get(RESOURCE, 0)):>10}")
    total = int(ray.cluster_resources().get(RESOURCE, 0))
    free = int(ray.available_resources().get(RESOURCE, 0))
    lines.append(f"{RESOURCE}: {total} advertised, {free} free")
    if not deployments:
        lines.append("no deployments")
    for dep in deployments:
        health = dep.health(timeout=2.0)
        ready = all(any(a is not None for a in row) for row in health)
        lines.append("")
        lines.append(f"deployment {dep.name!r}: {len(dep.stages)} stage(s), ready: {'yes' if ready else 'NO'}")
        lines.append(f"  {'actor':<28} {'health':<8} {'node':<16} {'pid':>7} {'served':>7} "
                     f"{'restarted':<9} device")
        for row, reps in zip(health, dep.replicas):
            for ans, rep in zip(row, reps):
                if ans is None:
                    state = "dead" if rep.handle is None else "no reply"
                    lines.append(f"  {rep.name:<28} {state:<8}")
                else:
                    lines.append(f"  {rep.name:<28} {'ok':<8} {ans['node']:<16} {ans['pid']:>7} "
                                 f"{ans['served']:>7} {'yes' if ans['restarted'] else 'no':<9} "
                                 f"{ans['device']}")
    return "\n".join(lines)


def cmd_status(args) -> int:
    from ..cluster.connect import join
    from ..cluster.deployment import Deployment, list_deployments
    ray = join(args.address)
    names = [args.name] if args.name else list_deployments(ray)
    print(status_text(ray, [Deployment.attach(n, args.address) for n in names]))
    return 0


def cmd_down(args) -> int:
    from ..cluster.connect import join
    from ..cluster.deployment import Deployment
    join(args.address)
    dep = Deployment.attach(args.name, args.address)
    dep.shutdown()
    print(f"removed {args.name!r} ({sum(len(rs) for rs in dep.replicas)} actor(s))")
    return 0


ADDRESS_HELP = "Ray cluster: auto (the one this machine belongs to, or $RAY_ADDRESS) or HOST:PORT"


def add_parsers(sub) -> None:
    """Add `lgc deploy` and `lgc cluster {status,down}`."""
    p = sub.add_parser(
        "deploy", help="start a model on a Ray cluster: one actor per (stage, replica)",
        description="Deploy a model on a Ray cluster: one actor per (pipeline stage, replica), each "
                    "placed on a worker that advertises an OpenCL device (`ray start "
                    "--resources='{\"lgc_device\": N}'`) and loading its stage's artifact there "
                    "(digests verified, and signatures with --trusted-keys). Tensors pass stage to stage as Ray objects; actors "
                    "restart after a crash. The deployment outlives this command: serve it with "
                    "`lgc serve MODEL --address ...`, remove it with `lgc cluster down NAME`.")
    p.add_argument("model", help="a .lgc artifact (one stage), a directory from `lgc plan --split`, "
                                 "or a .onnx model (split with --stages or --plan)")
    p.add_argument("--address", default="auto", help=ADDRESS_HELP + " (default auto)")
    p.add_argument("--stages", type=int, help="pipeline stages for a .onnx model, cut where the "
                                              "planner balances them (default 1)")
    p.add_argument("--replicas", type=int, help="actors per stage (default 1, or the plan's counts)")
    p.add_argument("--plan", help="plan file from `lgc plan` (its cuts and replica counts; .onnx model)")
    p.add_argument("--name", help="deployment name (default: the model file's name)")
    p.add_argument("--out-dir", help="where stage artifacts of a .onnx model are written "
                                     "(default MODEL.stages/)")
    p.add_argument("--max-restarts", type=int, default=-1,
                   help="times Ray restarts each actor after a crash (default -1: always)")
    p.add_argument("--trusted-keys", action="append", metavar="PUB.pem",
                   help="deploy only artifacts signed by one of the Ed25519 public keys in this PEM "
                        "file (repeatable; `lgc compile --sign`): checked here and again by each "
                        "worker before it loads its stage")
    p.set_defaults(fn=cmd_deploy)

    p = sub.add_parser("cluster", help="inspect or take down deployments on a Ray cluster",
                       description="Inspect the Ray cluster lgc deploys to, or remove a deployment.")
    csub = p.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True)
    s = csub.add_parser("status", help="workers, devices, deployments, replicas and their health",
                        description="List the Ray nodes with their CPUs and lgc_device units, and "
                                    "for each deployment its actors: health (a ping answered within "
                                    "2 s), node, pid, requests served and whether Ray restarted it.")
    s.add_argument("--address", default="auto", help=ADDRESS_HELP + " (default auto)")
    s.add_argument("--name", help="only this deployment")
    s.set_defaults(fn=cmd_status)
    d = csub.add_parser("down", help="remove a deployment (kill its actors)",
                        description="Kill every actor of a deployment, without restart.")
    d.add_argument("name", help="deployment name (see `lgc cluster status`)")
    d.add_argument("--address", default="auto", help=ADDRESS_HELP + " (default auto)")
    d.set_defaults(fn=cmd_down)
