"""2x2 matrix games: equilibria, Pareto sets, the correct-action rule and user game files."""

from __future__ import annotations

import json

import pytest

from libs.envs import matrix_games as mg
from libs.train.errors import ConfigError, UserError

C, D = 0, 1  # Prisoner's Dilemma: cooperate, defect.
STAG, HARE = 0, 1

PD_CLASSIC = mg.GAMES["prisoners_dilemma"]["classic"]
PD_COSTLY = mg.GAMES["prisoners_dilemma"]["costly_help"]
SH_RISKY = mg.GAMES["stag_hunt"]["risky"]
SH_SAFE = mg.GAMES["stag_hunt"]["safe"]

# (game, acting preference, fellow preference) -> correct action: the 16 cells of the brief.
EXPECTED_CORRECT = {
    (PD_CLASSIC, "self", "self"): D,
    (PD_CLASSIC, "self", "common"): D,
    (PD_CLASSIC, "common", "self"): C,
    (PD_CLASSIC, "common", "common"): C,
    (PD_COSTLY, "self", "self"): D,
    (PD_COSTLY, "self", "common"): D,
    (PD_COSTLY, "common", "self"): D,
    (PD_COSTLY, "common", "common"): C,
    (SH_RISKY, "self", "self"): HARE,
    (SH_RISKY, "self", "common"): STAG,
    (SH_RISKY, "common", "self"): HARE,
    (SH_RISKY, "common", "common"): STAG,
    (SH_SAFE, "self", "self"): STAG,
    (SH_SAFE, "self", "common"): STAG,
    (SH_SAFE, "common", "self"): STAG,
    (SH_SAFE, "common", "common"): STAG,
}


@pytest.mark.parametrize(
    "game, acting, fellow", list(EXPECTED_CORRECT), ids=lambda x: getattr(x, "variant", x)
)
def test_correct_action_in_all_16_cells(game, acting, fellow):
    assert game.correct_action(acting, fellow) == EXPECTED_CORRECT[game, acting, fellow]


def test_bundled_games_payoffs_and_symmetry():
    assert PD_CLASSIC.row == ((3, 0), (5, 1)) and PD_CLASSIC.actions == ("cooperate", "defect")
    assert PD_COSTLY.row == ((4, 0), (5, 3))
    assert SH_RISKY.row == ((10, 0), (8, 5)) and SH_RISKY.actions == ("stag", "hare")
    assert SH_SAFE.row == ((10, 0), (3, 2))
    for variants in mg.GAMES.values():
        for game in variants.values():
            assert all(game.column[i][j] == game.row[j][i] for i in mg.ACTIONS for j in mg.ACTIONS)
            assert game.cooperative_action == 0
    assert PD_CLASSIC.payoffs(C, D) == (0, 5) and PD_CLASSIC.payoffs(D, C) == (5, 0)


def test_prisoners_dilemma_has_the_unique_pure_equilibrium_defect_defect():
    for game in (PD_CLASSIC, PD_COSTLY):
        assert game.pure_equilibria() == [(D, D)]
        assert game.mixed_equilibria() == [((0.0, 1.0), (0.0, 1.0))]


def test_stag_hunt_has_two_pure_and_one_mixed_equilibrium():
    for game in (SH_RISKY, SH_SAFE):
        assert game.pure_equilibria() == [(STAG, STAG), (HARE, HARE)]
        equilibria = game.mixed_equilibria()
        assert len(equilibria) == 3
        strictly_mixed = [e for e in equilibria if 0 < e[0][0] < 1]
        assert len(strictly_mixed) == 1
        (R, S), (T, P) = game.row
        p_stag = (P - S) / ((R - T) + (P - S))
        assert strictly_mixed[0][0][0] == pytest.approx(p_stag) == pytest.approx(strictly_mixed[0][1][0])
    assert next(e for e in SH_RISKY.mixed_equilibria() if 0 < e[0][0] < 1)[0][0] == pytest.approx(5 / 7)


def test_pareto_optimal_cells():
    for game in (PD_CLASSIC, PD_COSTLY):
        assert game.pareto_optimal() == [(C, C), (C, D), (D, C)]
    for game in (SH_RISKY, SH_SAFE):  # Stag-Stag (10, 10) dominates every other cell.
        assert game.pareto_optimal() == [(STAG, STAG)]


def test_max_gain_cells():
    assert PD_CLASSIC.max_self_gain_cell() == (D, C)
    assert PD_CLASSIC.max_common_gain_cell() == (C, C)
    assert PD_COSTLY.max_common_gain_cell() == (C, C)
    assert SH_RISKY.max_self_gain_cell() == (STAG, STAG) == SH_RISKY.max_common_gain_cell()
    tied = mg.symmetric("tied", "x", ("a", "b"), R=2, S=2, T=2, P=1)  # Row payoff ties: largest sum decides.
    assert tied.max_self_gain_cell() == (0, 0)
    flat = mg.symmetric("flat", "x", ("a", "b"), R=1, S=1, T=1, P=1)
    assert flat.max_self_gain_cell() == (0, 0) == flat.max_common_gain_cell()


def test_risk_dominance_decides_the_self_gain_fellow():
    assert SH_RISKY.predicted_fellow_action("self") == HARE  # 5*5 = 25 > 2*2 = 4.
    assert SH_SAFE.predicted_fellow_action("self") == STAG  # 7*7 = 49 > 2*2 = 4.
    assert SH_RISKY.predicted_fellow_action("common") == STAG  # Largest sum among equilibria.
    assert mg._risk_dominant(*SH_RISKY._matrices(), SH_RISKY.pure_equilibria()) == (HARE, HARE)
    assert mg._risk_dominant(*SH_SAFE._matrices(), SH_SAFE.pure_equilibria()) == (STAG, STAG)
    # Equal deviation-loss products: the payoff-dominant equilibrium wins.
    tie = mg.symmetric("tie", "x", ("a", "b"), R=4, S=0, T=2, P=2)  # 2*2 both ways; (a, a) pays more.
    assert tie.predicted_fellow_action("self") == 0
    tie_reversed = mg.symmetric("tie", "y", ("a", "b"), R=2, S=2, T=0, P=4)
    assert tie_reversed.predicted_fellow_action("self") == 1


def test_no_pure_equilibrium_uses_the_more_probable_mixed_action():
    # Matching pennies with a skew: row indifference 3q - (1-q) = -q + (1-q) gives q = 1/3 on action 0.
    game = mg.MatrixGame("pennies", "skewed", ("heads", "tails"), row=((3, -1), (-1, 1)), column=((-1, 1), (1, -1)))
    assert game.pure_equilibria() == []
    ((_, _), (q0, q1)), = game.mixed_equilibria()
    assert (q0, q1) == pytest.approx((1 / 3, 2 / 3))
    assert game.predicted_fellow_action("self") == 1
    assert game.correct_action("self", "self") == 1


def test_best_response_tie_is_none():
    game = mg.symmetric("indifferent", "x", ("a", "b"), R=1, S=0, T=1, P=0)
    assert game.predicted_fellow_action("common") == 0
    assert game.correct_action("self", "common") is None  # Row gets 1 either way against a.
    assert game.correct_action("common", "common") == 0


def test_unknown_preference_is_a_config_error():
    with pytest.raises(ConfigError, match="selfish"):
        PD_CLASSIC.correct_action("selfish", "self")


BATTLE_OF_THE_SEXES = {
    "name": "battle_of_the_sexes",
    "actions": ["opera", "football"],
    "row": [[3, 0], [0, 2]],
    "column": [[2, 0], [0, 3]],
}


def _write(tmp_path, spec, name="game.json"):
    path = tmp_path / name
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return str(path)


def test_load_game_asymmetric_battle_of_the_sexes(tmp_path):
    game = mg.load_game(_write(tmp_path, BATTLE_OF_THE_SEXES))
    assert (game.name, game.variant, game.actions) == ("battle_of_the_sexes", "custom", ("opera", "football"))
    assert game.payoffs(0, 0) == (3, 2) and game.payoffs(1, 1) == (2, 3)
    assert game.pure_equilibria() == [(0, 0), (1, 1)]
    assert len(game.mixed_equilibria()) == 3
    assert game.pareto_optimal() == [(0, 0), (1, 1)]
    assert game.max_self_gain_cell() == (0, 0)
    assert game.max_common_gain_cell() == (0, 0)  # Sums tie at 5: the larger row payoff decides.
    # Self fellow: losses 3*2 = 6 both ways, neither Pareto-dominates -> the first; common: sums tie -> the first.
    assert game.predicted_fellow_action("self") == 0 and game.predicted_fellow_action("common") == 0
    assert all(game.correct_action(a, f) == 0 for a in mg.PREFERENCES for f in mg.PREFERENCES)


def test_load_game_symmetric_form(tmp_path):
    spec = {"name": "stag_hunt", "variant": "mine", "actions": ["stag", "hare"],
            "symmetric": {"R": 10, "S": 0, "T": 8, "P": 5}}
    game = mg.load_game(_write(tmp_path, spec))
    assert game == SH_RISKY.__class__("stag_hunt", "mine", ("stag", "hare"), SH_RISKY.row, SH_RISKY.column)
    assert game.correct_action("self", "self") == HARE


@pytest.mark.parametrize(
    "change, field",
    [
        ({"row": None}, "row"),  # Missing row.
        ({"name": None}, "name"),  # Missing name.
        ({"actions": ["a", "b", "c"]}, "actions"),
        ({"actions": ["a", "a"]}, "actions"),
        ({"row": [[3, "lots"], [0, 2]]}, "row[0][1]"),
        ({"column": [[2, 0], [0, True]]}, "column[1][1]"),
        ({"column": [[2, 0, 1], [0, 3]]}, "column"),
        ({"symmetric": {"R": 1, "S": 0, "T": 2, "P": 1}}, "symmetric"),  # Both forms at once.
        ({"colum": [[2, 0], [0, 3]]}, "colum"),  # A typo is an unknown field.
        ({"cooperative_action": 2}, "cooperative_action"),
    ],
)
def test_malformed_game_file_is_a_user_error_naming_file_and_field(tmp_path, change, field):
    spec = {k: v for k, v in {**BATTLE_OF_THE_SEXES, **change}.items() if v is not None}
    path = _write(tmp_path, spec)
    with pytest.raises(UserError) as caught:
        mg.load_game(path)
    message = str(caught.value)
    assert path in message and field in message and "\n" not in message


def test_unreadable_game_files_are_user_errors(tmp_path):
    for text in ("{not json", "[1, 2]"):
        path = _write(tmp_path, text)
        with pytest.raises(UserError, match=path):
            mg.load_game(path)
    bad_symmetric = {"name": "g", "actions": ["a", "b"], "symmetric": {"R": 1, "S": 0, "T": "x", "P": 1}}
    with pytest.raises(UserError, match=r"symmetric\.T"):
        mg.load_game(_write(tmp_path, bad_symmetric))
    with pytest.raises(UserError, match="missing.json"):
        mg.load_game(str(tmp_path / "missing.json"))


def test_all_games(tmp_path):
    path = _write(tmp_path, BATTLE_OF_THE_SEXES)
    games = mg.all_games(["stag_hunt", "prisoners_dilemma"], [path])
    assert [(g.name, g.variant) for g in games] == [
        ("stag_hunt", "risky"), ("stag_hunt", "safe"),
        ("prisoners_dilemma", "classic"), ("prisoners_dilemma", "costly_help"),
        ("battle_of_the_sexes", "custom"),
    ]
    with pytest.raises(ConfigError, match="prisoners_dilemma, stag_hunt"):
        mg.all_games(["chicken"])
