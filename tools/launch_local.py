r"""Starts one command as N processes of one multi-process JAX run on this machine.

    python -m tools.launch_local --processes=2 -- python -m experiments.speedrun \
        --gin_file=configs/speedrun/smoke.gin --workdir=runs/smoke_2p

Each process gets JAX_COORDINATOR_ADDRESS (127.0.0.1 and a free port), JAX_NUM_PROCESSES and
JAX_PROCESS_ID (read by `libs.train.distributed`), and --devices_per_process fake CPU devices if asked.
Process 0 prints to this terminal; every process's output also goes to <--logs>/process_<i>.log.
SIGTERM / Ctrl-C are passed on to every process (they save and stop together). When one process
fails, the others get --grace_s seconds to notice and end on their own, then are killed. The exit code
is the first non-zero one, or 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import app, flags

EXIT_USER_ERROR = 2

_PROCESSES = flags.DEFINE_integer("processes", 2, "Number of processes.", lower_bound=1)
_PORT = flags.DEFINE_integer("port", 0, "Coordinator port on 127.0.0.1 (0: a free one).", lower_bound=0)
_DEVICES = flags.DEFINE_integer("devices_per_process", 0, "Fake CPU devices per process (XLA "
                                "--xla_force_host_platform_device_count; 0: leave as is).", lower_bound=0)
_LOG_DIR = flags.DEFINE_string("logs", "runs/launch_local", "Where each process's log goes.")
_GRACE = flags.DEFINE_float("grace_s", 120.0, "After one process fails, how long the others may take to "
                            "end on their own before they are killed.", lower_bound=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(index: int, count: int, port: int, devices: int) -> dict[str, str]:
    env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(count),
               JAX_PROCESS_ID=str(index), PYTHONUNBUFFERED="1")
    if devices:
        flags_text = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                              if not f.startswith("--xla_force_host_platform_device_count"))
        env["XLA_FLAGS"] = f"{flags_text} --xla_force_host_platform_device_count={devices}".strip()
    return env


def _pump(stream, log_path: str, echo: bool) -> None:
    with open(log_path, "ab") as log:
        for line in iter(stream.readline, b""):
            log.write(line)
            log.flush()
            if echo:
                sys.stdout.buffer.write(line)
                sys.stdout.flush()


def launch(command: list[str], count: int, port: int, devices: int, log_dir: str, grace_s: float) -> int:
    """Runs `command` as `count` processes; returns the exit code (the first non-zero one, else 0)."""
    os.makedirs(log_dir, exist_ok=True)
    port = port or free_port()
    procs, pumps = [], []
    for index in range(count):
        try:
            proc = subprocess.Popen(command, env=process_env(index, count, port, devices),  # pylint: disable=consider-using-with
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as e:
            for started in procs:
                started.kill()
            print(f"error: cannot start {command[0]!r}: {e.strerror or e}", file=sys.stderr, flush=True)
            return EXIT_USER_ERROR
        pump = threading.Thread(target=_pump, args=(proc.stdout, os.path.join(log_dir, f"process_{index}.log"),
                                                    index == 0), daemon=True)
        pump.start()
        procs.append(proc)
        pumps.append(pump)
    print(f"launch_local: {count} processes (coordinator 127.0.0.1:{port}); logs in {log_dir}/process_<i>.log",
          file=sys.stderr, flush=True)

    def forward(signum, frame):
        del frame
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, forward)
    first_failure, failed_at = 0, None
    while any(p.poll() is None for p in procs):
        for index, proc in enumerate(procs):
            code = proc.poll()
            if code and not first_failure:
                first_failure, failed_at = code, time.monotonic()
                print(f"launch_local: process {index} exited with {code}; the others have {grace_s:.0f} s to end",
                      file=sys.stderr, flush=True)
        if failed_at is not None and time.monotonic() - failed_at > grace_s:
            for index, proc in enumerate(procs):
                if proc.poll() is None:
                    print(f"launch_local: killing process {index}", file=sys.stderr, flush=True)
                    proc.kill()
        time.sleep(0.2)
    for pump in pumps:
        pump.join(timeout=5)
    codes = [p.returncode for p in procs]
    return first_failure or next((c for c in codes if c), 0)


def main(argv):
    command = argv[1:]
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("error: give the command after --, e.g. -- python -m experiments.speedrun ...", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(launch(command, _PROCESSES.value, _PORT.value, _DEVICES.value, _LOG_DIR.value, _GRACE.value))


if __name__ == "__main__":
    app.run(main)
