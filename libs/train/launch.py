"""One way to start a binary: strict gin parsing, the run directory, one-line errors.

A binary defines `--gin_file`, `--gin_bindings` and `--workdir` and hands them to
`run`, which parses gin strictly (unknown configurables, unknown parameters and
values of the wrong type are errors), refuses anything key-like in the config
before any file is written, takes the workdir (`libs.train.rundir`: one process,
a status record), writes the effective config to `<workdir>/config.gin` and calls
the library entry point with the workdir. Errors a user can cause end in one line
on stderr and exit code 2; SIGTERM / Ctrl-C end a run cleanly with 143 / 130.
"""

from __future__ import annotations

import inspect
import logging as std_logging
import os
import re
import sys
import tokenize
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

import gin

from libs.train import rundir
from libs.train.errors import ConfigError, UserError

__all__ = ["ConfigError", "UserError", "parse_config", "run", "save_config"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXIT_USER_ERROR = 2
RESUMABLE = ("incomplete", "budget")  # result statuses that leave work for a rerun
# Things that look like credentials: provider key prefixes, bearer tokens, long unbroken secrets.
_SECRET = re.compile(r"(?<![A-Za-z0-9])(sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{30,}|"
                     r"xox[abp]-[0-9A-Za-z-]{10,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{30,}|Bearer\s+\S{16,})")


def parse_config(gin_files: Sequence[str], gin_bindings: Sequence[str]) -> None:
    """Parses gin files and bindings strictly and type-checks every bound value."""
    gin.clear_config()
    gin.add_config_file_search_path(REPO_ROOT)
    for path in gin_files:
        if _resolve(path) is None:
            raise ConfigError(f"gin file not found: {path}")
        _check_includes(path)
    parse_errors = (ValueError, KeyError, SyntaxError, TypeError, ImportError, OSError, tokenize.TokenError)
    try:
        gin.parse_config_files_and_bindings(list(gin_files), [], skip_unknown=False, finalize_config=False)
    except parse_errors as e:
        raise ConfigError(_describe(e)) from e
    for binding in gin_bindings:  # One at a time, so an error can name its binding.
        try:
            gin.parse_config(binding, skip_unknown=False)
        except parse_errors as e:
            raise ConfigError(f"--gin_bindings={binding!r}: {_describe(e)}") from e
    check_types()
    gin.finalize()


_INCLUDE = re.compile(r"""^\s*include\s+['"]([^'"]+)['"]""", re.M)


def _resolve(path: str) -> str | None:
    for candidate in (path, os.path.join(REPO_ROOT, path)):
        if os.path.exists(candidate):
            return candidate
    return None


def _check_includes(path: str, seen: set[str] | None = None) -> None:
    """Names a missing `include` and the file that asks for it (gin's own error names neither)."""
    seen = set() if seen is None else seen
    resolved = _resolve(path)
    if resolved is None or resolved in seen:
        return
    seen.add(resolved)
    with open(resolved) as f:
        text = f.read()
    for included in _INCLUDE.findall(text):
        if _resolve(included) is None:
            raise ConfigError(f"{path} includes {included}, which does not exist")
        _check_includes(included, seen)


def check_types() -> None:
    """Checks each bound literal against the type hints of its configurable."""
    registry = gin.config._REGISTRY  # pylint: disable=protected-access
    for (scope, selector), params in gin.config._CONFIG.items():  # pylint: disable=protected-access
        configurable = registry.get_match(selector)
        if configurable is None:
            continue
        hints = _type_hints(configurable.wrapped)
        for name, value in params.items():
            if name not in hints or _is_reference(value):
                continue
            where = f"{scope}/{selector}" if scope else selector
            hint, bounds = _split_annotated(hints[name])
            if not _matches(value, hint):
                raise ConfigError(
                    f"{where}.{name} = {value!r}: expected {_type_name(hint)}, "
                    f"got {type(value).__name__}"
                )
            for bound in bounds:
                if not bound.ok(value):
                    raise ConfigError(f"{where}.{name} = {value!r}: must be {bound.text}")


def save_config(workdir: str) -> str:
    """Writes the effective gin config to `workdir/config.gin`; returns the path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.gin")
    with open(path, "w") as f:
        f.write(gin.config_str())
    return path


def default_workdir(gin_files: Sequence[str]) -> str:
    name = os.path.splitext(os.path.basename(gin_files[-1]))[0] if gin_files else "default"
    return os.path.join(REPO_ROOT, "runs", name)


def check_no_secrets() -> None:
    """Refuses a config that holds something key-like (it would reach config.gin and status.json)."""
    for line in gin.config_str().splitlines():
        match = _SECRET.search(line)
        if match:
            where = line.split("=", 1)[0].strip() or "a binding"
            raise ConfigError(f"{where} holds what looks like a secret ({match.group(0)[:4]}...); pass keys "
                              "through environment variables (e.g. LLMConfig.api_key_env = 'OPENAI_API_KEY')")


def run(
    main: Callable[[str], Any],
    gin_files: Sequence[str],
    gin_bindings: Sequence[str],
    workdir: str | None,
    user_errors: tuple[type[BaseException], ...] = (),
    topology: tuple[str | None, int | None, int | None] = (None, None, None),
) -> Any:
    """Parses the config, joins the other processes, takes the workdir, saves the config, calls `main(workdir)`.

    `ConfigError`, `UserError` and `user_errors` end the process with one line on
    stderr and exit code 2 instead of a traceback. A finished run with the same
    config is not run again: its result is reported. SIGTERM / SIGINT ask `main`
    to stop (`rundir.stop_requested()`); the run is then recorded as interrupted
    and the process exits with 128 + the signal number.

    Multi-process runs (`libs.train.distributed`: `topology` = a binary's explicit (coordinator address,
    process count, process id) flags, else the environment)
    are joined before anything touches devices. Process 0 logs and writes the config and status; the
    others hold their own lock in the same workdir (`.lock.<id>`) and log warnings only. A process that
    learns that another one failed ends with one line and exit code 1.
    """
    from libs.train import distributed  # pylint: disable=import-outside-toplevel  (it imports this module)

    quiet_library_logs()
    run_dir = None
    try:
        parse_config(gin_files, gin_bindings)
        check_no_secrets()
        distributed.initialize(distributed.detect(*topology))
        if not distributed.is_leader():
            from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel

            absl_logging.set_verbosity(absl_logging.WARNING)
        workdir = workdir or default_workdir(gin_files)
        run_dir = rundir.RunDir(workdir)
        with run_dir.lock(process_index=distributed.process_index()):
            return _run_locked(main, run_dir, workdir, distributed)
    except distributed.PeerFailure as e:
        _exit_peer_failure(_first_line(e))
    except (ConfigError, UserError, *user_errors) as e:
        print(f"error: {_first_line(e)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    except Exception as e:  # pylint: disable=broad-except
        line = distributed.describe_peer_failure(e)
        if line is None:
            raise
        _exit_peer_failure(line)


def _exit_peer_failure(line: str) -> None:
    """One line and exit 1 at once: atexit's distributed shutdown would wait for the failed peer."""
    print(f"error: {line}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)  # pylint: disable=protected-access


def _run_locked(main: Callable[[str], Any], run_dir: rundir.RunDir, workdir: str, distributed: Any) -> Any:
    config = gin.config_str()
    leader = distributed.is_leader()
    previous = run_dir.read_status()
    done = previous and previous.get("status") == "finished" and previous.get("config") == config
    if distributed.leader_value([int(bool(done))]) == [1]:  # every process follows process 0's reading
        if leader:
            print(f"already finished ({os.path.join(workdir, rundir.STATUS_FILE)}): "
                  f"{rundir.one_line(previous.get('result'))}", flush=True)
        return previous.get("result") if previous else None
    write_status = run_dir.write_status if leader else (lambda *a, **k: None)
    if leader:
        save_config(workdir)
    write_status("running", config=config)
    rundir.reset_stop()
    try:
        with rundir.stop_on_signals():
            result = main(workdir)
    except BaseException as e:
        write_status("failed", config=config, error=_first_line(e))
        raise
    completed = isinstance(result, dict) and result.get("status") in ("complete", "target")
    if rundir.stop_requested() and not completed:  # a signal after the last step changes nothing
        signum = rundir.stop_signal()
        write_status("interrupted", config=config, result=result)
        print(f"interrupted: saved; rerun the same command to resume ({rundir.one_line(result)})", file=sys.stderr,
              flush=True)
        sys.exit(128 + signum)
    # A run that returns with work left (games unfinished, a budget spent) is not "finished": a rerun goes on.
    left = result.get("status") if isinstance(result, dict) and result.get("status") in RESUMABLE else None
    write_status(left or "finished", config=config, result=result)
    return result


class _LibraryInfoFilter(std_logging.Filter):
    """Drops INFO lines from orbax, jax and nle internals; warnings and errors pass."""

    NOISY = (os.sep + "orbax" + os.sep, os.sep + "jax" + os.sep, os.sep + "absl" + os.sep, os.sep + "nle" + os.sep)

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or not any(n in record.pathname for n in self.NOISY)


def quiet_library_logs() -> None:
    """Keeps the console to this project's progress lines (idempotent)."""
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel

    handler = absl_logging.get_absl_handler()
    if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
        handler.addFilter(_LibraryInfoFilter())


# --- helpers -------------------------------------------------------------------


def _describe(e: BaseException) -> str:
    if isinstance(e, tokenize.TokenError):
        return "unbalanced brackets or an unterminated value"
    if isinstance(e, SyntaxError):
        where = f"{e.filename}:{e.lineno}" if e.filename else f"line {e.lineno}"
        return f"{e.msg} ({where})"
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


class Bound:
    """A parse-time check on a configurable's parameter: `x: Annotated[int, POSITIVE]`."""

    def __init__(self, text: str, ok: Callable[[Any], bool]):
        self.text, self.ok = text, ok


POSITIVE = Bound("positive", lambda v: v is None or v > 0)
NON_NEGATIVE = Bound(">= 0", lambda v: v is None or v >= 0)


def _split_annotated(hint: Any) -> tuple[Any, list[Bound]]:
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        return base, [e for e in extras if isinstance(e, Bound)]
    return hint, []


def _type_hints(fn: Any) -> dict[str, Any]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # pylint: disable=broad-except
        return {}


def _is_reference(value: Any) -> bool:
    return isinstance(value, gin.config.ConfigurableReference) or type(value).__name__ in (
        "ConfigurableReference",
        "MacroReference",
    )


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (tuple, list, Sequence, typing.Sequence) or hint in (tuple, list):
        return isinstance(value, (tuple, list))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # Callables, protocols and other hints are not checked.


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
