"""Pictures of a research agent's search: the tree as a PNG, and a self-contained HTML page to browse it.

Nodes are the search tree's candidates (`state` = {plan, code, output, metric, summary, ...}, `buggy`
flag, `meta["op"]` the operator that made it). The PNG lays the tree out by depth, colours good nodes by
their metric (the best end of the colour map is the best metric, whatever the direction) and marks buggy
ones with a red cross. The HTML page embeds the nodes as JSON and a few lines of script: no network, no
external files; clicking a node shows its plan, code, output, review, metric and parents.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from typing import Any

from libs.search.tree import Node, Tree


def node_records(tree: Tree) -> list[dict[str, Any]]:
    """One JSON-ready record per node (the root included, as the task)."""
    records = []
    for node in tree.nodes:
        state = node.state if isinstance(node.state, dict) else {"plan": str(node.state)}
        records.append({"id": node.id, "parents": list(node.parents), "children": list(node.children),
                        "depth": node.depth, "op": node.meta.get("op", "root" if node.id == 0 else ""),
                        "buggy": node.buggy, "metric": state.get("metric"), "plan": state.get("plan", ""),
                        "code": state.get("code", ""), "output": state.get("output", ""),
                        "summary": state.get("summary", "")})
    return records


def _layout(tree: Tree) -> dict[int, tuple[float, float]]:
    """x: leaves in depth-first order, a parent centred over its children; y: minus the depth."""
    xs: dict[int, float] = {}
    next_leaf = [0.0]

    def place(node: Node) -> float:
        kids = [tree[c] for c in node.children if tree[c].parent == node.id]  # crossover: drawn under parent 0
        if not kids:
            xs[node.id] = next_leaf[0]
            next_leaf[0] += 1
        else:
            xs[node.id] = sum(place(k) for k in kids) / len(kids)
        return xs[node.id]

    place(tree.root)
    return {node.id: (xs.get(node.id, 0.0), -node.depth) for node in tree.nodes}


def plot_tree(tree: Tree, path: str, lower_is_better: bool, title: str = "") -> str:
    """Writes the tree PNG; returns `path`."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

    pos = _layout(tree)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(pos)), 1.2 + 1.1 * (1 + max(-y for _, y in pos.values()))))
    for node in tree.nodes:
        for parent in node.parents:
            (x0, y0), (x1, y1) = pos[parent], pos[node.id]
            ax.plot([x0, x1], [y0, y1], color="0.7", lw=0.8, ls="-" if parent == node.parent else ":", zorder=1)
    good = [n for n in tree.nodes if n.id != tree.root.id and not n.buggy and isinstance(n.state, dict)
            and n.state.get("metric") is not None]
    if good:
        metrics = [float(n.state["metric"]) for n in good]
        points = ax.scatter([pos[n.id][0] for n in good], [pos[n.id][1] for n in good], c=metrics, s=60, zorder=3,
                            cmap="viridis_r" if lower_is_better else "viridis", edgecolors="black", linewidths=0.5)
        fig.colorbar(points, ax=ax, label="metric (" + ("lower" if lower_is_better else "higher") + " is better)")
    buggy = [n for n in tree.nodes if n.buggy]
    ax.scatter([pos[n.id][0] for n in buggy], [pos[n.id][1] for n in buggy], marker="x", color="red", s=50,
               zorder=3, label=f"buggy ({len(buggy)})")
    other = [n for n in tree.nodes if n not in good and not n.buggy]
    ax.scatter([pos[n.id][0] for n in other], [pos[n.id][1] for n in other], color="0.5", s=40, zorder=2,
               label="root / unscored")
    ax.set_yticks(sorted({y for _, y in pos.values()}))
    ax.set_yticklabels([str(int(-y)) for y in sorted({y for _, y in pos.values()})])
    ax.set_ylabel("depth")
    ax.set_xticks([])
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or f"search tree: {len(pos)} nodes, {len(buggy)} buggy")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 0; display: flex; height: 100vh; }}
#list {{ width: 34%; overflow: auto; border-right: 1px solid #ccc; }}
#detail {{ flex: 1; overflow: auto; padding: 0 1em; }}
.node {{ padding: 3px 6px; cursor: pointer; font-size: 13px; white-space: nowrap; }}
.node:hover, .node.sel {{ background: #e8f0fe; }}
.buggy {{ color: #b00; }}
pre {{ background: #f6f6f6; padding: 8px; overflow: auto; font-size: 12px; }}
</style></head><body>
<div id="list"><h3 style="padding: 0 6px">{title}</h3><p style="padding: 0 6px" id="count"></p></div>
<div id="detail"><p>Select a node.</p></div>
<script id="nodes" type="application/json">{data}</script>
<script>
const nodes = JSON.parse(document.getElementById("nodes").textContent);
const list = document.getElementById("list"), detail = document.getElementById("detail");
function esc(s) {{ const d = document.createElement("div"); d.textContent = s == null ? "" : String(s); return d.innerHTML; }}
function show(n, el) {{
  document.querySelectorAll(".node.sel").forEach(e => e.classList.remove("sel")); el.classList.add("sel");
  detail.innerHTML = "<h3>node " + n.id + " (" + esc(n.op) + (n.buggy ? ", buggy" : "") + ")</h3>" +
    "<p>metric: <b>" + esc(n.metric) + "</b>; parents: " + esc(n.parents.join(", ") || "none") + "</p>" +
    "<h4>plan</h4><pre>" + esc(n.plan) + "</pre><h4>review</h4><pre>" + esc(n.summary) + "</pre>" +
    "<h4>code</h4><pre>" + esc(n.code) + "</pre><h4>output</h4><pre>" + esc(n.output) + "</pre>";
}}
for (const n of nodes) {{
  const el = document.createElement("div");
  el.className = "node" + (n.buggy ? " buggy" : "");
  el.dataset.id = n.id;
  el.style.paddingLeft = (6 + 14 * n.depth) + "px";
  el.textContent = "#" + n.id + " " + n.op + (n.buggy ? " [buggy]" : (n.metric == null ? "" : " " + n.metric));
  el.onclick = () => show(n, el);
  list.appendChild(el);
}}
document.getElementById("count").textContent = nodes.length + " nodes";
document.body.dataset.rendered = document.querySelectorAll(".node").length;
</script></body></html>
"""


def write_html(tree: Tree, path: str, title: str = "research agent search") -> str:
    """Writes the self-contained browsing page; returns `path`."""
    data = json.dumps(node_records(tree)).replace("</", "<\\/")  # a "</script>" in code must not end the block
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(_PAGE.format(title=html.escape(title), data=data))
    return path


def best_node(nodes: Sequence[Node], lower_is_better: bool) -> Node | None:
    """The good candidate with the best metric (None if there is none)."""
    scored = [n for n in nodes if not n.buggy and isinstance(n.state, dict) and n.state.get("metric") is not None]
    if not scored:
        return None
    key = (lambda n: n.state["metric"]) if lower_is_better else (lambda n: -n.state["metric"])
    return min(scored, key=key)
