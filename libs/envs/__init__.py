"""Environments: puzzles (Countdown, Sudoku) now; NetHack, games and research tasks later."""
