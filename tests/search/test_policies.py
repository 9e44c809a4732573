"""Every policy solves a small problem; journals resume without losing or repeating nodes."""

import asyncio
import json

import pytest

from libs.search import best_first, evolutionary, greedy, lfs, mcts, tot_bfs
from libs.search.base import Budget
from tests.search.toy import ReachTarget

POLICIES = {
    "lfs": lambda p, **kw: lfs.LLMFirstSearch(p, **kw),
    "bestfs": lambda p, **kw: best_first.BestFirstSearch(p, **kw),
    "tot_bfs": lambda p, **kw: tot_bfs.ToTBFS(p, top_n=3, **kw),
    "mcts_uct": lambda p, **kw: mcts.MCTS(p, selection="uct", c=0.5, **kw),
    "mcts_puct": lambda p, **kw: mcts.MCTS(p, selection="puct", c=1.0, **kw),
    "greedy": lambda p, **kw: greedy.Greedy(p, num_drafts=2, debug_prob=0.5, **kw),
    "evolutionary": lambda p, **kw: evolutionary.Evolutionary(p, num_islands=2, individuals_per_generation=3, **kw),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_solves_toy_problem(name):
    search = POLICIES[name](ReachTarget(37), budget=Budget(max_nodes=3000))
    result = asyncio.run(search.run())
    assert result.solved and result.stop_reason == "solved", (name, result.stop_reason, result.nodes)
    assert result.solution.state == 37
    path = [n.state for n in search.tree.path_to(result.solution)]
    assert path[0] == 1 and all(b in (a + 1, a * 2, a + 3) for a, b in zip(path, path[1:]))


def test_lfs_explores_when_the_model_says_so():
    problem = ReachTarget(37, explore_every=2)
    search = lfs.LLMFirstSearch(problem)
    result = asyncio.run(search.run())
    assert result.solved and search.backtracks > 0 and problem.decisions > 0


@pytest.mark.parametrize("name", ["lfs", "bestfs", "mcts_uct", "mcts_puct", "greedy", "evolutionary", "tot_bfs"])
def test_killed_search_resumes_without_losing_or_repeating_nodes(name, tmp_path):
    full = POLICIES[name](ReachTarget(90), journal_path=str(tmp_path / "full.jsonl"))
    full_result = asyncio.run(full.run())

    path = str(tmp_path / "resumed.jsonl")
    first = POLICIES[name](ReachTarget(90), journal_path=path, budget=Budget(max_nodes=12))
    asyncio.run(first.run())
    with open(path, "a") as f:
        f.write('{"event": "node", "id": 99')  # A line cut short by a kill.
    resumed = POLICIES[name](ReachTarget(90), journal_path=path)
    assert len(resumed.tree) >= 12
    result = asyncio.run(resumed.run())

    assert result.solved == full_result.solved
    assert [n.state for n in resumed.tree.nodes] == [n.state for n in full.tree.nodes]
    for node in resumed.tree.nodes:  # Every child exactly once under its parent, in the problem's order.
        states = [resumed.tree[c].state for c in node.children]
        assert states in ([], [node.state + 1, node.state * 2, node.state + 3])
    with open(path) as f:
        ids = [json.loads(line)["id"] for line in f if '"event":"node"' in line]
    assert ids == list(range(len(ids)))


def test_budgets_stop_the_search():
    result = asyncio.run(best_first.BestFirstSearch(ReachTarget(10**9), budget=Budget(max_nodes=50)).run())
    assert result.stop_reason == "nodes" and not result.solved and result.nodes >= 50
    result = asyncio.run(lfs.LLMFirstSearch(ReachTarget(10**9), budget=Budget(max_seconds=0.2)).run())
    assert result.stop_reason == "time"


def test_mcts_rejects_unknown_selection():
    with pytest.raises(ValueError, match="MCTS.selection"):
        mcts.MCTS(ReachTarget(), selection="ucb9")
