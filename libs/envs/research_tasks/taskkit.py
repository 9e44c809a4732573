"""Helpers for the task folders' own scripts: `evaluate.py` (arguments, the one-JSON-line result, rejecting
a submission, loading submitted code, prediction files, repeated games) and `prepare.py` (table splits).

Standard library and numpy only, and no project import: evaluators import it as a top-level module from
the folder above their own (`sys.path.insert(0, <research_tasks>)`), so they run where the project is not
importable (in a sandbox that shows only the task folders and the data); the game tasks' self-checks
import a copy of it from ./data.

The evaluator convention: the metrics are ONE JSON object printed as the last stdout line; a missing or
invalid submission ends with exit code 3 (`tasks.EXIT_INVALID`) and a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

EXIT_INVALID = 3  # = tasks.EXIT_INVALID (not imported: evaluate.py loads only this light module)


class Invalid(Exception):
    """Raised inside `evaluation()`: the submission is rejected with this reason."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """--submission_dir, --private_dir, --public_dir (all Paths; public is optional)."""
    parser = argparse.ArgumentParser(description="Scores a submission; prints one JSON line of metrics.")
    parser.add_argument("--submission_dir", type=Path, required=True)
    parser.add_argument("--private_dir", type=Path, required=True)
    parser.add_argument("--public_dir", type=Path, default=None)
    return parser.parse_args(argv)


@contextlib.contextmanager
def evaluation():
    """Wraps an evaluator's body: `Invalid` (and submitted code's own errors, re-raised as Invalid by
    `guarded`) become exit code 3 with the reason on stderr; prints go to stderr so the JSON line is last."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    except Invalid as e:
        print(f"invalid submission: {e}", file=sys.stderr)
        sys.exit(EXIT_INVALID)


def report(metrics: dict[str, Any]) -> None:
    """Prints the metrics as the last stdout line (on the real stdout, also inside `evaluation()`)."""
    sys.__stdout__.write(json.dumps(metrics) + "\n")
    sys.__stdout__.flush()


def require(path: Path, shown: str | None = None) -> Path:
    """`path` if it is a file; else the submission is rejected, naming it as `shown` (default: its name)."""
    if not path.is_file():
        raise Invalid(f"{shown or path.name} is missing from the submission")
    return path


def guarded(what: str, fn: Callable, *args, **kwargs):
    """Calls submitted code; any exception it raises rejects the submission, naming `what`."""
    try:
        return fn(*args, **kwargs)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - whatever the submission raises
        raise Invalid(f"{what} raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def load_module(path: Path, name: str):
    """Imports the submitted file `path` as module `name` (with its folder first on sys.path)."""
    require(path)
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    guarded(f"importing {path.name}", spec.loader.exec_module, module)
    return module


def function(module, name: str) -> Callable:
    fn = getattr(module, name, None)
    if not callable(fn):
        raise Invalid(f"{Path(module.__file__).name} defines no function {name}()")
    return fn


# ---------------------------------------------------------------------------------------------------------
# Tables: train.csv (features + target), test.csv (id + features), private test_labels.csv (id + target).


def write_table(path: Path, header: Sequence[str], rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def prepare_table(public_dir: Path, private_dir: Path, features: np.ndarray, target: np.ndarray,
                  names: Sequence[str], seed: int, test_fraction: float = 0.3, stratify: bool = False) -> None:
    """A deterministic split of a bundled dataset into the public train/test tables and private labels. Test
    ids are 0..n-1 in a seeded order, not the dataset's row numbers."""
    from sklearn.model_selection import train_test_split

    train_rows, test_rows = train_test_split(np.arange(len(target)), test_size=test_fraction, random_state=seed,
                                             stratify=target if stratify else None)
    test_rows = test_rows[np.random.default_rng(seed).permutation(len(test_rows))]
    fmt = (lambda v: f"{v:.6g}") if features.dtype.kind == "f" else str
    names = [str(n).replace(" ", "_") for n in names]
    write_table(public_dir / "train.csv", [*names, "target"],
                ([*map(fmt, features[i]), target[i].item()] for i in train_rows))
    write_table(public_dir / "test.csv", ["id", *names], ([k, *map(fmt, features[i])] for k, i in enumerate(test_rows)))
    write_table(private_dir / "test_labels.csv", ["id", "target"],
                ([k, target[i].item()] for k, i in enumerate(test_rows)))


def read_labels(path: Path) -> dict[int, float]:
    with open(path, newline="") as f:
        return {int(row["id"]): float(row["target"]) for row in csv.DictReader(f)}


def read_predictions(path: Path, ids: Sequence[int], integer: bool = False) -> np.ndarray:
    """The submission CSV (`id,target`, one row per test id, any order) as an array in `ids` order."""
    require(path)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"id", "target"} <= set(reader.fieldnames):
                raise Invalid(f"{path.name} needs the header 'id,target', got {reader.fieldnames}")
            found: dict[int, float] = {}
            for line, row in enumerate(reader, start=2):
                try:
                    key, value = int(row["id"]), float(row["target"])
                except (TypeError, ValueError):
                    raise Invalid(f"{path.name} line {line}: id and target must be numbers") from None
                if key in found:
                    raise Invalid(f"{path.name} line {line}: id {key} appears twice")
                if not math.isfinite(value) or integer and value != int(value):
                    raise Invalid(f"{path.name} line {line}: target {row['target']!r} is not "
                                  f"{'a class label' if integer else 'a finite number'}")
                found[key] = value
    except (UnicodeDecodeError, csv.Error) as e:
        raise Invalid(f"{path.name} is not a CSV file ({e})") from None
    if missing := [i for i in ids if i not in found]:
        raise Invalid(f"{path.name} has no prediction for {len(missing)} test ids (first: {missing[0]})")
    if extra := sorted(set(found) - set(ids)):
        raise Invalid(f"{path.name} has {len(extra)} ids that are not test ids (first: {extra[0]})")
    return np.array([found[i] for i in ids])


def evaluate_table(score: Callable[[np.ndarray, np.ndarray], dict[str, float]], integer: bool = False) -> None:
    """A table task's whole evaluator: `submission.csv` against the private `test_labels.csv`; prints
    `score(predictions, labels)` (arrays in test-id order)."""
    args = parse_args()
    labels = read_labels(args.private_dir / "test_labels.csv")
    ids = sorted(labels)
    with evaluation():
        predictions = read_predictions(args.submission_dir / "submission.csv", ids, integer)
    metrics = score(predictions, np.array([labels[i] for i in ids]))
    report({name: round(float(value), 4) for name, value in metrics.items()})


# ---------------------------------------------------------------------------------------------------------
# Repeated games against a fixed pool of opponents (prisoner's dilemma, battle of the sexes, Colonel Blotto).
# A game task's `game.py` (public) holds ROUNDS, `payoff(row_move, col_move)` (the row's payoff),
# `check_move(move)` (the row's move normalised, or ValueError) and EXAMPLES (opponents for self-checks);
# its `opponents.py` (private) holds the scoring POOL. An opponent is `opponent(history, rng) -> move`.


def _load_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def play_pool(row_strategy: Callable, pool: dict[str, Callable], game, matches: int, seed: int) -> dict[str, float]:
    """Mean per-round payoff of `row_strategy(history)` against each opponent of `pool` in `game`.

    Each history is a list of `(own move, other's move)` pairs from that player's side. Every match
    reseeds `random` and numpy's global generator (the submission's randomness) and the opponent's own
    `rng`, so a score is reproducible.
    """
    scores = {}
    for k, (name, opponent) in enumerate(sorted(pool.items())):
        total = 0.0
        for match in range(matches):
            match_seed = seed * 1_000_003 + k * 10_007 + match
            random.seed(match_seed)
            np.random.seed(match_seed % 2**32)
            rng = random.Random(match_seed + 1)
            history: list[tuple[Any, Any]] = []
            for _ in range(game.ROUNDS):
                move = guarded("row_strategy", row_strategy, list(history))
                try:
                    mine = game.check_move(move)
                except ValueError as e:
                    raise Invalid(f"row_strategy returned {str(move)[:80]}: {e}") from None
                theirs = opponent([(b, a) for a, b in history], rng)
                total += game.payoff(mine, theirs)
                history.append((mine, theirs))
        scores[name] = total / (game.ROUNDS * matches)
    return scores


def prepare_game(task_dir: Path, public_dir: Path, private_dir: Path, seed: int, matches: int) -> None:
    """A game task's data: `game.py` and this harness (for self-checks) public; the opponent pool and the
    evaluation seed private."""
    task_dir = Path(task_dir)
    (Path(public_dir) / "game.py").write_text((task_dir / "game.py").read_text())
    (Path(public_dir) / "taskkit.py").write_text(Path(__file__).read_text())
    (Path(private_dir) / "opponents.py").write_text((task_dir / "opponents.py").read_text())
    (Path(private_dir) / "config.json").write_text(json.dumps({"seed": seed, "matches": matches}))


def evaluate_game(task_dir: Path) -> None:
    """A game task's whole evaluator: `strategy.py`'s `row_strategy` against the private pool, under the
    rules of `task_dir/game.py`.

    Metrics: {"score": mean per-round payoff over the pool's opponents, "vs_<name>": each opponent's}."""
    args = parse_args()
    config = json.loads((args.private_dir / "config.json").read_text())
    game = _load_file(Path(task_dir) / "game.py", "game_rules")
    pool = _load_file(args.private_dir / "opponents.py", "game_opponents").POOL
    with evaluation():
        module = load_module(args.submission_dir / "strategy.py", "submitted_strategy")
        scores = play_pool(function(module, "row_strategy"), pool, game, config["matches"], config["seed"])
    report({"score": round(float(np.mean(list(scores.values()))), 4),
            **{f"vs_{name}": round(value, 4) for name, value in scores.items()}})


def self_check(row_strategy: Callable, matches: int = 20) -> None:
    """For a starter's `python strategy.py`: prints its scores against ./data/game.py's EXAMPLES."""
    game = _load_file(Path("data/game.py"), "game_rules")
    with evaluation():
        scores = play_pool(row_strategy, game.EXAMPLES, game, matches, seed=0)
    for name, value in scores.items():
        print(f"vs {name}: {value:.3f} per round")
    print(f"mean over the examples: {np.mean(list(scores.values())):.3f}")


def binary_move(move: Any) -> int:
    """`check_move` of a two-action game: 0 or 1 (ints, numpy ints and bools accepted)."""
    try:
        if move in (0, 1) and int(move) == move:
            return int(move)
    except (TypeError, ValueError):
        pass
    raise ValueError("a move is 0 or 1")
