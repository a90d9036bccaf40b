"""Shard planner: cost model over the IR and pipeline-stage splitting (pure functions).

shard.py     split a graph at cut positions into stage graphs; compile one .lgc per stage
cost.py      per-node FLOPs / bytes / weights, time on a worker's Target or measured
planner.py   DP over the schedule: S stages for S workers, replicas, plan files
simulate.py  p50/p95 of a plan under Poisson load
specs.py     worker lists, sizes and rates from text (`lgc plan --workers`)
decode.py    a decoder's step cut into layer ranges, placed by memory, its tokens/s
The `lgc plan` command is lgc/tools/plan_cli.py. See docs/DISTRIBUTED.md.
"""
