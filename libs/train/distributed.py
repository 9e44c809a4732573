"""Multi-process runs: one binary, many processes, one global mesh (JAX's distributed runtime).

The launcher (`libs.train.launch.run`) calls `initialize` before anything touches devices. The topology
comes, in this order, from explicit settings (a binary's `--coordinator_address` / `--num_processes` /
`--process_id` flags, or the environment variables `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
`JAX_PROCESS_ID` that `tools/launch_local.py` sets), or from the environment of the usual launchers,
detected by JAX itself: SLURM (`srun`), Open MPI (`mpirun`), Cloud TPU pod slices, Kubernetes jobs.
Without any of them a run is single-process and nothing is initialised.

Bounded failure: a process that never joins makes `initialize` fail after `join_timeout_s`; a process
that dies later is detected by the coordination service's heartbeats (`heartbeat_timeout_s`), or at
once by the collectives' broken connections. Either way the others end with one line naming the cause
(`PeerFailure`), not a hang. The topology is deliberately not a gin setting: every process must parse
the same config (it is saved and compared across reruns), while each has its own process id.

CPU runs use gloo collectives (`jax_cpu_collectives_implementation`), so tests run 2 processes on
127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from typing import Annotated, Any

import gin
import jax
import numpy as np

from libs.train.errors import UserError
from libs.train.launch import POSITIVE

ENV_ADDRESS, ENV_COUNT, ENV_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"
# Environment variables whose presence means a launcher started several processes (JAX detects the rest).
_CLUSTER_COUNT_VARS = ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE")


class PeerFailure(UserError):
    """Another process of a multi-process run died, never joined, or stopped answering."""


@dataclasses.dataclass(frozen=True)
class Topology:
    """Who this process is. None fields are left to JAX's cluster detection."""

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    source: str = "single process"

    @property
    def multi_process(self) -> bool:
        return self.source != "single process"


def detect(coordinator_address: str | None = None, num_processes: int | None = None,
           process_id: int | None = None, environ: dict[str, str] | None = None) -> Topology:
    """The topology from explicit settings, then this project's variables, then a cluster launcher's."""
    env = os.environ if environ is None else environ
    if coordinator_address or num_processes is not None or process_id is not None:
        return _checked(Topology(coordinator_address or env.get(ENV_ADDRESS), num_processes, process_id, "flags"))
    if env.get(ENV_COUNT) or env.get(ENV_ID):
        try:
            count = int(env[ENV_COUNT]) if env.get(ENV_COUNT) else None
            pid = int(env[ENV_ID]) if env.get(ENV_ID) else None
        except ValueError:
            raise UserError(f"{ENV_COUNT}={env.get(ENV_COUNT)!r} / {ENV_ID}={env.get(ENV_ID)!r}: expected "
                            "integers") from None
        return _checked(Topology(env.get(ENV_ADDRESS), count, pid, "environment (JAX_*)"))
    for var in _CLUSTER_COUNT_VARS:
        if env.get(var, "1").isdigit() and int(env.get(var, "1")) > 1:
            return Topology(env.get(ENV_ADDRESS), source=f"cluster launcher ({var}={env[var]})")
    hosts = env.get("TPU_WORKER_HOSTNAMES", "")
    if "," in hosts:
        return Topology(env.get(ENV_ADDRESS), source=f"TPU pod slice ({hosts.count(',') + 1} hosts)")
    if env.get(ENV_ADDRESS):
        return Topology(env[ENV_ADDRESS], source="environment (JAX_COORDINATOR_ADDRESS)")
    return Topology()


def _checked(topology: Topology) -> Topology:
    count, pid = topology.num_processes, topology.process_id
    if count is not None and count < 1:
        raise UserError(f"num_processes={count}: expected at least 1")
    if pid is not None and count is not None and not 0 <= pid < count:
        raise UserError(f"process_id={pid}: expected 0 to num_processes - 1 = {count - 1}")
    if count == 1:
        return Topology(source="single process")
    if not topology.coordinator_address and (count or pid is not None):
        raise UserError("a multi-process run needs the coordinator's host:port (--coordinator_address or "
                        f"{ENV_ADDRESS}) as well as the process count and id")
    return topology


@gin.configurable
def timeouts(join_timeout_s: Annotated[int, POSITIVE] = 300,
             heartbeat_timeout_s: Annotated[int, POSITIVE] = 60) -> tuple[int, int]:
    """How long processes wait for each other: to join at start, and for a silent peer (both <= 5 min)."""
    return join_timeout_s, heartbeat_timeout_s


_STATE: dict[str, Any] = {"topology": Topology()}


def initialize(topology: Topology) -> None:
    """Joins the run's processes (a no-op for a single process); call before touching devices."""
    _STATE["topology"] = topology
    if not topology.multi_process or jax.distributed.is_initialized():
        return
    join_s, heartbeat_s = timeouts()
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    what = (f"the {topology.num_processes or '?'}-process run ({topology.source}, coordinator "
            f"{topology.coordinator_address or 'auto'}, process {topology.process_id if topology.process_id is not None else 'auto'})")
    # JAX's client aborts the process (a C++ stack dump) when its own join deadline passes; this watchdog
    # ends it first, with one line. JAX's deadline is kept as a backstop.
    joined = threading.Event()

    def watchdog():
        if not joined.wait(join_s):
            print(f"error: could not join {what} within {join_s} s (timeouts.join_timeout_s): a process did not "
                  "start, or the coordinator address is unreachable", file=sys.stderr, flush=True)
            os._exit(1)  # pylint: disable=protected-access

    threading.Thread(target=watchdog, daemon=True, name="join-watchdog").start()
    try:
        jax.distributed.initialize(topology.coordinator_address, topology.num_processes, topology.process_id,
                                   initialization_timeout=join_s + 60, heartbeat_timeout_seconds=heartbeat_s)
    except (RuntimeError, ValueError, TypeError) as e:
        raise PeerFailure(f"could not join {what}: {' '.join(str(e).split())[:300]}") from None
    finally:
        joined.set()


def _multi() -> bool:
    return _STATE["topology"].multi_process or jax.distributed.is_initialized()


def process_index() -> int:
    """This process's index (0 without touching devices in a single-process run)."""
    return jax.process_index() if _multi() else 0


def is_leader() -> bool:
    """True on the process that writes files and logs (process 0, or the only process)."""
    return process_index() == 0


def any_process(flag: bool) -> bool:
    """True if `flag` is True on any process (a collective: every process must call it)."""
    if not _multi() or jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    return bool(np.any(multihost_utils.process_allgather(np.array([flag], np.int32))))


def leader_value(values: list[int], size: int = 64) -> list[int]:
    """Process 0's list of non-negative ints (at most `size`), on every process (a collective)."""
    if not _multi() or jax.process_count() == 1:
        return list(values)
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    padded = np.full(size, -1, np.int64)
    padded[:min(size, len(values))] = values[-size:]
    return [int(v) for v in multihost_utils.broadcast_one_to_all(padded) if v >= 0]


def describe_peer_failure(error: BaseException) -> str | None:
    """One line for a runtime error that means another process failed; None for other errors."""
    parts = [p for p in " ".join(str(error).split()).split(" In call to configurable")[0].split(": ") if p]
    text = ": ".join(p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1])  # XLA repeats its prefix
    markers = ("gloo", "Connection reset", "Connection closed", "heartbeat", "coordination service",
               "Socket closed", "DEADLINE_EXCEEDED", "UNAVAILABLE", "barrier", "Barrier")
    if _multi() and jax.process_count() > 1 and any(m in text for m in markers):
        return (f"another process of this {jax.process_count()}-process run failed or stopped answering "
                f"(process {jax.process_index()} saw: {text[-240:]}); see the other processes' logs")
    return None
