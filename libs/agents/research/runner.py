"""Running research-task commands (solutions and evaluators) in the sandbox.

`sandbox_runner(sandbox)` is a `libs.envs.research_tasks.Runner`: each `RunSpec` runs in a fresh sandbox
workspace copied from the spec's `cwd`, with its read-only views bound, its time and memory limits, and
the files it names in `collect` copied back into `cwd` (so the evaluator, run next, finds the
submission). This, not the tasks' unsandboxed `local_runner`, is what runs generated code.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from libs.envs.research_tasks import Runner, RunResult, RunSpec
from libs.sandbox import Limits, Sandbox


class ExecutionCancelled(Exception):
    """The run was killed because `cancel()` turned true (a stop request); it has no result."""


def sandbox_runner(sandbox: Sandbox, processes: int = 64, output_bytes: int = 65536,
                   cancel: Callable[[], bool] | None = None) -> Runner:
    """A Runner over `sandbox`; `cancel` (polled while a command runs) kills it and raises ExecutionCancelled."""

    def run(spec: RunSpec) -> RunResult:
        limits = Limits(wall_s=spec.timeout_s, memory_mb=spec.memory_mb, processes=processes,
                        output_bytes=output_bytes)
        execution = sandbox.run(list(spec.command), spec.cwd, read_only={str(h): str(i) for h, i in spec.read_only},
                                limits=limits, env=dict(spec.env), collect=spec.collect, cancel=cancel)
        if execution.killed == "cancelled":
            raise ExecutionCancelled(f"{spec.command[-1]}: stopped by a stop request")
        for rel, content in execution.files.items():
            path = os.path.join(spec.cwd, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(content)
        if execution.killed and execution.killed != "timeout":
            stderr = f"{execution.stderr}\n[sandbox: stopped by the {execution.killed} limit]".lstrip("\n")
        else:
            stderr = execution.stderr
        return RunResult(None if execution.timed_out else execution.returncode, execution.stdout, stderr,
                         execution.wall_s)

    return run
