"""The top layer: the `lgc` command and the bench, demo and conformance tools.

Everything here may import the library; nothing in the library imports this package.

cli.py           `lgc` and its subcommands compile, tune, run, inspect, devices, demo
bench.py         `lgc bench`: latency, throughput and a per-kernel profile
demo.py          `lgc demo`: a light model compiled, checked and timed
plan_cli.py      `lgc plan`: the shard planner (lgc.distributed)
cluster_cli.py   `lgc deploy`, `lgc cluster status|down` (lgc.cluster, Ray)
serve_cli.py     `lgc serve`: lgc.serve in front of the embedded model or a Ray deployment
common.py        what the subcommands share: progress lines, --device and --input-shape
conformance.py   ONNX conformance (`python -m lgc.conformance`)
coverage.py      the JAX coverage table of docs/TRACING.md (`python -m lgc.tools.coverage`)

lgc/cli.py, lgc/bench.py, lgc/demo.py and lgc/conformance.py re-export these at their old paths.
"""
