"""Periodic asynchronous checkpoints with orbax; automatic resume from the workdir.

A checkpoint holds the whole train state (params, optimizer state, step, RNG)
plus a small JSON record (data position, tokens seen, wall time so far).
Orbax writes each step into a temporary folder and renames it when complete,
so a process killed mid-save leaves the previous checkpoints intact.
"""

from __future__ import annotations

import os
from typing import Any

import gin
import orbax.checkpoint as ocp
from absl import logging


@gin.configurable
class Checkpointer:
    """Saves every `every_steps` steps, keeps the last `keep`, restores the latest."""

    def __init__(self, workdir: str, every_steps: int = 1000, keep: int = 3, async_save: bool = True):
        self.every_steps = every_steps
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def should_save(self, step: int) -> bool:
        return self.every_steps > 0 and step % self.every_steps == 0

    def save(self, step: int, state: Any, meta: dict[str, Any], force: bool = False) -> None:
        if step in self._manager.all_steps():
            return
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=force,
        )
        logging.info("checkpoint: saving step %d to %s", step, self.directory)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """Restores into the shapes and shardings of `abstract_state`."""
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], dict(restored["meta"] or {})

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

