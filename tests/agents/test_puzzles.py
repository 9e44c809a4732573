"""Puzzle adapters and the stand-in scorer: every policy solves easy instances; prompts show the paper's view."""

import asyncio

import pytest

from libs.agents import standin
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
def test_policy_solves_easy_instances_with_the_exact_stand_in(policy, task):
    for game in GAMES[task]():
        scorer = standin.StandInScorer("exact")
        search = POLICIES[policy](PuzzleProblem(game, scorer), budget=Budget(max_nodes=3000))
        result = asyncio.run(search.run())
        assert result.solved, (policy, task, game.instance)
        assert _is_valid_solution(game, result.solution.state)
        assert result.tokens == scorer.tokens > 0  # Estimated from the prompts a model would have been sent.


def test_stand_in_noise_is_seeded_graded_and_labelled():
    game = CountdownGame(countdown.CountdownInstance((4, 6, 10), 34))
    children = dict(enumerate(game.successors(game.root())))
    path = [game.root()]

    def values(level, seed):
        scorer = standin.StandInScorer(level, seed=seed)
        return asyncio.run(PuzzleProblem(game, scorer).child_values(path, children))

    exact = values("exact", 0)
    assert exact == {i: standin.StandInScorer("exact").exact_value(game, s) for i, s in children.items()}
    assert values("weak", 1) == values("weak", 1) != values("weak", 2)  # Seeded: a rerun sees the same answers.
    error = {level: sum(abs(values(level, s)[i] - exact[i]) for s in range(5) for i in exact)
             for level in ("strong", "medium", "weak")}
    assert 0 < error["strong"] < error["medium"] < error["weak"]
    assert "not a model" in standin.label("medium")
    with pytest.raises(ValueError, match="stand-in level"):
        standin.StandInScorer("oracle")


def test_stand_in_explores_only_from_hopeless_states_when_exact():
    game = CountdownGame(countdown.CountdownInstance((2, 3, 5), 30))
    problem = PuzzleProblem(game, standin.StandInScorer("exact"))
    good = countdown.apply(game.root(), (2, "*", 3))  # [5, 6]: 5 * 6 = 30 is still reachable.
    bad = countdown.apply(game.root(), (2, "+", 3))  # [5, 5]: 30 is out of reach.
    assert not asyncio.run(problem.should_explore([game.root(), good], {}))
    assert asyncio.run(problem.should_explore([game.root(), bad], {}))


def test_terminal_children_are_valued_by_the_scorer_unless_known_values_are_asked_for():
    game = CountdownGame(countdown.CountdownInstance((3, 5, 7), 22))
    state = countdown.CountdownState((15, 7), ((3, "*", 5, 15),))
    children = dict(enumerate(game.successors(state)))  # 22 (won), 105, 8, and no exact division.
    scorer = standin.StandInScorer("weak", seed=3)
    asked = asyncio.run(PuzzleProblem(game, scorer).child_values([state], children))
    known = asyncio.run(PuzzleProblem(game, scorer, known_terminal_values=True).child_values([state], children))
    assert known == {0: 1.0, 1: 0.0, 2: 0.0} and asked != known


def test_prompts_show_the_path_and_zero_based_moves():
    game = CountdownGame(countdown.CountdownInstance((4, 6, 10), 34))
    child = countdown.apply(game.root(), (6, "*", 4))
    prompt = game.prompt("explore", [game.root(), child], dict(enumerate(game.successors(child))))
    assert "[4, 6, 10]" in prompt.user and "[10, 24]" in prompt.user and "6 * 4 = 24" in prompt.user
    assert "{0: '10 + 24 = 34'" in prompt.user and '"explore"' in prompt.user
    (instance,) = sudoku.generate(6, "medium", 1, seed=1)
    game = SudokuGame(instance)
    root = game.root()
    children = dict(enumerate(game.successors(root)))
    prompt = game.prompt("child_values", [root], children)
    row, col, value = sudoku.legal_moves(root)[0]
    assert f"0: 'Place {value} at cell ({row}, {col})'" in prompt.user and "3 rows x 2 columns" in prompt.system
