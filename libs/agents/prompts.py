r"""Prompts for the model queries of LLM-guided search on Countdown and Sudoku.

The queries follow LLM-First Search (Herr et al. 2025), in our own wording:
one system prompt per query kind (game rules, a worked example, the criteria
to weigh, the exact answer format) and a user prompt showing the current
node (Countdown: the whole state/action sequence from the root; Sudoku: the
board) with its possible moves as a dict `{index: 'move'}`, keyed by the
child's index among its siblings. Answers are JSON inside `\boxed{...}` with
the reference's keys (see `answers.py`).

Kinds: "child_values" (a value in [0, 1] per listed move), "value" (one state
value in [0, 1]), "explore" (LFS: leave the current path or not) and "priors"
(MCTS: a probability distribution over the listed moves).
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Mapping, Sequence

KINDS = ("child_values", "value", "explore", "priors")

TRY_AGAIN = (
    "Your reply has no answer in the required form. Reply again and end with "
    'exactly one JSON object inside \\boxed{...}, for example \\boxed{{"explore": false}}, '
    "using the field and the value format that the instructions ask for."
)


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A system prompt and a user prompt for one query."""

    system: str
    user: str

    def messages(self) -> list[dict]:
        """OpenAI-style chat messages: [system, user]."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown query kind {kind!r}; expected one of {', '.join(KINDS)}")


# ---------------------------------------------------------------- rendering


def countdown_operation(a: int, op: str, b: int, result: int) -> str:
    """One Countdown operation, e.g. "52 - 2 = 50"."""
    if op not in ("+", "-", "*", "/"):
        raise ValueError(f"unknown Countdown operator {op!r}")
    return f"{a} {op} {b} = {result}"


def countdown_state_text(target: int, numbers: Sequence[int], operations: Sequence[str]) -> str:
    """A Countdown state: target, available numbers (current order), operations so far."""
    return (f"Target: {target}\nAvailable numbers: {list(numbers)}\n"
            f"Operations so far: {[str(o) for o in operations]}")


def countdown_sequence_text(states: Sequence[str], actions: Sequence[str]) -> str:
    """States 0..k from the root to the node; action i leads from state i to state i+1."""
    if len(actions) != len(states) - 1:
        raise ValueError(f"need len(actions) == len(states) - 1, got {len(actions)} and {len(states)}")
    parts = [f"**State 0**\n{states[0]}"]
    for i, action in enumerate(actions):
        parts.append(f"**Action {i}**: {action}\n**State {i + 1}** (after {action})\n{states[i + 1]}")
    return "\n\n".join(parts)


def sudoku_board_text(cells: Sequence[int], size: int, box_rows: int, box_cols: int) -> str:
    """The grid, '.' for empty cells, '|' between boxes, dashes between box rows."""
    if box_rows * box_cols != size or len(cells) != size * size:
        raise ValueError(f"{len(cells)} cells do not make a {size}x{size} board of {box_rows}x{box_cols} boxes")
    width = max(2, len(str(size)) + 1)
    lines = []
    for r in range(size):
        if r and r % box_rows == 0:
            lines.append("-" * (width * size + 2 * (size // box_cols - 1)))
        row = ""
        for c in range(size):
            if c and c % box_cols == 0:
                row += "| "
            v = cells[r * size + c]
            row += (str(v) if v else ".").ljust(width)
        lines.append(row.rstrip())
    return "\n".join(lines)


def sudoku_move(row: int, col: int, value: int) -> str:
    """One Sudoku move with 0-based coordinates, e.g. "Place 3 at cell (1, 0)"."""
    return f"Place {value} at cell ({row}, {col})"


def actions_text(actions: Mapping[int, str]) -> str:
    """The possible moves as a Python-dict-like listing, e.g. "{0: '...', 2: '...'}"."""
    return "{" + ", ".join(f"{k}: {actions[k]!r}" for k in sorted(actions)) + "}"


def _boxed(key: str, placeholder: str) -> str:
    return f'\\boxed{{\n{{"{key}": {placeholder}}}\n}}'


def _json_dict(values: Mapping[int, float]) -> str:
    return "{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}"


# ---------------------------------------------------------------- answer formats

# kind -> (answer key or None for the game's move key, placeholder, what replaces it, the question)
_FORMATS = {
    "child_values": (None, "<dictionary_of_values>",
                     "a dictionary from each listed {move} key (as a string) to a value between 0 and 1",
                     ("Rate every possible {move} with a value between 0 and 1: 1 if it almost surely leads "
                      "to a solution, 0 if it almost surely does not.")),
    "value": ("state_value_estimation", "<value>",
              "your estimated probability (between 0 and 1) of reaching a solution from the current state",
              ("Estimate the value of the current state: the probability, between 0 and 1, that a solution "
               "can still be reached from it (1: certain, 0: impossible).")),
    "explore": ("explore", "<boolean>",
                ("true (leave this path and explore an unexplored state elsewhere) or false (continue from "
                 "the current state)"),
                ("Think step by step about the current state and its possible {move}s, then decide: continue "
                 "from the current state, or explore the most promising unexplored state elsewhere in the "
                 "search tree. Answer true (explore) only if you are confident that the current path cannot "
                 "lead to a solution.")),
    "priors": ("operation_scores", "<dictionary_of_scores>",
               "a dictionary from each listed {move} key (as a string) to a score; the scores must sum to 1",
               ("Score every possible {move} by how likely it is to lead to a solution; the scores form a "
                "probability distribution over the listed {move}s (they sum to 1).")),
}


def _answer_key(kind: str, move_key: str) -> str:
    return _FORMATS[kind][0] or move_key


def _user(kind: str, header: str, current: str, moves_header: str, actions: Mapping[int, str],
          move: str, move_key: str) -> str:
    key, placeholder, meaning, question = _FORMATS[kind]
    return (f"{header}\n{current}\n\n{moves_header}\n{actions_text(actions)}\n\n{question.format(move=move)}\n\n"
            f"Your reply must contain a valid JSON object inside \\boxed{{...}} with the field "
            f"`{key or move_key}`, formatted like this:\n\n{_boxed(key or move_key, placeholder)}\n\n"
            f"Replace `{placeholder}` with {meaning.format(move=move)}.")


# ---------------------------------------------------------------- Countdown

_COUNTDOWN_RULES = """\
You are helping a search algorithm solve the Countdown numbers game.

Rules:
1. You get a target number and a list of starting numbers.
2. One step takes two of the available numbers and combines them with +, -, * or /.
3. Division is only allowed when it divides exactly (no fractions); results are whole numbers.
4. The two numbers used are removed from the list and the result is added to it, so every number is used at most once.
5. The game is won when exactly one number is left and it equals the target.

How a state is shown: the target, the numbers still available (in their current order) and the operations made so far.
The current path is the whole sequence from the start (State 0) to the current state; action i turns state i into state
i+1. The possible operations from the current state are listed as a dict {key: 'a op b = result'}; the keys are indices
of the options and need not be consecutive. Answer with exactly the keys listed."""

_CD_STATES = [countdown_state_text(35, [17, 56, 8, 11], []),
              countdown_state_text(35, [56, 8, 28], ["17 + 11 = 28"]),
              countdown_state_text(35, [28, 7], ["17 + 11 = 28", "56 / 8 = 7"]),
              countdown_state_text(35, [35], ["17 + 11 = 28", "56 / 8 = 7", "28 + 7 = 35"])]
_CD_ACTIONS = ["17 + 11 = 28", "56 / 8 = 7", "28 + 7 = 35"]

_COUNTDOWN_CRITERIA = {
    "child_values": """\
What to weigh for each possible operation:
1. Progress: does the result land on or near the target, or give a useful stepping stone for later steps?
2. The new number: small numbers (1-10) allow fine adjustments; factors or multiples of the target, and numbers that
   combine easily with the rest, are valuable.
3. The operator: division for useful small numbers, multiplication for large jumps toward the target, addition and
   subtraction for precise corrections.
4. What stays possible: prefer operations that keep several routes open, get rid of awkward numbers and leave a
   flexible set of numbers.""",
    "value": """\
What to weigh when valuing a state:
1. Closeness: are the available numbers equal or close to the target, or easy to combine into it?
2. Quality of the remaining numbers: small numbers (1-10), factors or multiples of the target, and numbers that
   complement each other make a state stronger.
3. Progress: how many operations are done, how few numbers remain, and whether the operations so far were sensible.
4. Overall chance: is there a visible route to the target, are there unusable numbers, is there a good mix of large
   and small numbers?""",
    "explore": """\
What to weigh before deciding:
1. How promising the current path is: numbers near the target, usable numbers, a visible route to the target.
2. Warning signs: numbers far from the target that cannot be combined sensibly, operations that repeat or undo
   earlier ones, no helpful operation left.
3. The value of switching: how many operations the current path already has, how good the unexplored alternatives
   are likely to be, whether the current path has stopped paying off.
4. Confidence: switch only on clear evidence that the current path cannot reach the target, or when a clearly better
   unexplored state exists; weigh the risk of abandoning a path that could still work.
Choose to explore only if you are confident that the current path cannot reach the target and that moving to
another state is the best use of the remaining effort; otherwise continue.""",
    "priors": """\
What to weigh when scoring the possible operations:
1. Progress: results on or near the target, or useful stepping stones, deserve more probability.
2. The new number: small flexible numbers (1-10), factors of the target, numbers that open efficient routes.
3. Managing the pool: use up the less useful numbers and keep the useful ones; avoid making huge numbers that cannot
   be used; leave a workable set of numbers.
4. The operator: division for small useful numbers, multiplication for large steps, addition and subtraction for
   precise moves toward the target.""",
}

_CD_EXAMPLES = {  # kind -> (states shown, possible operations, example answer)
    "child_values": (2, {0: "56 + 28 = 84", 1: "56 / 8 = 7", 2: "56 - 28 = 28", 3: "28 - 8 = 20"},
                     _json_dict({0: 0.1, 1: 0.9, 2: 0.3, 3: 0.4})),
    "value": (3, {0: "28 + 7 = 35", 1: "28 - 7 = 21", 2: "28 * 7 = 196", 3: "28 / 7 = 4"}, "0.95"),
    "explore": (3, {0: "28 + 7 = 35", 1: "28 - 7 = 21", 2: "28 * 7 = 196", 3: "28 / 7 = 4"}, "false"),
    "priors": (3, {0: "28 + 7 = 35", 1: "28 - 7 = 21", 2: "28 * 7 = 196", 3: "28 / 7 = 4"},
               _json_dict({0: 0.7, 1: 0.1, 2: 0.1, 3: 0.1})),
}


@functools.cache
def _countdown_system(kind: str) -> str:
    shown, example_actions, example_answer = _CD_EXAMPLES[kind]
    key = _answer_key(kind, "operation_values")
    solved = countdown_sequence_text(_CD_STATES, _CD_ACTIONS)
    example = countdown_sequence_text(_CD_STATES[:shown], _CD_ACTIONS[:shown - 1])
    task = _FORMATS[kind][3].format(move="operation")
    return (f"{_COUNTDOWN_RULES}\n\nA solved example (target 35, numbers [17, 56, 8, 11]):\n\n{solved}\n"
            f"Solved: one number is left and it equals the target.\n\n{_COUNTDOWN_CRITERIA[kind]}\n\n"
            f"Your task: {task}\n\nFor example:\n\n**Example state and action sequence**\n{example}\n\n"
            f"**Example possible operations**\n{actions_text(example_actions)}\n\n**Example final answer**\n"
            f"{_boxed(key, example_answer)}\n\nAlways end your reply with exactly one such boxed JSON object.")


def countdown_prompt(kind: str, sequence: str, actions: Mapping[int, str]) -> Prompt:
    """The prompt for one Countdown query; `sequence` from `countdown_sequence_text`."""
    _check_kind(kind)
    user = _user(kind, "**Current state and action sequence**", sequence, "**Possible operations**",
                 actions, "operation", "operation_values")
    return Prompt(_countdown_system(kind), user)


# ---------------------------------------------------------------- Sudoku

_SUDOKU_CRITERIA = {
    "child_values": """\
What to weigh for each possible move:
1. Constraint propagation: does the move create naked or hidden singles, and how does it narrow the options of the
   other cells in its row, column and box?
2. Quality: does it fill a cell with few remaining candidates, keep enough freedom elsewhere, and keep the numbers
   evenly spread over the board?
3. Consequences: does it open the way to further deductions, or risk a contradiction later?""",
    "value": """\
What to weigh when valuing a board:
1. Signs of a good state: many empty cells with few candidates; every empty cell still has at least one legal value;
   rows, columns and boxes close to complete; obvious next moves such as naked or hidden singles.
2. Signs of a bad state: an empty cell with no legal value (a contradiction); many cells with many candidates (high
   uncertainty); few constraints between the empty cells; patterns that usually end in a dead end.""",
    "explore": """\
What to weigh before deciding:
1. Whether the current board has naked or hidden singles to play next.
2. Whether it contains a contradiction, such as an empty cell with no legal value.
3. How certain the remaining cells are (few candidates or many).
4. Whether the board is still making progress or looks stuck.
Choose to explore only if you are confident that the current board cannot lead to a solution and that moving to
another state is the best use of the remaining effort; otherwise continue.""",
    "priors": """\
What to weigh when scoring the possible moves:
1. Moves that create naked or hidden singles elsewhere.
2. Moves in cells that have few remaining candidates.
3. Moves that constrain several other cells at once.
4. Moves that keep the numbers evenly spread over the board.
5. Moves that could lead to a contradiction or to a cell with no legal value deserve little probability.""",
}


def _candidates(cells: list[int], n: int, br: int, bc: int, r: int, c: int) -> list[int]:
    r0, c0 = r - r % br, c - c % bc
    used = {cells[r * n + j] for j in range(n)} | {cells[i * n + c] for i in range(n)}
    used |= {cells[i * n + j] for i in range(r0, r0 + br) for j in range(c0, c0 + bc)}
    return [v for v in range(1, n + 1) if v not in used]


@functools.cache
def _sudoku_example(box_rows: int, box_cols: int) -> tuple[tuple[int, ...], dict[int, str], dict[int, bool]]:
    """A partly filled example board, four legal moves, and which of them match the solution."""
    n = box_rows * box_cols
    rng = random.Random(f"sudoku-example-{box_rows}x{box_cols}")
    digits = rng.sample(range(1, n + 1), n)
    rows = [b * box_rows + i for b in rng.sample(range(box_cols), box_cols)
            for i in rng.sample(range(box_rows), box_rows)]
    cols = [s * box_cols + j for s in rng.sample(range(box_rows), box_rows)
            for j in rng.sample(range(box_cols), box_cols)]
    solution = [digits[(box_cols * (r % box_rows) + r // box_rows + c) % n] for r in rows for c in cols]
    while True:
        cells = [0 if rng.random() < 0.5 else v for v in solution]
        moves, correct = {}, {}
        for p in range(n * n):
            cands = _candidates(cells, n, box_rows, box_cols, p // n, p % n) if not cells[p] else []
            if len(cands) >= 2:
                for v in sorted([solution[p], min(x for x in cands if x != solution[p])]):
                    correct[len(moves)] = v == solution[p]
                    moves[len(moves)] = sudoku_move(p // n, p % n, v)
            if len(moves) == 4:
                return tuple(cells), moves, correct


@functools.cache
def _sudoku_system(kind: str, size: int, box_rows: int, box_cols: int) -> str:
    board, moves, correct = _sudoku_example(box_rows, box_cols)
    key = _answer_key(kind, "move_values")
    answer = {"child_values": _json_dict({k: 0.85 if ok else 0.2 for k, ok in correct.items()}),
              "value": "0.7", "explore": "false",
              "priors": _json_dict({k: 0.4 if ok else 0.1 for k, ok in correct.items()})}[kind]
    task = _FORMATS[kind][3].format(move="move")
    last = size - 1
    return f"""\
You are helping a search algorithm solve Sudoku puzzles, one placement at a time.

Rules: the board is a {size}x{size} grid divided into boxes of {box_rows} rows x {box_cols} columns. \
The puzzle is solved when every cell holds a number from 1 to {size} and:
1. each row contains each number from 1 to {size} exactly once;
2. each column contains each number from 1 to {size} exactly once;
3. each box ({box_rows} rows x {box_cols} columns) contains each number from 1 to {size} exactly once.
So placing a number rules it out for every other cell in the same row, column and box.

The board:
- Rows are numbered 0 to {last} from top to bottom and columns 0 to {last} from left to right; \
a cell is (row, column).
- Empty cells are shown as '.'; '|' separates boxes side by side and a dashed line separates rows of boxes.
- Each step places one number in one empty cell; the possible moves are listed as a dict {{key: 'Place v at cell \
(row, column)'}}, whose keys are indices of the options and need not be consecutive. \
Answer with exactly the keys listed.

{_SUDOKU_CRITERIA[kind]}

Your task: {task}

For example:

**Example {size}x{size} Sudoku board**
{sudoku_board_text(board, size, box_rows, box_cols)}

**Example possible moves**
{actions_text(moves)}

**Example final answer**
{_boxed(key, answer)}

Always end your reply with exactly one such boxed JSON object."""


def sudoku_prompt(kind: str, size: int, box_rows: int, box_cols: int, board: str,
                  actions: Mapping[int, str]) -> Prompt:
    """The prompt for one Sudoku query; `board` from `sudoku_board_text`."""
    _check_kind(kind)
    if box_rows * box_cols != size:
        raise ValueError(f"boxes of {box_rows}x{box_cols} do not tile a {size}x{size} board")
    user = _user(kind, f"**Current {size}x{size} Sudoku board**", board, "**Possible moves**", actions,
                 "move", "move_values")
    return Prompt(_sudoku_system(kind, size, box_rows, box_cols), user)
