"""Search nodes, the tree that holds them, and the JSONL journal that makes a run resumable.

Every change to the tree is one journal line, appended and flushed as it
happens: a new node, a field update (value, visits, flags), or a snapshot of the
policy's own small state. Replaying the journal rebuilds the tree exactly, so a
killed search resumes without losing or repeating nodes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from libs.train.errors import UserError

NODE_FIELDS = ("value", "prior", "visits", "total_value", "expanded", "terminal", "solved", "buggy", "meta")


@dataclasses.dataclass
class Node:
    """One search node. `state` is the problem's own (encodable) payload."""

    id: int
    state: Any
    parents: tuple[int, ...] = ()
    children: list[int] = dataclasses.field(default_factory=list)
    depth: int = 0
    value: float | None = None  # estimated value in [0, 1], higher is better
    prior: float | None = None  # policy prior from the parent's point of view (PUCT)
    visits: int = 0
    total_value: float = 0.0  # sum of backed-up values (MCTS)
    expanded: bool = False
    terminal: bool = False
    solved: bool = False
    buggy: bool = False
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def parent(self) -> int | None:
        return self.parents[0] if self.parents else None


class Journal:
    """Append-only JSONL log of tree events; `None` path keeps everything in memory."""

    def __init__(self, path: str | None):
        self.path = path
        self._file = None
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def read(self) -> list[dict[str, Any]]:
        """Events written so far. A last line cut short by a kill is dropped (and truncated away); a
        corrupt line before the end is an error naming the file and line (replaying past it would lose
        every valid event after it)."""
        if not self.path or not os.path.exists(self.path):
            return []
        with open(self.path, "rb") as f:
            lines = f.read().split(b"\n")
        events, good_bytes = [], 0
        for number, raw in enumerate(lines, start=1):
            if raw.strip():
                try:
                    events.append(json.loads(raw))
                except ValueError:
                    if number == len(lines):  # No newline after it: the write was cut short.
                        break
                    raise UserError(f"{self.path}: line {number} is corrupt (not JSON); remove the file to "
                                    "replay this search from scratch") from None
            good_bytes += len(raw) + (number < len(lines))
        if good_bytes < os.path.getsize(self.path):
            with open(self.path, "r+b") as f:
                f.truncate(good_bytes)
        return events

    def append(self, event: dict[str, Any]) -> None:
        if not self.path:
            return
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Tree:
    """All nodes of one search, journaled.

    `encode` / `decode` turn problem states into JSON and back (identity by default).
    """

    def __init__(self, journal: Journal | None = None, encode: Callable = lambda s: s,
                 decode: Callable = lambda s: s):
        self.nodes: list[Node] = []
        self.journal = journal or Journal(None)
        self._encode, self._decode = encode, decode
        self.policy_state: dict[str, Any] = {}
        self.elapsed_s = 0.0  # wall time of earlier sessions of this search
        self._replay(self.journal.read())

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def add(self, state: Any, parents: Iterable[int] = (), **fields) -> Node:
        """Adds a node (journaled)."""
        parents = tuple(parents)
        depth = 1 + max((self.nodes[p].depth for p in parents), default=-1)
        node = Node(id=len(self.nodes), state=state, parents=parents, depth=depth, **fields)
        self._insert(node)
        event = {"event": "node", "id": node.id, "state": self._encode(state), "parents": list(parents)}
        event.update({f: getattr(node, f) for f in NODE_FIELDS if getattr(node, f) != _DEFAULTS[f]})
        self.journal.append(event)
        return node

    def update(self, node: Node, **fields) -> None:
        for name, value in fields.items():
            setattr(node, name, value)
        self.journal.append({"event": "update", "id": node.id, **fields})

    def save_policy_state(self, state: dict[str, Any], elapsed_s: float) -> None:
        self.policy_state = dict(state)
        self.journal.append({"event": "policy", "state": self.policy_state, "elapsed_s": elapsed_s})

    def path_to(self, node: Node) -> list[Node]:
        """First-parent path from the root to `node`."""
        path = [node]
        while path[-1].parent is not None:
            path.append(self.nodes[path[-1].parent])
        return path[::-1]

    def path_states(self, node: Node) -> "PathStates":
        """The states on the root-to-`node` path, read lazily (O(1) for the last state and the length)."""
        return PathStates(self, node)

    def best(self, key: Callable[[Node], float] | None = None) -> Node | None:
        key = key or (lambda n: (n.solved, n.value if n.value is not None else -1.0))
        return max(self.nodes, key=key, default=None)

    def solutions(self) -> list[Node]:
        return [n for n in self.nodes if n.solved]

    def _insert(self, node: Node) -> None:
        self.nodes.append(node)
        for p in node.parents:
            self.nodes[p].children.append(node.id)

    def _replay(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            kind = e["event"]
            if kind == "node":
                fields = {f: e[f] for f in NODE_FIELDS if f in e}
                parents = tuple(e["parents"])
                depth = 1 + max((self.nodes[p].depth for p in parents), default=-1)
                node = Node(id=e["id"], state=self._decode(e["state"]), parents=parents, depth=depth, **fields)
                self._insert(node)
            elif kind == "update":
                node = self.nodes[e["id"]]
                for name, value in e.items():
                    if name not in ("event", "id"):
                        setattr(node, name, value)
            elif kind == "policy":
                self.policy_state, self.elapsed_s = e["state"], e.get("elapsed_s", 0.0)


class PathStates(Sequence):
    """A read-only view of the states on the first-parent path from the root to a node.

    The last state costs O(1); the length and other states walk the path once, on demand.
    """

    def __init__(self, tree: Tree, node: Node):
        self._tree, self._node = tree, node
        self._states: list | None = None

    def _walk(self) -> list:
        if self._states is None:
            self._states = [n.state for n in self._tree.path_to(self._node)]
        return self._states

    def __len__(self) -> int:
        return len(self._walk())

    def __getitem__(self, index):
        if index == -1:
            return self._node.state
        return self._walk()[index]

    def __iter__(self):
        return iter(self._walk())


_DEFAULTS = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
             for f in dataclasses.fields(Node) if f.name in NODE_FIELDS}

