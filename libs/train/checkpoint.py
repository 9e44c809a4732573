"""Periodic asynchronous checkpoints with orbax; automatic resume from the workdir.

A checkpoint holds the whole train state (params, optimizer state, step, RNG)
plus a small JSON record (data position, tokens seen, wall time so far).
Orbax writes each step into a temporary folder and renames it when complete,
so a process killed mid-save leaves the previous checkpoints intact. A latest
checkpoint that does not restore (a truncated array file, a missing state, an
empty step folder) is named and skipped for the newest one that does; a failed
asynchronous save stops the run with a clear error at the next save or at the end.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import gin
import orbax.checkpoint as ocp
from absl import logging

from libs.train import distributed
from libs.train.errors import UserError
from libs.train.launch import NON_NEGATIVE, POSITIVE


@gin.configurable
class Checkpointer:
    """Saves every `every_steps` steps, keeps the last `keep`, restores the latest."""

    def __init__(self, workdir: str, every_steps: Annotated[int, NON_NEGATIVE] = 1000,
                 keep: Annotated[int, POSITIVE] = 3, async_save: bool = True):
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

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def check_for_errors(self) -> None:
        """Raises UserError if an earlier asynchronous save failed (disk full, permissions, ...)."""
        try:
            self._manager.check_for_errors()
        except Exception as e:  # orbax re-raises whatever the background save hit
            raise UserError(f"saving a checkpoint to {self.directory} failed: {_first_line(e)}; the last "
                            f"complete checkpoint is step {self.latest_step()}") from None

    def save(self, step: int, state: Any, meta: dict[str, Any], force: bool = False) -> None:
        self.check_for_errors()
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

    def restore_latest(self, abstract_state: Any, on_error: Any = None) -> tuple[int, Any, dict[str, Any]] | None:
        """The newest checkpoint that restores, as (step, state, meta); None when there is none.

        Checkpoints that fail to restore are named in a warning and skipped. `on_error(error)` may raise
        to stop the search instead (a checkpoint of another config: no older step would fit either).
        """
        bad = []
        # Every process of a multi-process run tries process 0's steps, and skips a step unless all restored it.
        for step in reversed(distributed.leader_value(self.all_steps())):
            try:
                state, meta = self.restore(step, abstract_state)
                error = None
            except Exception as e:  # orbax, tensorstore and json errors all mean "this step is unusable"
                error = e
            if distributed.any_process(error is not None):
                e = error or RuntimeError("another process could not restore it")
                if on_error is not None:
                    on_error(e)
                bad.append(step)
                logging.warning("checkpoint step %d in %s does not restore (%s); trying an older one", step,
                                self.directory, _first_line(e))
                continue
            if bad:
                logging.warning("resuming from step %d; corrupt checkpoint steps skipped: %s", step, bad)
            return step, state, meta
        if bad:
            raise UserError(f"no checkpoint in {self.directory} restores (corrupt steps: {bad}); move them away "
                            "to start over")
        return None

    def wait(self) -> None:
        self._manager.wait_until_finished()
        self.check_for_errors()

    def close(self) -> None:
        try:
            self._manager.wait_until_finished()
            self.check_for_errors()
        finally:
            self._manager.close()


def _first_line(e: BaseException) -> str:
    return (str(e).strip() or type(e).__name__).splitlines()[0]

