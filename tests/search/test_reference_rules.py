"""Each rule of the LLM-First Search paper's four policies, pinned on small hand-made trees."""

import asyncio
import math

import pytest

from libs.search import best_first, lfs, mcts, tot_bfs
from libs.search.base import Budget
from libs.search.problem import Problem


class Scripted(Problem):
    """A hand-made tree of named states with scripted scorer answers; logs every query."""

    def __init__(self, tree, values=None, node_values=None, solved=(), terminal=(), explore=(), priors=None,
                 tokens_per_query=0):
        self.tree, self.values, self.node_values = tree, values or {}, node_values or {}
        self.solved, self.terminal = set(solved), set(terminal) | set(solved)
        self.explore, self.prior_scores = list(explore), priors or {}
        self.log, self.tokens_per_query = [], tokens_per_query

    def root(self):
        return "r"

    async def expand(self, state):
        return list(self.tree.get(state, []))

    def is_terminal(self, state):
        return state in self.terminal

    def is_solution(self, state):
        return state in self.solved

    def tokens_used(self):
        return self.tokens_per_query * len(self.log)

    async def child_values(self, path, children):
        self.log.append(("child_values", path[-1]))
        return {i: self.values[s] for i, s in children.items() if s in self.values}

    async def value(self, path, children):
        self.log.append(("value", path[-1]))
        return self.node_values.get(path[-1])

    async def should_explore(self, path, children):
        self.log.append(("explore", path[-1]))
        return self.explore.pop(0) if self.explore else False

    async def priors(self, path, children):
        self.log.append(("priors", path[-1]))
        return {i: self.prior_scores[s] for i, s in children.items() if s in self.prior_scores}


def run(search):
    """The result and the states in the order the search expanded them."""
    order, expand = [], search.expand

    async def recording_expand(node, score=True):
        if not node.expanded:
            order.append(node.state)
        return await expand(node, score)

    search.expand = recording_expand
    return asyncio.run(search.run()), order


# --- what counts as a win -------------------------------------------------------------------------

WIN_BELOW = {"r": ["win", "a"], "a": ["a1", "a2"]}  # "win" is solved but valued below "a"


@pytest.mark.parametrize("policy", [lfs.LLMFirstSearch, best_first.BestFirstSearch])
def test_generating_a_solution_is_not_a_win_visiting_it_is(policy):
    problem = Scripted(WIN_BELOW, values={"win": 0.2, "a": 0.9, "a1": 0.1, "a2": 0.1}, node_values={"r": 0.5},
                       solved={"win"}, terminal={"a1", "a2"})
    result, expanded = run(policy(problem))
    assert result.solved and result.solution.state == "win"
    assert "a" in expanded  # It went down the better-valued path first, as the paper's code does.
    early, _ = run(policy(Scripted(WIN_BELOW, values={"win": 0.2, "a": 0.9}, node_values={"r": 0.5},
                                   solved={"win"}), win_on_generation=True))
    assert early.solved and early.steps == 1  # The old rule: the generated solution ends the game at once.


def test_tot_bfs_loses_when_a_losing_leaf_ranks_first():
    tree = {"r": ["lose", "win", "a"]}
    problem = Scripted(tree, values={"lose": 0.9, "win": 0.8, "a": 0.1}, solved={"win"}, terminal={"lose"})
    result, _ = run(tot_bfs.ToTBFS(problem, top_n=3))
    assert not result.solved and result.stop_reason == "exhausted"
    problem = Scripted(tree, values={"lose": 0.7, "win": 0.8, "a": 0.1}, solved={"win"}, terminal={"lose"})
    assert run(tot_bfs.ToTBFS(problem, top_n=3))[0].solved


def test_tot_bfs_keeps_the_top_n_with_ties_to_the_later_candidate_and_drops_unvalued():
    tree = {"r": ["x", "y", "z", "u"], "y": ["y1"], "z": ["z1"], "x": ["x1"]}
    problem = Scripted(tree, values={"x": 0.5, "y": 0.5, "z": 0.5, "y1": 0.1, "z1": 0.2, "x1": 0.3},
                       terminal={"y1", "z1", "x1"})
    search = tot_bfs.ToTBFS(problem, top_n=2)
    run(search)
    assert ("child_values", "z") in problem.log and ("child_values", "y") in problem.log
    assert ("child_values", "x") not in problem.log  # Equal values: the later two of x, y, z; u has no value.


# --- LLM-First Search -----------------------------------------------------------------------------


def test_lfs_setup_values_the_root_and_asks_to_explore_whenever_a_frontier_exists():
    tree = {"r": ["a", "b"], "a": ["a1"], "a1": ["win"]}
    problem = Scripted(tree, values={"a": 0.9, "b": 0.1, "a1": 0.5, "win": 0.5}, node_values={"r": 0.4},
                       solved={"win"})
    result, _ = run(lfs.LLMFirstSearch(problem))
    assert result.solved
    assert problem.log[:2] == [("value", "r"), ("child_values", "r")]
    # b stays unexpanded the whole game, so every step asks: at r, a, a1.
    assert [q for q in problem.log if q[0] == "explore"] == [("explore", "r"), ("explore", "a"), ("explore", "a1")]


def test_lfs_explore_values_unvalued_frontier_nodes_and_jumps_to_the_best_ties_to_the_last():
    # c and d tie at the top; the paper's sorted list puts the later one (d, last in BFS order) on top.
    tree = {"r": ["a", "b", "c", "d"], "a": ["a1"], "d": ["win"]}
    problem = Scripted(tree, values={"a": 0.9, "c": 0.8, "d": 0.8, "a1": 0.1, "win": 0.9},
                       node_values={"r": 0.5, "b": 0.3}, solved={"win"}, explore=[False, True])
    search = lfs.LLMFirstSearch(problem)
    result, expanded = run(search)
    assert result.solved and search.backtracks == 1
    assert ("value", "b") in problem.log  # b had no value: valued when the search explored.
    assert "c" not in expanded and "d" in expanded


def test_lfs_frontier_includes_terminal_nodes_and_a_terminal_current_node_explores_unasked():
    # a is the greedy pick but a dead end; the frontier's best is the solved leaf "win" itself.
    tree = {"r": ["a", "win", "b"]}
    problem = Scripted(tree, values={"a": 0.9, "win": 0.6, "b": 0.5}, node_values={"r": 0.5},
                       solved={"win"}, terminal={"a"})
    search = lfs.LLMFirstSearch(problem)
    result, _ = run(search)
    assert result.solved and search.backtracks == 1
    assert ("explore", "a") not in problem.log  # At a terminal node the search explores without asking.


def test_lfs_token_budget_stops_mid_step():
    tree = {"r": ["a", "b"], "a": ["a1", "a2"], "a1": ["a11"], "a11": ["win"]}
    problem = Scripted(tree, values={"a": 0.9, "b": 0.2, "a1": 0.5, "a2": 0.4, "a11": 0.5, "win": 0.5},
                       node_values={"r": 0.5}, solved={"win"}, tokens_per_query=100)
    result = asyncio.run(lfs.LLMFirstSearch(problem, budget=Budget(max_tokens=450)).run())
    assert result.stop_reason == "tokens" and not result.solved and problem.tokens_used() == 500


# --- Best-First Search ----------------------------------------------------------------------------


def test_bestfs_switches_only_to_a_strictly_better_open_node_and_leaves_a_losing_leaf():
    # After r -> a (0.9), a's children are worth 0.2 and 0.1 but a itself (0.9) still beats b (0.5):
    # the paper compares the nodes' OWN values, so it stays on a and takes a1 (a dead end, then -inf).
    tree = {"r": ["a", "b"], "a": ["a1", "a2"], "b": ["win"]}
    problem = Scripted(tree, values={"a": 0.9, "b": 0.5, "a1": 0.2, "a2": 0.1, "win": 0.9},
                       node_values={"r": 0.3}, solved={"win"}, terminal={"a1", "a2"})
    search = best_first.BestFirstSearch(problem)
    result, expanded = run(search)
    assert result.solved
    assert expanded.index("a1") < expanded.index("a2") < expanded.index("b")  # a's own 0.9 keeps it first.
    assert search.tree[next(n.id for n in search.tree.nodes if n.state == "a2")].value == -math.inf


def test_bestfs_ties_go_to_the_current_node_then_the_first_in_breadth_first_order():
    tree = {"r": ["a", "b"], "a": ["a1"], "b": ["b1"], "a1": ["a11"], "b1": ["win"]}
    problem = Scripted(tree, values={"a": 0.5, "b": 0.5, "a1": 0.5, "b1": 0.5, "a11": 0.5, "win": 0.5},
                       node_values={"r": 0.5}, solved={"win"}, terminal={"a11"})
    search = best_first.BestFirstSearch(problem)
    result, expanded = run(search)
    assert result.solved and expanded[:4] == ["r", "a", "a1", "a11"]  # The current node keeps ties ...
    assert search.backtracks == 1  # ... until a losing leaf (-inf) sends it to the first open node, b.


# --- MCTS (PUCT) ----------------------------------------------------------------------------------


def test_mcts_values_new_leaves_by_query_and_asks_for_priors_lazily():
    tree = {"r": ["a", "b"], "a": ["win"]}
    problem = Scripted(tree, node_values={"a": 0.8, "b": 0.1}, priors={"a": 3.0, "b": 1.0}, solved={"win"})
    result, _ = run(mcts.MCTS(problem, selection="puct", c=0.5))
    assert result.solved
    assert problem.log == [("priors", "r"), ("value", "a"), ("priors", "a")]
    assert not any(kind == "child_values" for kind, _ in problem.log)  # Children are created unvalued.


def test_mcts_puct_score_uses_the_papers_visit_counts():
    tree = {"r": ["a", "b"], "a": ["a1", "a2"]}
    search = mcts.MCTS(Scripted(tree), selection="puct", c=0.5)
    nodes = {}
    for state, parent in (("a", "r"), ("b", "r"), ("a1", "a"), ("a2", "a")):
        nodes[state] = search.add_child(nodes.get(parent, search.tree.root), state)
    a, a1, a2 = nodes["a"], nodes["a1"], nodes["a2"]
    search.tree.update(a, visits=6, total_value=2.0)
    search.tree.update(a1, visits=3, total_value=1.5, prior=0.25)
    search.tree.update(a2, visits=2, total_value=0.4, prior=0.75)
    c_param = math.log((3 + 2 + 19652 + 1) / 19652) + 0.5
    n_parent = a.depth * a.visits + 1  # depth 1 x 6 visits + 1: the paper's visits_to_root(parent) + 1
    score = search._scorer(a)  # pylint: disable=protected-access
    assert score(a1) == pytest.approx(1.5 / 4 + c_param * 0.25 * math.sqrt(n_parent) / 4)
    assert score(a2) == pytest.approx(0.4 / 3 + c_param * 0.75 * math.sqrt(n_parent) / 3)
    search.tree.update(search.tree.root, visits=50)
    root_score = search._scorer(search.tree.root)  # pylint: disable=protected-access
    c_root = math.log((6 + 19652 + 1) / 19652) + 0.5
    assert root_score(nodes["b"]) == pytest.approx(c_root * 0.5 * 1.0)  # At the root N = 1, whatever its visits.


@pytest.mark.parametrize("close", [False, True])
def test_mcts_dead_ends_are_reselected_with_minus_one_unless_closed(close):
    tree = {"r": ["dead", "a"], "a": ["a1"], "a1": ["win"]}
    problem = Scripted(tree, node_values={"a": 0.0, "a1": 0.0}, priors={"dead": 100.0, "a": 1.0},
                       solved={"win"}, terminal={"dead"})
    search = mcts.MCTS(problem, selection="puct", c=5.0, close_dead_ends=close)
    result, _ = run(search)
    dead = next(n for n in search.tree.nodes if n.state == "dead")
    assert result.solved
    assert dead.total_value == -dead.visits and (dead.visits == 1 if close else dead.visits > 1)


def test_mcts_stops_when_the_whole_tree_is_finished():
    problem = Scripted({"r": ["x", "y"]}, terminal={"x", "y"})
    result = asyncio.run(mcts.MCTS(problem, selection="puct").run())
    assert not result.solved and result.stop_reason == "exhausted"
