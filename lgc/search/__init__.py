"""Search over compiler and model choices, scored on several objectives at once.

nsga2.py        a generic NSGA-II: non-dominated sorting, crowding distance, evolve()
compression.py  per-layer prune/rank/precision policies of a model (`lgc compile --search`)
nas.py          an architecture space of small CNNs on digits (`examples/nas_digits.py`)
latency.py      the latency objective both share: measured on the device, or the planner's
                cost model for a named Target
"""
from .nsga2 import (Individual, SearchResult, crowding_distance, dominates, evolve,
                    non_dominated_sort, pareto_front)

__all__ = ["Individual", "SearchResult", "crowding_distance", "dominates", "evolve",
           "non_dominated_sort", "pareto_front"]
