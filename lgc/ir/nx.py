"""A networkx view of a graph, for the passes that think in graph algorithms (fusion's
post-dominators, the shard planner's cuts): networkx does the algorithms, the IR stays plain.
"""
from __future__ import annotations

import networkx as nx

from .graph import Graph
from .verify import VerifyError


def to_networkx(graph: Graph) -> nx.DiGraph:
    """Nodes are node indices (attributes: op, name, node); an edge u -> v carries `values`,
    the Values u defines that v reads, and `bytes`, their total size: what a cut there moves.
    Graph inputs and outputs are listed in G.graph (as Values) and G.graph["output_nodes"]."""
    g = nx.DiGraph(inputs=list(graph.inputs), outputs=list(graph.outputs))
    producer = {}
    for i, n in enumerate(graph.nodes):
        g.add_node(i, op=n.op, name=n.name, node=n)
        for o in n.outputs:
            producer.setdefault(o, i)
    for j, n in enumerate(graph.nodes):
        for v in dict.fromkeys(n.inputs):  # a value read twice is moved once
            i = producer.get(v)
            if i is None:
                continue
            if g.has_edge(i, j):
                g.edges[i, j]["values"].append(v)
                g.edges[i, j]["bytes"] += v.type.nbytes
            else:
                g.add_edge(i, j, values=[v], bytes=v.type.nbytes)
    g.graph["output_nodes"] = sorted({producer[v] for v in graph.outputs if v in producer})
    return g


def check_topological(graph: Graph) -> None:
    """Raise VerifyError unless the node list is a topological order of an acyclic graph."""
    g = to_networkx(graph)
    if not nx.is_directed_acyclic_graph(g):
        cycle = [u for u, _ in nx.find_cycle(g)]
        raise VerifyError(f"nodes {cycle} form a cycle")
    for u, v in g.edges:
        if u >= v:
            n = graph.nodes[v]
            raise VerifyError(f"node {v} ({n.op}) reads a value defined later, by node {u}")
