"""A tiny deterministic problem for policy tests: reach `target` from 1 with +1 and *2."""

from libs.search.problem import Problem


class ReachTarget(Problem):
    def __init__(self, target: int = 37, explore_every: int = 0):
        self.target = target
        self.explore_every = explore_every
        self.decisions = 0
        self.expansions = 0

    def root(self):
        return 1

    async def expand(self, state):
        self.expansions += 1
        return [state + 1, state * 2, state + 3]

    async def child_values(self, path, children):
        return {i: max(0.0, 1.0 - abs(self.target - s) / self.target) if s <= self.target else 0.0
                for i, s in children.items()}

    def is_terminal(self, state):
        return state >= self.target

    def is_solution(self, state):
        return state == self.target

    async def should_explore(self, path, children):
        self.decisions += 1
        return bool(self.explore_every) and self.decisions % self.explore_every == 0
