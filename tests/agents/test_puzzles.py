"""Every policy solves easy Countdown and Sudoku instances with the heuristic scorer."""

import asyncio

import pytest

from libs.agents.puzzles import CountdownGame, PuzzleProblem, SudokuGame
from libs.envs import countdown, sudoku
from libs.search import best_first, evolutionary, greedy, lfs, mcts, tot_bfs
from libs.search.base import Budget

POLICIES = {
    "lfs": lfs.LLMFirstSearch,
    "bestfs": best_first.BestFirstSearch,
    "tot_bfs": tot_bfs.ToTBFS,
    "mcts_uct": lambda p, **kw: mcts.MCTS(p, selection="uct", **kw),
    "mcts_puct": lambda p, **kw: mcts.MCTS(p, selection="puct", c=1.0, **kw),
    "greedy": greedy.Greedy,
    "evolutionary": evolutionary.Evolutionary,
}
GAMES = {
    "countdown3": lambda: [CountdownGame(i) for i in countdown.generate(3, 8, seed=3)],
    "sudoku4x4_easy": lambda: [SudokuGame(i) for i in sudoku.generate(4, "easy", 8, seed=3)],
}


def _is_valid_solution(game, state) -> bool:
    if isinstance(game, CountdownGame):
        return countdown.check_solution(game.instance, list(state.steps))
    return sudoku.check_solution(game.instance, state.cells)


@pytest.mark.parametrize("task", sorted(GAMES))
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_policy_solves_easy_instances(policy, task):
    for game in GAMES[task]():
        search = POLICIES[policy](PuzzleProblem(game), budget=Budget(max_nodes=2000))
        result = asyncio.run(search.run())
        assert result.solved, (policy, task, game.instance)
        assert _is_valid_solution(game, result.solution.state)
        assert result.tokens == 0  # The heuristic scorer spends no model tokens.


def test_heuristic_explore_rule_leaves_hopeless_paths():
    game = CountdownGame(countdown.CountdownInstance((2, 3, 5), 30))
    problem = PuzzleProblem(game)
    dead = countdown.CountdownState((1,), ())
    assert asyncio.run(problem.should_explore([game.root(), dead], game.root()))


def test_llm_scorer_requires_queries():
    with pytest.raises(ValueError, match="needs ModelQueries"):
        PuzzleProblem(CountdownGame(countdown.CountdownInstance((2, 3, 5), 30)), scorer="llm")
