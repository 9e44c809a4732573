"""What an operator's prompt remembers of the search so far (aira-dojo's memory scopes).

A research candidate is a search node whose `state` is a dict with its `plan`, `code`, `output`,
`metric` (the raw task metric) and `summary` (the analyze operator's review); `buggy` is the node's
flag. Each scope returns memory items, {label, plan, metric, summary}, oldest first:

- `simple`: every good candidate (the default for draft and improve; AIDE's Memory);
- `ancestral`: the buggy chain being debugged, from the last good ancestor down to the node itself
  (the default for debug: what was tried and failed);
- `sibling`: the parent's other children (what else was tried from the same start);
- `none`: nothing (crossover's default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from libs.search.tree import Node, Tree
from libs.train.errors import ConfigError

Item = dict[str, Any]


def _is_candidate(node: Node) -> bool:
    return isinstance(node.state, dict) and "code" in node.state


def _item(node: Node) -> Item:
    state = node.state
    return {"label": f"node {node.id}" + (" (buggy)" if node.buggy else ""), "plan": state.get("plan") or "",
            "metric": None if node.buggy else state.get("metric"), "summary": state.get("summary") or ""}


def simple(tree: Tree, node: Node | None = None, limit: int = 20) -> list[Item]:
    """The good candidates (the `limit` most recent)."""
    del node
    good = [n for n in tree.nodes if _is_candidate(n) and not n.buggy and n.state.get("metric") is not None]
    return [_item(n) for n in good[-limit:]]


def ancestral(tree: Tree, node: Node | None, limit: int = 20) -> list[Item]:
    """`node` and its buggy ancestors, up to the last good one (excluded)."""
    chain = []
    while node is not None and _is_candidate(node) and node.buggy:
        chain.append(node)
        node = tree[node.parent] if node.parent is not None else None
    return [_item(n) for n in reversed(chain[:limit])]


def sibling(tree: Tree, node: Node | None, limit: int = 20) -> list[Item]:
    """The other candidates grown from `node`'s parent."""
    if node is None or node.parent is None:
        return []
    others = [tree[c] for c in tree[node.parent].children if c != node.id]
    return [_item(n) for n in others if _is_candidate(n)][-limit:]


def none(tree: Tree, node: Node | None = None, limit: int = 0) -> list[Item]:
    del tree, node, limit
    return []


SCOPES: dict[str, Callable[..., list[Item]]] = {"simple": simple, "ancestral": ancestral, "sibling": sibling,
                                                "none": none}


def scope(name: str) -> Callable[..., list[Item]]:
    if name not in SCOPES:
        raise ConfigError(f"memory scope {name!r}: expected one of {tuple(SCOPES)}")
    return SCOPES[name]
