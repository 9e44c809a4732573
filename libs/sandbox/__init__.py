"""The only code that runs generated code: `Sandbox(...).run(argv, files_from, ...)` -> `Execution`."""

from __future__ import annotations

from libs.sandbox.sandbox import Execution, Limits, Sandbox

__all__ = ["Execution", "Limits", "Sandbox"]
