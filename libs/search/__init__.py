"""Problem-agnostic search: nodes, a resumable journal, and search policies.

Policies talk to a problem only through `libs.search.problem.Problem`; they know
nothing of puzzles, research tasks or language models.
"""
