"""The game's rules are public (game.py); the opponent pool and the evaluation seed are private."""

from pathlib import Path

from libs.envs.research_tasks import taskkit

MATCHES = 40  # matches of game.ROUNDS rounds against each opponent


def prepare(public_dir: Path, private_dir: Path, seed: int) -> None:
    taskkit.prepare_game(Path(__file__).parent, public_dir, private_dir, seed, MATCHES)
