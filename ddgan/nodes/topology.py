"""The gossip communication graph: builders for ``topology.kind`` and the checks every graph passes.

A graph is a list of neighbour lists, ``graph[k]`` = the sorted one-hop neighbours of node k.
Every rank builds the same graph from the config (random kinds are seeded by ``train.seed``), so
nobody has to be told who its neighbours are. :func:`check` rejects a graph that is not symmetric,
has a self-loop, an out-of-range node, does not connect every node, or whose node count is not
``partition.clients``, each with a one-line :class:`ConfigError`.
"""
from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING

from ddgan.core import seeds
from ddgan.core.errors import ConfigError

if TYPE_CHECKING:
    from ddgan.core.config import Config, TopologyConfig

Graph = list[list[int]]
TOPOLOGIES = ("ring", "path", "star", "random_regular", "erdos_renyi", "edges")   # ``topology.kind``
MAX_DRAWS = 1000   # random kinds: redraws before giving up on a connected (simple) graph


def from_edges(edges, n: int) -> Graph:
    """Neighbour lists of the undirected ``edges`` on nodes 0..n-1 (duplicates merged)."""
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for i, j in edges:
        for a in (i, j):
            if not 0 <= a < n:
                raise ConfigError(f"topology.edges: edge [{i}, {j}] names node {a}, but the graph has nodes "
                                  f"0..{n - 1} (one per client)")
        nbrs[i].add(j)
        nbrs[j].add(i)
    return [sorted(s) for s in nbrs]


def ring(n: int) -> Graph:
    return from_edges([(k, (k + 1) % n) for k in range(n)] if n > 1 else [], n)


def path(n: int) -> Graph:
    return from_edges([(k, k + 1) for k in range(n - 1)], n)


def star(n: int) -> Graph:
    """Node 0 is the hub."""
    return from_edges([(0, k) for k in range(1, n)], n)


def random_regular(n: int, degree: int, seed: int) -> Graph:
    """A uniformly drawn simple connected ``degree``-regular graph (pairing model, redrawn)."""
    if degree >= n or n * degree % 2:
        raise ConfigError(f"topology.degree = {degree}: a {degree}-regular graph on {n} nodes needs "
                          f"degree < nodes and nodes * degree even")
    rng = seeds.numpy_rng(seed, "graph")
    for _ in range(MAX_DRAWS):
        stubs = rng.permutation([k for k in range(n) for _ in range(degree)]).tolist()
        pairs = list(zip(stubs[::2], stubs[1::2]))
        if all(i != j for i, j in pairs) and len({frozenset(p) for p in pairs}) == len(pairs):
            graph = from_edges(pairs, n)
            if connected(graph):
                return graph
    raise ConfigError(f"topology.degree = {degree}: no connected {degree}-regular graph on {n} nodes "
                      f"found in {MAX_DRAWS} draws")


def erdos_renyi(n: int, p: float, seed: int) -> Graph:
    """G(n, p), redrawn from the same seeded stream until it is connected."""
    rng = seeds.numpy_rng(seed, "graph")
    for _ in range(MAX_DRAWS):
        graph = from_edges([e for e in combinations(range(n), 2) if rng.random() < p], n)
        if connected(graph):
            return graph
    raise ConfigError(f"topology.p = {p}: no connected Erdos-Renyi graph on {n} nodes in {MAX_DRAWS} draws; "
                      f"raise p")


def _reach(graph: Graph, start: int) -> set[int]:
    seen, todo = {start}, [start]
    while todo:
        for j in graph[todo.pop()]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return seen


def connected(graph: Graph) -> bool:
    return len(_reach(graph, 0)) == len(graph)


def check(graph: Graph, nodes: int) -> Graph:
    """``graph`` unchanged when it is a valid gossip graph on ``nodes`` nodes; ConfigError otherwise."""
    if len(graph) != nodes:
        raise ConfigError(f"topology: the graph has {len(graph)} nodes but the run has {nodes} "
                          f"(partition.clients)")
    for k, nbrs in enumerate(graph):
        if k in nbrs:
            raise ConfigError(f"topology: node {k} is its own neighbour (self-loop)")
        for j in nbrs:
            if not 0 <= j < nodes:
                raise ConfigError(f"topology: node {k} has neighbour {j}, outside 0..{nodes - 1}")
            if k not in graph[j]:
                raise ConfigError(f"topology: not symmetric: {j} is a neighbour of {k} but {k} is not one of {j}")
    if nodes and not connected(graph):
        raise ConfigError(f"topology: the graph does not connect every node ({_components(graph)})")
    return graph


def _components(graph: Graph) -> str:
    left, parts = set(range(len(graph))), []
    while left:
        seen = _reach(graph, min(left))
        parts.append(sorted(seen))
        left -= seen
    return "components " + ", ".join(str(p) for p in parts)


def build(topo: TopologyConfig, n: int, seed: int) -> Graph:
    """The graph ``topo`` describes on ``n`` nodes, checked."""
    if topo.kind == "edges":
        for e in topo.edges:
            if e[0] == e[1]:
                raise ConfigError(f"topology.edges: [{e[0]}, {e[1]}] is a self-loop")
        graph = from_edges(topo.edges, n)
    elif topo.kind == "random_regular":
        graph = random_regular(n, topo.degree, seed)
    elif topo.kind == "erdos_renyi":
        graph = erdos_renyi(n, topo.p, seed)
    else:
        graph = {"ring": ring, "path": path, "star": star}[topo.kind](n)
    return check(graph, n)


def graph_of(cfg: Config) -> Graph:
    """The run's graph: one node per client (on its own rank, or co-hosted: ``train.client_ranks``)."""
    return build(cfg.topology, cfg.partition.clients, cfg.train.seed)
