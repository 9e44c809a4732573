r"""Sandbox benchmarks: overhead per execution, and CPU-bound executions in flight together.

    python -m tools.bench_sandbox                       # auto backend (bubblewrap where it works)
    python -m tools.bench_sandbox --backend=rlimits     # the fallback

1. Overhead: a no-op Python script run `--runs` times in the sandbox and `--runs` times directly with
   subprocess (interleaved, after a warm-up); the difference of the medians is the sandbox's cost.
2. Throughput: `--jobs` executions that each burn `--cpu_s` seconds of CPU, `--in_flight` at a time from a
   thread pool; the wall time is compared with jobs x cpu_s / in_flight (the ideal), and with the same
   scripts run directly the same way, in this process's session and each in its own session as the sandbox
   runs them (with the kernel's autogroup scheduling a new session gets its own share of the CPU against
   other sessions' work, nice levels included, so on a busy machine the two direct rows differ).
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from libs.sandbox import Limits, Sandbox

_BACKEND = flags.DEFINE_enum("backend", "auto", ["auto", "bwrap", "rlimits"], "Sandbox backend.")
_RUNS = flags.DEFINE_integer("runs", 20, "No-op executions per side for the overhead median.")
_JOBS = flags.DEFINE_integer("jobs", 8, "CPU-bound executions for the throughput benchmark (0: skip).")
_IN_FLIGHT = flags.DEFINE_integer("in_flight", 2, "Executions in flight at once.")
_CPU_S = flags.DEFINE_float("cpu_s", 1.0, "CPU seconds each throughput execution burns.")

BURN = """import sys, time
end = time.process_time() + float(sys.argv[1])
while time.process_time() < end:
    pass
"""


def _direct(argv: list[str], cwd: str, own_session: bool = False) -> float:
    start = time.monotonic()
    subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, check=True,
                   start_new_session=own_session)
    return time.monotonic() - start


def _sandboxed(box: Sandbox, argv: list[str], src: str) -> float:
    start = time.monotonic()
    ex = box.run(argv, src, limits=Limits(wall_s=60))
    if ex.returncode != 0:
        raise RuntimeError(f"sandboxed run failed: {ex.stderr[-500:]}")
    return time.monotonic() - start


def main(argv):
    del argv
    box = Sandbox(_BACKEND.value)
    load = os.getloadavg()[0]
    print(f"backend {box.backend}, {os.cpu_count()} CPUs, load average {load:.2f}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as src:
        with open(os.path.join(src, "noop.py"), "w") as f:
            f.write("pass\n")
        with open(os.path.join(src, "burn.py"), "w") as f:
            f.write(BURN)
        noop = [sys.executable, "noop.py"]
        for _ in range(2):  # warm-up: page cache, the bwrap probe, cgroup parents
            _direct(noop, src), _sandboxed(box, noop, src)
        direct, boxed = [], []
        for _ in range(_RUNS.value):
            direct.append(_direct(noop, src))
            boxed.append(_sandboxed(box, noop, src))
        d, b = statistics.median(direct), statistics.median(boxed)
        print(f"\n| no-op Python script (median of {_RUNS.value}) | ms |\n|---|---:|")
        print(f"| direct (subprocess.run) | {d * 1e3:.1f} |\n| sandbox ({box.backend}) | {b * 1e3:.1f} |")
        print(f"| overhead per execution | {(b - d) * 1e3:.1f} |")

        if _JOBS.value:
            burn = [sys.executable, "burn.py", str(_CPU_S.value)]
            ideal = _JOBS.value * _CPU_S.value / _IN_FLIGHT.value
            rows = []
            for name, fn in (("direct", lambda _: _direct(burn, src)),
                             ("direct, each in its own session", lambda _: _direct(burn, src, own_session=True)),
                             (f"sandbox ({box.backend})", lambda _: _sandboxed(box, burn, src))):
                start = time.monotonic()
                with concurrent.futures.ThreadPoolExecutor(_IN_FLIGHT.value) as pool:
                    list(pool.map(fn, range(_JOBS.value)))
                rows.append((name, time.monotonic() - start))
            print(f"\n| {_JOBS.value} x {_CPU_S.value:g} s CPU-bound, {_IN_FLIGHT.value} in flight | wall s | "
                  f"/ ideal {ideal:g} s |\n|---|---:|---:|")
            for name, wall in rows:
                print(f"| {name} | {wall:.2f} | {wall / ideal:.2f}x |")


if __name__ == "__main__":
    app.run(main)
