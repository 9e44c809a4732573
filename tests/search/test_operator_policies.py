"""Policies over one-node-per-call operators (research agents): Greedy's concurrent workers, aira-dojo's
MCTS with operators, budgets sized to the node budget, and interruptions mid-step."""

import asyncio

import pytest

from libs.search import evolutionary, greedy, mcts
from libs.search.base import Budget, Interrupted
from libs.search.operators import Operators, debug_depth
from libs.search.problem import Problem


class Programs(Problem):
    """Candidates are numbers; operators make them (no expand)."""

    def root(self):
        return 0

    async def expand(self, state):
        raise AssertionError("operator policies never expand")

    def is_terminal(self, state):
        return False

    def is_solution(self, state):
        return False

    async def child_values(self, path, children):
        return {}


class CountingOperators(Operators):
    """draft: a fresh number; improve: parent + 1; every `bug_every`-th candidate is buggy; debug repairs.
    Records how many calls ran at once, and can raise Interrupted after `interrupt_after` calls."""

    def __init__(self, bug_every=0, delay=0.01, interrupt_after=None):
        self.bug_every, self.delay, self.interrupt_after = bug_every, delay, interrupt_after
        self.calls, self.running, self.max_running = 0, 0, 0

    async def _make(self, search, parents, op, state, depth=0):
        self.calls += 1
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            await asyncio.sleep(3 * self.delay)  # calls already running finish first, as executions would
            raise Interrupted()
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        await asyncio.sleep(self.delay)
        self.running -= 1
        buggy = bool(self.bug_every) and op != "debug" and self.calls % self.bug_every == 0
        return search.add_child(parents, state, value=None if buggy else state / 100, buggy=buggy,
                                meta={"op": op, "debug_depth": depth})

    async def draft(self, search):
        return await self._make(search, [search.tree.root], "draft", 10 + len(search.tree))

    async def improve(self, search, node):
        return await self._make(search, [node], "improve", node.state + 1)

    async def debug(self, search, node):
        return await self._make(search, [node], "debug", node.state, debug_depth(node) + 1)

    async def crossover(self, search, a, b):
        return await self._make(search, [a, b], "crossover", max(a.state, b.state) + 1)


def test_greedy_workers_run_concurrently_and_count_drafts_in_flight():
    ops = CountingOperators()
    search = greedy.Greedy(Programs(), operators=ops, num_drafts=3, workers=2, budget=Budget(max_nodes=11))
    result = asyncio.run(search.run())
    ops_made = [n.meta["op"] for n in search.tree.nodes[1:]]
    assert ops.max_running == 2 and ops_made.count("draft") == 3 and len(ops_made) == 10
    assert result.stop_reason == "nodes" and result.steps == 5


def test_greedy_workers_never_debug_one_node_twice():
    ops = CountingOperators(bug_every=2)
    search = greedy.Greedy(Programs(), operators=ops, num_drafts=2, debug_prob=1.0, workers=3,
                           budget=Budget(max_nodes=16))
    asyncio.run(search.run())
    debugged = [n.parent for n in search.tree.nodes if n.meta.get("op") == "debug"]
    assert debugged and len(debugged) == len(set(debugged))


def test_mcts_with_operators_drafts_from_the_root_improves_the_selected_and_backs_up_repairs():
    ops = CountingOperators(bug_every=3)
    search = mcts.MCTS(Programs(), operators=ops, num_children=3, max_debug_depth=2, c=0.25,
                       budget=Budget(max_nodes=20))
    asyncio.run(search.run())
    nodes = search.tree.nodes
    assert search.selection == "uct" and ops.max_running == 3
    assert all(n.meta["op"] == "draft" for n in nodes if n.parent == 0)
    assert all(n.meta["op"] in ("improve", "debug") for n in nodes[1:] if n.parent != 0)
    repaired = [n for n in nodes if n.meta.get("op") == "debug"]
    assert repaired and all(n.visits >= 1 and nodes[n.parent].visits >= 1 for n in repaired)
    never_fixed = [n for n in nodes if n.buggy and not any(nodes[c].meta.get("op") == "debug" for c in n.children)]
    assert all(n.visits == 0 for n in never_fixed)  # a candidate that never worked is never selected
    assert nodes[0].visits == sum(1 for n in nodes[1:] if not n.buggy)  # one backup per working candidate
    assert len(nodes) - 1 == 19  # num_children was cut to the nodes the budget had left


def test_mcts_rejects_puct_with_operators():
    with pytest.raises(ValueError, match="'uct' with operators"):
        mcts.MCTS(Programs(), operators=CountingOperators(), selection="puct")


def test_evolutionary_generations_are_cut_to_the_node_budget():
    search = evolutionary.Evolutionary(Programs(), operators=CountingOperators(), num_islands=1,
                                       individuals_per_generation=4, budget=Budget(max_nodes=7))
    asyncio.run(search.run())
    assert len(search.tree) == 7


FACTORIES = {
    "greedy": lambda ops, **kw: greedy.Greedy(Programs(), operators=ops, num_drafts=2, workers=2, **kw),
    "mcts": lambda ops, **kw: mcts.MCTS(Programs(), operators=ops, num_children=2, **kw),
    "evolutionary": lambda ops, **kw: evolutionary.Evolutionary(Programs(), operators=ops, num_islands=1,
                                                                individuals_per_generation=2, **kw),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_an_interrupted_step_keeps_its_nodes_and_the_search_resumes(name, tmp_path):
    make, path = FACTORIES[name], str(tmp_path / "journal.jsonl")
    search = make(CountingOperators(interrupt_after=5), journal_path=path)
    result = asyncio.run(search.run())
    made = [(n.state, n.parents) for n in search.tree.nodes]
    assert result.stop_reason == "interrupted" and 1 < len(made) <= 6
    resumed = make(CountingOperators(), journal_path=path, budget=Budget(max_nodes=12))
    assert [(n.state, n.parents) for n in resumed.tree.nodes] == made and resumed.steps == result.steps
    if name == "evolutionary":  # what the killed generation made joins the population
        orphans = [n.id for n in resumed.tree.nodes[resumed.tree.policy_state["nodes"]:] if not n.buggy]
        assert orphans and all(any(i in island for island in resumed.islands) for i in orphans)
    asyncio.run(resumed.run())
    assert len(resumed.tree) >= 12 and [(n.state, n.parents) for n in resumed.tree.nodes[:len(made)]] == made
