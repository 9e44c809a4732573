"""Config ablations: a sweep of gin bindings, each point one run of a binary, launched through submitit.

    python -m tools.sweep --binary=experiments.speedrun --gin_file=configs/speedrun/smoke.gin \
        --sweep='make_optimizer.adam_lr=[1e-3,3e-3]' --seeds=2 --sweep_dir=runs/sweeps/lr

- **Points**: the product of the axes (`mode="zip"`: their zip), times `seeds` values of the seed binding.
  Each point is a workdir `sweep_dir/<name>` named from its bindings (`adam_lr=0.001,seed=1`): the
  binary runs with `--workdir` there, so its config, status and checkpoints live there, and its output
  goes to `<workdir>/run.log`.
- **The definition** is recorded in `sweep_dir/sweep.json`; another definition in the same folder is refused.
- **Reruns**: a run whose status.json says "finished" is skipped; any other is launched again and the
  binary resumes from its checkpoint.
- **Executors**: `submitit.LocalExecutor` (at most `max_parallel` runs in flight, the next submitted as
  one ends) or SLURM through `submitit.AutoExecutor` (one job array, `max_parallel` at a time).
- **Interruption**: SIGTERM / Ctrl-C stop submitting and send each running binary one SIGTERM (it saves a
  checkpoint and exits 143); the sweep waits for them (bounded), writes the table so far and exits 143 / 130.
- **Results**: `libs.train.sweep_report` writes results.md, results.csv and results.png.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import hashlib
import itertools
import json
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from absl import logging

from libs.train import metrics, rundir, sweep_report
from libs.train.errors import ConfigError, UserError
from libs.train.sweep_executors import (
    BinaryJob,
    LaunchOptions,
    LocalLauncher,
    SlurmLauncher,
)
from libs.train.sweep_report import display

__all__ = ["Axis", "LaunchOptions", "Run", "Sweep", "SweepSpec", "expand", "launch_sweep", "make_spec", "parse_axis"]

SWEEP_FILE = "sweep.json"
JOBS_FILE = "jobs.jsonl"  # one record per ended job: run, job id, wall time, exit code, status
RUN_LOG = "run.log"
EXIT_OK, EXIT_FAILED_RUNS, EXIT_USER_ERROR = 0, 1, 2
_BINDING = re.compile(r"^(?:[A-Za-z_][\w./-]*/)?[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")  # [scope/]Name.param
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,-]+")
_MAX_NAME = 150
_STOPPED_CODES = (128 + signal.SIGTERM, 128 + signal.SIGINT, -signal.SIGTERM, -signal.SIGINT)


# --- the definition ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Axis:
    """One swept gin parameter and the values it takes (Python / gin literals)."""

    binding: str  # "[scope/]Name.param"
    values: tuple[Any, ...]

    @property
    def param(self) -> str:
        return self.binding.rsplit(".", 1)[1]

    def texts(self) -> list[str]:
        """The values as gin literals (what the binary receives and sweep.json records)."""
        return [gin_literal(v) for v in self.values]


def gin_literal(value: Any) -> str:
    return repr(value)


def parse_axis(text: str) -> Axis:
    """`Name.param=[v1, v2, ...]` -> Axis; anything else is a one-line ConfigError."""
    usage = f"--sweep={text!r}: expected 'Name.param=[v1, v2, ...]'"
    binding, sep, rest = text.partition("=")
    binding = binding.strip()
    if not sep or not _BINDING.match(binding):
        raise ConfigError(usage)
    try:
        values = ast.literal_eval(rest.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ConfigError(f"{usage}; {rest.strip()!r} is not a list of literals") from None
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"{usage}; the values must be a non-empty [list]")
    texts = [gin_literal(v) for v in values]
    repeated = sorted({t for t in texts if texts.count(t) > 1})
    if repeated:
        raise ConfigError(f"--sweep={text!r}: {', '.join(repeated)} appears more than once")
    return Axis(binding, tuple(values))


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What defines a sweep (recorded in sweep.json): the binary, its base config and the axes."""

    binary: str
    gin_files: tuple[str, ...]
    gin_bindings: tuple[str, ...]
    axes: tuple[Axis, ...]
    mode: str = "product"  # "product" | "zip"
    seeds: int = 0  # > 0: a seed axis 0..seeds-1 on `seed_binding`, crossed with the rest in either mode
    seed_binding: str = "train.seed"

    def all_axes(self) -> tuple[Axis, ...]:
        """The swept axes, then the seed axis (if any)."""
        return self.axes + ((Axis(self.seed_binding, tuple(range(self.seeds))),) if self.seeds else ())

    def to_json(self) -> dict[str, Any]:
        return {"binary": self.binary, "gin_files": list(self.gin_files), "gin_bindings": list(self.gin_bindings),
                "mode": self.mode, "axes": [{"binding": a.binding, "values": a.texts()} for a in self.axes],
                "seeds": self.seeds, "seed_binding": self.seed_binding}


def make_spec(binary: str, gin_files: Sequence[str], gin_bindings: Sequence[str], sweeps: Sequence[str],
              mode: str = "product", seeds: int = 0, seed_binding: str = "train.seed") -> SweepSpec:
    """Parses and checks a sweep definition (ConfigError names the culprit)."""
    if not re.match(r"^[A-Za-z_][\w.]*$", binary or ""):
        raise ConfigError(f"--binary={binary!r}: expected a module path such as experiments.speedrun")
    if mode not in ("product", "zip"):
        raise ConfigError(f"--mode={mode!r}: expected product or zip")
    if seeds < 0:
        raise ConfigError(f"--seeds={seeds}: must be >= 0")
    if not _BINDING.match(seed_binding):
        raise ConfigError(f"--seed_binding={seed_binding!r}: expected Name.param")
    axes = tuple(parse_axis(s) for s in sweeps)
    if not axes and not seeds:
        raise ConfigError("nothing to sweep: give --sweep='Name.param=[v1, v2, ...]' (repeatable) or --seeds=N")
    bindings = [a.binding for a in axes] + ([seed_binding] if seeds else [])
    repeated = sorted({b for b in bindings if bindings.count(b) > 1})
    if repeated:
        raise ConfigError(f"{repeated[0]} is swept twice (an axis{' and --seeds' if seeds else ''})")
    if mode == "zip" and len({len(a.values) for a in axes}) > 1:
        lengths = ", ".join(f"{a.binding} has {len(a.values)}" for a in axes)
        raise ConfigError(f"--mode=zip needs axes of equal length: {lengths}")
    return SweepSpec(binary, tuple(gin_files), tuple(gin_bindings), axes, mode, seeds, seed_binding)


# --- the points -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
    """One point of the sweep: its name (= workdir basename) and its bindings, in axis order."""

    name: str
    values: tuple[tuple[Axis, Any], ...]

    def bindings(self) -> list[str]:
        return [f"{axis.binding} = {gin_literal(value)}" for axis, value in self.values]


def points(spec: SweepSpec) -> list[tuple[Any, ...]]:
    """The value tuples of every run, one value per axis of `spec.all_axes()`."""
    if spec.mode == "zip" and spec.axes:
        base = list(zip(*(a.values for a in spec.axes)))
    else:
        base = list(itertools.product(*(a.values for a in spec.axes)))
    if not spec.seeds:
        return base
    return [p + (seed,) for p in base for seed in range(spec.seeds)]


def axis_labels(axes: Sequence[Axis]) -> list[str]:
    """Short column names: the parameter, or the whole binding where two axes share a parameter name."""
    params = [a.param for a in axes]
    return [a.param if params.count(a.param) == 1 else a.binding.replace("/", ".") for a in axes]


def run_name(labels: Sequence[str], values: Sequence[Any]) -> str:
    """A readable, filesystem-safe name such as `muon_lr=0.02,num_layers=4,seed=1` (long ones end in a hash)."""
    text = ",".join(f"{label}={display(v)}" for label, v in zip(labels, values))
    name = _UNSAFE.sub("_", text).strip("._-") or "run"
    if name != text or len(name) > _MAX_NAME:  # Sanitised or cut: a hash keeps distinct points distinct.
        name = f"{name[:_MAX_NAME]}-{_digest(text)}"
    return name


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def expand(spec: SweepSpec) -> list[Run]:
    """Every run of the sweep, in a stable order, with unique names."""
    axes = spec.all_axes()
    labels = axis_labels(axes)
    runs = [Run(run_name(labels, p), tuple(zip(axes, p))) for p in points(spec)]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):  # Not expected (values are distinct per axis); never silently merge.
        raise ConfigError(f"two runs would share the folder {next(n for n in names if names.count(n) > 1)}")
    return runs


def record_definition(sweep_dir: str, spec: SweepSpec) -> None:
    """Writes sweep.json (the definition, and the runs' names for reading), or checks that the one there
    has the same definition."""
    path = os.path.join(sweep_dir, SWEEP_FILE)
    wanted = spec.to_json()
    if os.path.exists(path):
        try:
            with open(path) as f:
                recorded = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"{path} is unreadable ({e}); fix or remove it") from None
        for key, value in wanted.items():
            if recorded.get(key) != value:
                raise UserError(f"{sweep_dir} holds another sweep: {key} was {_brief(recorded.get(key))}, now "
                                f"{_brief(value)}; use another --sweep_dir or the same definition")
        return
    try:
        os.makedirs(sweep_dir, exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump({**wanted, "runs": [r.name for r in expand(spec)],
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, f, indent=1)
        os.replace(path + ".tmp", path)
    except OSError as e:
        raise UserError(f"cannot use --sweep_dir={sweep_dir}: {e.strerror or e}") from None


def _brief(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict) and "binding" in value[0]:
        return "; ".join(f"{a['binding']}=[{', '.join(a['values'])}]" for a in value) or "none"
    return json.dumps(value)


def binary_command(spec: SweepSpec, run: Run, workdir: str) -> tuple[str, ...]:
    return (sys.executable, "-m", spec.binary, *(f"--gin_file={f}" for f in spec.gin_files),
            *(f"--gin_bindings={b}" for b in (*spec.gin_bindings, *run.bindings())), f"--workdir={workdir}")


# --- the sweep --------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Active:
    run: Run
    handle: Any
    started: float


class Sweep:
    """Launches the unfinished runs of a sweep, follows them, and records how each job ended."""

    def __init__(self, spec: SweepSpec, sweep_dir: str, options: LaunchOptions):
        self.spec, self.options = spec, options
        self.sweep_dir = os.path.abspath(sweep_dir)
        self.runs = expand(spec)
        self.outcomes: dict[str, str] = {}  # how this invocation's jobs ended: finished / interrupted / failed
        self.history = rundir.read_jsonl(os.path.join(self.sweep_dir, JOBS_FILE))
        folder = os.path.join(self.sweep_dir, "submitit")  # job pickles and submitit's own logs
        if options.executor == "local":
            self.launcher: Any = LocalLauncher(folder, options)
        elif options.executor == "slurm":
            self.launcher = SlurmLauncher(folder, options, f"sweep_{os.path.basename(self.sweep_dir)}")
        else:
            raise ConfigError(f"--executor={options.executor!r}: expected local or slurm")

    def workdir(self, run: Run) -> str:
        return os.path.join(self.sweep_dir, run.name)

    def status(self, run: Run) -> str | None:
        record = rundir.RunDir(self.workdir(run)).read_status() if os.path.isdir(self.workdir(run)) else None
        return record.get("status") if record else None

    def job(self, run: Run) -> BinaryJob:
        workdir = self.workdir(run)
        os.makedirs(workdir, exist_ok=True)
        return BinaryJob(binary_command(self.spec, run, workdir), os.getcwd(), os.path.join(workdir, RUN_LOG),
                         own_session=self.launcher.own_session, forward=self.launcher.forward)

    def run(self) -> bool:
        """Runs what is left; True when every run has finished. Stops early on SIGTERM / Ctrl-C."""
        todo = [r for r in self.runs if self.status(r) != "finished"]
        skipped = len(self.runs) - len(todo)
        if skipped:
            logging.info("sweep: %d of %d runs already finished; skipped", skipped, len(self.runs))
        pending = collections.deque(todo)
        active: list[_Active] = []
        last_counts, last_time = "", 0.0
        while (pending or active) and not rundir.stop_requested():
            take = min(len(pending), self.launcher.capacity(len(active)))
            if take > 0:
                batch = [(r, self.job(r)) for r in (pending.popleft() for _ in range(take))]
                now = time.time()
                for (r, _), handle in zip(batch, self.launcher.submit(batch)):
                    active.append(_Active(r, handle, now))
                    logging.info("sweep: launched %s (job %s)", r.name, getattr(handle, "job_id", "?"))
            for a in [a for a in active if _done(a.handle)]:
                active.remove(a)
                self._ended(a)
            line = self.progress(len(pending), active)
            counts = line.split(" | ")[0]
            if counts != last_counts or time.time() - last_time >= self.options.progress_every_s:
                logging.info("%s", line)
                last_counts, last_time = counts, time.time()
            if pending or active:
                time.sleep(self.options.poll_s)
        if rundir.stop_requested():
            self._stop(active)
        return all(self.status(r) == "finished" for r in self.runs)

    def _stop(self, active: list[_Active]) -> None:
        logging.warning("sweep: stopping %d running job(s); each saves a checkpoint", len(active))
        for a in active:
            self.launcher.stop(a.handle)
        deadline = time.time() + self.options.stop_timeout_s
        killed = False
        while active:
            for a in [a for a in active if _done(a.handle)]:
                active.remove(a)
                self._ended(a)
            if active and time.time() > deadline and not killed:
                logging.warning("sweep: %s did not stop within %.0f s; killing", ", ".join(a.run.name for a in active),
                                self.options.stop_timeout_s)
                for a in active:
                    self.launcher.kill(self.workdir(a.run))
                deadline, killed = time.time() + 30, True
            elif active and killed and time.time() > deadline:
                break  # Nothing more can be done from here; the table says what is known.
            time.sleep(min(self.options.poll_s, 0.2))

    def _ended(self, a: _Active) -> None:
        self.launcher.release(a.handle)
        code = _exit_code(a.handle, wait_for_output=self.options.executor != "local")
        status = self.status(a.run)
        if status == "finished":
            outcome = "finished"
        elif status == "interrupted" or code in _STOPPED_CODES:  # (a binary still starting up just ends)
            outcome = "interrupted"
        else:
            outcome = "failed"
        self.outcomes[a.run.name] = outcome
        record = {"run": a.run.name, "job_id": str(getattr(a.handle, "job_id", "")), "started": a.started,
                  "wall_s": time.time() - a.started, "exit_code": code, "status": outcome}
        self.history.append(record)
        rundir.append_jsonl(os.path.join(self.sweep_dir, JOBS_FILE), record)
        log = logging.info if outcome == "finished" else logging.warning
        log("sweep: %s %s after %s (exit %s)", a.run.name, outcome, metrics.format_duration(record["wall_s"]), code)

    def progress(self, n_pending: int, active: list[_Active]) -> str:
        """`sweep: 2/8 done, 2 running, 1 failed, 3 pending | ETA 4m10s`."""
        running = {a.run.name for a in active}
        done = sum(r.name not in running and self.status(r) == "finished" for r in self.runs)
        queued = sum(_state(a.handle) == "PENDING" for a in active)  # SLURM array tasks not yet started
        failed = sum(o != "finished" for o in self.outcomes.values())
        durations = [h["wall_s"] for h in self.history if h.get("status") == "finished"]
        eta = "?"
        if durations and (n_pending or active):
            mean = sum(durations) / len(durations)
            now = time.time()
            work = n_pending * mean + sum(max(mean - (now - a.started), 0.0) for a in active)
            eta = metrics.format_duration(work / max(1, min(self.options.max_parallel, n_pending + len(active))))
        return (f"sweep: {done}/{len(self.runs)} done, {len(active) - queued} running, {failed} failed, "
                f"{n_pending + queued} pending | ETA {eta}")

    def report(self, metric: str, maximize: bool) -> sweep_report.Report:
        """Writes results.md / .csv / .png (the seed axis is not drawn when there are others)."""
        axes = self.spec.all_axes()
        runs = [(r.name, tuple(v for _, v in r.values)) for r in self.runs]
        plotted = range(len(self.spec.axes)) if self.spec.axes else range(len(axes))
        return sweep_report.write_report(self.sweep_dir, runs, axis_labels(axes), [a.values for a in axes],
                                         self.outcomes, self.wall_times(), metric, maximize, plotted)

    def wall_times(self) -> dict[str, float]:
        """Each run's job wall time, summed over every launch."""
        totals: dict[str, float] = collections.defaultdict(float)
        for h in self.history:
            totals[h["run"]] += float(h.get("wall_s") or 0.0)
        return dict(totals)


def _done(handle: Any) -> bool:
    try:
        return handle.done()
    except Exception:  # noqa: BLE001 - an unreadable job state counts as ended
        return True


def _state(handle: Any) -> str:
    try:
        return str(handle.state)
    except Exception:  # noqa: BLE001 - only shown in the progress line
        return "UNKNOWN"


def _exit_code(handle: Any, wait_for_output: bool) -> int | None:
    """What the job returned (the binary's exit code); None when the job process itself died.

    submitit waits 15 s for a missing result file (for slow shared filesystems); local ones need not.
    """
    paths = getattr(handle, "paths", None)
    if not wait_for_output and paths is not None and not paths.result_pickle.exists():
        return None
    try:
        code = handle.result()
    except Exception:  # noqa: BLE001 - the job process itself died; the run status says more
        return None
    return code if isinstance(code, int) else None


# --- entry point ------------------------------------------------------------------------------------


def launch_sweep(sweep_dir: str, options: LaunchOptions, metric: str = "val_loss", maximize: bool = False,
                 **spec_args: Any) -> int:
    """Runs a sweep end to end and writes its table; returns the process exit code.

    `spec_args` are `make_spec`'s arguments. 0: every run finished; 1: some did not (the table says which);
    2: bad input (one line on stderr); 128 + signal after SIGTERM / Ctrl-C (rerun to resume).
    """
    try:
        for flag, value, low in (("max_parallel", options.max_parallel, 1), ("timeout_min", options.timeout_min, 1),
                                 ("gpus_per_run", options.gpus_per_run, 0), ("cpus_per_run", options.cpus_per_run, 0)):
            if value < low:
                raise ConfigError(f"--{flag}={value}: must be >= {low}")
        if not sweep_dir:
            raise ConfigError("--sweep_dir is required (e.g. runs/sweeps/my_ablation)")
        spec = make_spec(**spec_args)
        sweep = Sweep(spec, sweep_dir, options)
        record_definition(sweep.sweep_dir, spec)
    except (ConfigError, UserError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    logging.info("sweep: %d runs of %s in %s (%s executor, %d at a time)", len(sweep.runs), spec.binary,
                 sweep.sweep_dir, options.executor, options.max_parallel)
    rundir.reset_stop()
    with rundir.stop_on_signals():
        all_finished = sweep.run()
    report = sweep.report(metric, maximize)
    print(f"results: {report.table_path}", flush=True)
    print(f"best: {report.best or f'none (no finished run reports {metric})'}", flush=True)
    if rundir.stop_requested():
        print(f"interrupted: running jobs saved and stopped; rerun the same command to resume "
              f"({report.counts})", file=sys.stderr, flush=True)
        return 128 + rundir.stop_signal()
    if not all_finished:
        print(f"error: not every run finished ({report.counts}); see {report.table_path}, rerun to retry",
              file=sys.stderr, flush=True)
        return EXIT_FAILED_RUNS
    return EXIT_OK
