"""Subgraphs of a torch.fx graph: the one operation both cuts (body/head, prefix/tail) are made of."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import fx


def downstream(node: fx.Node) -> set[fx.Node]:
    """Every node whose value depends on ``node`` (``node`` itself excluded)."""
    seen: set[fx.Node] = set()
    stack = list(node.users)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(current.users)
    return seen


def upstream(outputs: Iterable[fx.Node], stop: Iterable[fx.Node] = ()) -> set[fx.Node]:
    """Every node needed to compute ``outputs``, not looking past the nodes in ``stop``."""
    stop = set(stop)
    seen: set[fx.Node] = set()
    stack = list(outputs)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            if current not in stop:
                stack.extend(current.all_input_nodes)
    return seen


def crossing(graph: fx.Graph, at: fx.Node, output: Any) -> list[fx.Node]:
    """Values computed before ``at`` that are used after it: the skip connections over a cut.

    ``output``: a node or a structure of nodes (``output_value``). Parameters read with ``get_attr`` are not
    values of the input, so they are never skips.
    """
    after = downstream(at)
    needed = upstream(leaves(output))
    return [n for n in graph.nodes
            if n in needed and n not in after and n is not at and n.op != "get_attr"
            and any(user in after for user in n.users)]


def subgraph(graph: fx.Graph, inputs: list[fx.Node], outputs: list[Any], bare: bool = True) -> fx.Graph:
    """A new graph that takes ``inputs`` as placeholders and returns ``outputs`` (nodes or structures of nodes).

    It returns a tuple, or the one output itself when ``bare`` and there is exactly one.
    """
    new = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in inputs:
        env[node] = new.node_copy(node) if node.op == "placeholder" else new.placeholder(node.name)
    needed = upstream(leaves(outputs), stop=inputs)
    for node in graph.nodes:
        if node in needed and node not in env:
            if node.op == "placeholder":
                raise ValueError(f"the cut needs input {node.name!r}, which it was not given")
            env[node] = new.node_copy(node, env.__getitem__)
    copied = [fx.node.map_arg(output, env.__getitem__) for output in outputs]
    new.output(copied[0] if bare and len(copied) == 1 else tuple(copied))
    new.lint()
    return new


def placeholders(graph: fx.Graph) -> list[fx.Node]:
    """The graph's inputs, in the order of ``forward``'s arguments."""
    return [n for n in graph.nodes if n.op == "placeholder"]


def output_value(graph: fx.Graph) -> Any:
    """What the graph returns: one node (logits), or a structure of nodes such as ``{"out": ..., "aux": ...}``."""
    (output,) = [n for n in graph.nodes if n.op == "output"]
    return output.args[0]


def leaves(value: Any) -> list[fx.Node]:
    """The nodes in a node or a (nested) tuple, list or dict of nodes."""
    found: list[fx.Node] = []
    fx.node.map_arg(value, found.append)
    return found
