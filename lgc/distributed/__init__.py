"""Shard planner: cost model over the IR and pipeline-stage splitting (pure functions)."""
