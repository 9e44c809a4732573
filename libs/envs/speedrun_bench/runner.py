"""Trains a benchmark workspace with the project's trainer: the evaluation's (and train.py's) entry point.

    python -m libs.envs.speedrun_bench.runner --workspace=DIR --workdir=DIR/run [--proxy=proxy.json | --packed]

The workspace's gpt.py, losses.py and optim.py are installed in place of the project's modules of the same
names before anything imports them; the config is the workspace's record.gin followed by the proxy's fixed
settings (`Proxy.bindings`), so a workspace cannot move the target, the data or the validation. The run
follows the launcher's run-directory discipline (`libs.train.launch.run`): one line and exit code 2 for a bad
config, SIGTERM saves and exits. A module is a plain argparse script, not an absl binary: it is run by the
evaluator and by a workspace's train.py, never by a researcher's launch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence

# Project module -> the workspace file that replaces it (losses first: gpt imports it).
MODULES = (("libs.models.losses", "losses.py"), ("libs.models.gpt", "gpt.py"), ("libs.train.optim", "optim.py"))


def install(workspace: str) -> None:
    """Imports the workspace's files as the project's modules (must run before the trainer is imported)."""
    for name, file in MODULES:
        if name in sys.modules:
            raise RuntimeError(f"{name} was imported before the workspace could replace it")
        path = os.path.join(workspace, file)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        package, _, attr = name.rpartition(".")
        setattr(importlib.import_module(package), attr, module)
        spec.loader.exec_module(module)


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description="Trains a speedrun-benchmark workspace to the proxy target.")
    parser.add_argument("--workspace", required=True, help="folder with gpt.py, losses.py, optim.py, record.gin")
    parser.add_argument("--workdir", default=None, help="run directory (default: WORKSPACE/run)")
    parser.add_argument("--proxy", default=None, help="proxy settings (JSON file; default: the default Proxy)")
    parser.add_argument("--packed", action="store_true", help="the default Proxy at its packed scale (records 12+)")
    args = parser.parse_args(list(argv)[1:])
    workspace = os.path.abspath(args.workspace)
    from libs.envs.speedrun_bench.proxy import Proxy  # pylint: disable=import-outside-toplevel  (no model import)

    proxy = Proxy().packed() if args.packed else Proxy()
    if args.proxy:
        with open(args.proxy) as f:
            proxy = Proxy(**json.load(f))
    try:
        install(workspace)
    except Exception as e:  # noqa: BLE001 - the workspace's own code failed to import
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"speedrun workspace {workspace}: importing it failed: {type(e).__name__}: {first}", file=sys.stderr)
        sys.exit(2)
    from libs.train import launch, trainer  # pylint: disable=import-outside-toplevel  (after install)

    launch.run(trainer.train, [os.path.join(workspace, "record.gin")], proxy.bindings(),
               args.workdir or os.path.join(workspace, "run"), user_errors=(trainer.TrainingDiverged,))


if __name__ == "__main__":
    main(sys.argv)
