"""One way to start a binary: strict gin parsing, the saved config, one-line errors.

A binary defines `--gin_file`, `--gin_bindings` and `--workdir` and hands them to
`run`, which parses gin strictly (unknown configurables, unknown parameters and
values of the wrong type are errors), writes the effective config to
`<workdir>/config.gin` and calls the library entry point with the workdir.
Errors a user can cause end in one line on stderr and exit code 2.
"""

from __future__ import annotations

import inspect
import logging as std_logging
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

import gin

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXIT_USER_ERROR = 2


class ConfigError(ValueError):
    """A configuration the user wrote is wrong; the message names the culprit."""


class UserError(ValueError):
    """Bad input a user can fix (data files, paths); reported in one line."""


def parse_config(gin_files: Sequence[str], gin_bindings: Sequence[str]) -> None:
    """Parses gin files and bindings strictly and type-checks every bound value."""
    gin.clear_config()
    gin.add_config_file_search_path(REPO_ROOT)
    for path in gin_files:
        if not os.path.exists(path) and not os.path.exists(os.path.join(REPO_ROOT, path)):
            raise ConfigError(f"gin file not found: {path}")
    parse_errors = (ValueError, KeyError, SyntaxError, TypeError, ImportError, OSError)
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
            if not _matches(value, hints[name]):
                where = f"{scope}/{selector}" if scope else selector
                raise ConfigError(
                    f"{where}.{name} = {value!r}: expected {_type_name(hints[name])}, "
                    f"got {type(value).__name__}"
                )


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


def run(
    main: Callable[[str], Any],
    gin_files: Sequence[str],
    gin_bindings: Sequence[str],
    workdir: str | None,
    user_errors: tuple[type[BaseException], ...] = (),
) -> Any:
    """Parses the config, saves it to the workdir and calls `main(workdir)`.

    `ConfigError`, `UserError` and `user_errors` end the process with one line on
    stderr and exit code 2 instead of a traceback.
    """
    quiet_library_logs()
    try:
        parse_config(gin_files, gin_bindings)
        workdir = workdir or default_workdir(gin_files)
        save_config(workdir)
        return main(workdir)
    except (ConfigError, UserError, *user_errors) as e:
        print(f"error: {_first_line(e)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)


class _LibraryInfoFilter(std_logging.Filter):
    """Drops INFO lines from orbax and jax internals; warnings and errors pass."""

    NOISY = (os.sep + "orbax" + os.sep, os.sep + "jax" + os.sep, os.sep + "absl" + os.sep)

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
    if isinstance(e, SyntaxError):
        where = f"{e.filename}:{e.lineno}" if e.filename else f"line {e.lineno}"
        return f"{e.msg} ({where})"
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def _type_hints(fn: Any) -> dict[str, Any]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        return typing.get_type_hints(target)
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
