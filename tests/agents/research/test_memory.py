"""Memory scopes over a small research tree: good nodes, the buggy chain, the siblings."""

import pytest

from libs.agents.research import memory
from libs.search.tree import Tree
from libs.train.errors import ConfigError


def _candidate(plan, metric=None):
    return {"plan": plan, "code": "print(1)\n", "output": "", "metric": metric, "summary": f"review of {plan}"}


@pytest.fixture(name="tree")
def _tree():
    tree = Tree()
    root = tree.add({"task": "wine"})
    a = tree.add(_candidate("draft A", 0.8), [root.id])
    b = tree.add(_candidate("draft B"), [root.id], buggy=True)
    b1 = tree.add(_candidate("fix B once"), [b.id], buggy=True)
    b2 = tree.add(_candidate("fix B twice"), [b1.id], buggy=True)
    a1 = tree.add(_candidate("improve A", 0.85), [a.id])
    a2 = tree.add(_candidate("improve A again", 0.83), [a.id])
    return tree, {"a": a, "b": b, "b1": b1, "b2": b2, "a1": a1, "a2": a2}


def test_simple_memory_is_the_good_candidates(tree):
    tree, _ = tree
    assert [i["plan"] for i in memory.simple(tree)] == ["draft A", "improve A", "improve A again"]
    assert memory.simple(tree)[1]["metric"] == 0.85 and memory.simple(tree, limit=1)[0]["plan"] == "improve A again"


def test_ancestral_memory_is_the_buggy_chain_down_to_the_node(tree):
    tree, n = tree
    items = memory.ancestral(tree, n["b2"])
    assert [i["plan"] for i in items] == ["draft B", "fix B once", "fix B twice"]
    assert all(i["metric"] is None and "(buggy)" in i["label"] for i in items)
    assert memory.ancestral(tree, n["a1"]) == []  # a good node has no buggy chain


def test_sibling_memory_is_the_parents_other_children(tree):
    tree, n = tree
    assert [i["plan"] for i in memory.sibling(tree, n["a1"])] == ["improve A again"]
    assert [i["plan"] for i in memory.sibling(tree, n["a"])] == ["draft B"]  # the root is no candidate
    assert memory.sibling(tree, tree.root) == []


def test_scopes_by_name():
    assert memory.scope("none")(None) == []
    with pytest.raises(ConfigError, match="memory scope 'everything'"):
        memory.scope("everything")
