"""Evaluation statistics: win rates with Wilson intervals, performance profiles and AUP."""
