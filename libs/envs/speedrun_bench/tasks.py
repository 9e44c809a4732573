"""The benchmark's tasks as research-task folders, and the proxy scale they are measured at.

A task is one ladder step (record i -> record i+1) at one hint level, named
`speedrun.<record i>__<record i+1>.hint_<levels>` (e.g. `speedrun.record_03__record_04.hint_1+2`). `load_task`
writes its folder (`libs.envs.research_tasks` format) under the data dir, keyed by a hash of its content,
and loads it, so the research agent's executor, sandbox, operators and policies run it like any task:

- `starter/`: record i's workspace (`workspace.build_workspace`), the baseline;
- `description.md`: the task, the files, the fixed evaluation, then the hint text;
- `evaluate.py` + `proxy.json`: trains the submission to the proxy target (`evaluation`);
- `prepare.py`: the embedded corpus's shards as the task's public data (./data).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

from libs.envs import research_tasks
from libs.envs.speedrun_bench import hints, workspace
from libs.envs.speedrun_bench.proxy import MEASURES, Proxy
from libs.train.errors import UserError

__all__ = ["MEASURES", "PREFIX", "Proxy", "is_task", "load_task", "parse_task_name", "reference_workspace",
           "task_name", "task_names"]
PREFIX = "speedrun."
_VERSION = 1  # bump when the folder layout changes


def task_name(step: tuple[str, str], levels: str = "none") -> str:
    return f"{PREFIX}{hints.step_name(step)}.hint_{levels}"


def parse_task_name(name: str) -> tuple[tuple[str, str], str]:
    """(ladder step, hint levels) of a task name; a malformed one is a UserError listing the form."""
    body = name[len(PREFIX):] if name.startswith(PREFIX) else ""
    step_part, _, hint_part = body.partition(".hint_")
    before, _, after = step_part.partition("__")
    step = (before, after)
    if step not in hints.LADDER_STEPS or hint_part not in hints.COMBINATIONS:
        raise UserError(f"unknown speedrun task {name!r}: expected {PREFIX}<record i>__<record i+1>.hint_<levels> "
                        f"with a step of {[hints.step_name(s) for s in hints.LADDER_STEPS]} and levels of "
                        f"{list(hints.COMBINATIONS)}")
    return step, hint_part


def task_names(levels: str = "none") -> list[str]:
    """Every ladder step's task at hint `levels`."""
    return [task_name(step, levels) for step in hints.LADDER_STEPS]


def is_task(name: str) -> bool:
    return name.startswith(PREFIX)


def description(step: tuple[str, str], levels: str, proxy: Proxy) -> str:
    hint = hints.load_hint(step, levels)
    text = f"""# Speedrun: make {step[0]}'s training reach the target faster

The workspace holds the code and config that the NanoGPT speedrun record `{step[0]}` of this codebase trains
with, at a small proxy scale: a GPT on the embedded corpus (this interpreter's standard-library sources, one
byte per token), trained on CPU. Change the code and the config so that training reaches the target
validation loss in less training time. The next record of the ladder did it; reproduce its speedup or beat it.

## Files (all editable)
- `gpt.py`: the model (`GPTConfig`, gin-configurable; `GPT.__call__(tokens, targets, train)` returns the mean
  loss). `losses.py`: the cross-entropy the model calls. `optim.py`: `make_optimizer(params, total_steps)`
  (gin-configurable), `lr_schedule`, `momentum_warmup`.
- `record.gin`: the record's config (model size, optimizer settings, schedule, steps, batch size).
- `train.py`: `python train.py --workdir=run` trains as the evaluation does (not used by the evaluation).
The trainer, data pipeline, validation and clock are the project's (`libs/train`) and fixed.

## Evaluation (fixed)
The submission's workspace is trained from scratch with seed {proxy.seed}, validating every {proxy.eval_every}
steps on {proxy.val_tokens:,} validation tokens ({proxy.seq_len}-token sequences), and stopped at the first validation
loss at or below **{proxy.target}**. The metric is `{proxy.measure}` to that point (lower is better); the
evaluation also reports `train_time_s` (training seconds, compilation and validation excluded), `steps` and
`tokens`. A run that fails or never reaches the target within the configured `train.total_steps` is invalid.
Keep `train.seq_len` at {proxy.seq_len} and the data as it is (the evaluation sets them anyway).
"""
    return text + (f"\n## Hints\n\n{hint}\n" if hint else "")


def _task_files(step, levels: str, proxy: Proxy, data_sources: tuple[str, str]) -> dict[str, str]:
    raw = {"name": "", "title": f"Speedrun {step[0]} -> {step[1]} (hints: {levels})", "metric": proxy.measure,
           "lower_is_better": True, "time_limit_s": 120, "eval_time_limit_s": proxy.eval_time_limit_s,
           "memory_mb": 8192, "command": ["python", "-m", "py_compile", "gpt.py", "losses.py", "optim.py"],
           "editable": list(workspace.EDITABLE), "submission": list(workspace.EDITABLE),
           # The data cache's key: another data source is another version of the task's data.
           "data_version": 1 + int(hashlib.sha256(repr(data_sources).encode()).hexdigest()[:8], 16),
           "seed": 0, "needs_project": True}
    files = {"task.json": raw, "description.md": description(step, levels, proxy),
             "proxy.json": json.dumps(dataclasses.asdict(proxy), indent=1) + "\n",
             "evaluate.py": _EVALUATE_PY, "prepare.py": _PREPARE_PY.format(sources=repr(data_sources))}
    files.update({f"starter/{name}": text for name, text in workspace.sources(step[0], scale_file=proxy.scale_file).items()})
    return files


def load_task(name: str, proxy: Proxy | None = None, root: str | os.PathLike | None = None
              ) -> research_tasks.ResearchTask:
    """The task folder of `name` (written under `<root or data dir>/speedrun_bench/` if new), loaded."""
    from libs.train import corpus  # pylint: disable=import-outside-toplevel

    step, levels = parse_task_name(name)
    proxy = proxy or Proxy()
    data_sources = (proxy.train_data, proxy.val_data)  # the task's prepare.py links their files into ./data
    proxy = dataclasses.replace(proxy, train_data=_in_data_dir(proxy.train_data, "train"),
                                val_data=_in_data_dir(proxy.val_data, "val"))
    files = _task_files(step, levels, proxy, data_sources)
    files["task.json"] = json.dumps({**files["task.json"], "name": name}, indent=1) + "\n"
    digest = hashlib.sha256(json.dumps([_VERSION, files], sort_keys=True).encode()).hexdigest()[:12]
    parent = os.path.join(root or corpus.default_data_dir(), "speedrun_bench", digest)
    folder = os.path.join(parent, name)
    if not os.path.isfile(os.path.join(folder, "task.json")):
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{name}.", dir=parent)
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(staging, rel)), exist_ok=True)
            with open(os.path.join(staging, rel), "w") as f:
                f.write(text)
        try:
            os.rename(staging, folder)
        except OSError:  # another process wrote the same content first
            shutil.rmtree(staging, ignore_errors=True)
    return research_tasks.load_task_dir(folder)


def _in_data_dir(pattern: str, split: str) -> str:
    """Where a data source's shards are seen from a task's working directory (./data)."""
    return f"data/stdlib_{split}_*.bin" if pattern == "stdlib" else f"data/{os.path.basename(pattern)}"


def reference_workspace(record: str, scale_file: str | None = None) -> dict[str, str]:
    """The editable files of `record`'s own workspace (the oracle submits record i+1's to task i)."""
    files = workspace.sources(record, scale_file=scale_file)
    return {name: files[name] for name in workspace.EDITABLE}


_EVALUATE_PY = '''"""Trains the submitted workspace to the proxy target (libs/envs/speedrun_bench/evaluation.py)."""

from pathlib import Path

from libs.envs.speedrun_bench import evaluation

if __name__ == "__main__":
    evaluation.main(Path(__file__).resolve().parent / "proxy.json")
'''

_PREPARE_PY = '''"""This task's public data: the shards of its proxy's data sources, linked (else copied) into ./data."""

import glob
import os
import shutil

from libs.train import corpus, launch

SOURCES = {sources}  # train, val: "stdlib" (the embedded corpus) or shard globs (relative to the repository)


def _files(pattern, split):
    if pattern == "stdlib":
        paths = corpus.build_stdlib_corpus(tokenizer="bytes")
        pattern = paths.train_pattern if split == "train" else paths.val_pattern
    found = sorted(glob.glob(os.path.join(launch.REPO_ROOT, pattern)))
    if not found:
        raise FileNotFoundError(f"no shards match {{pattern}} ({{split}} data of the speedrun benchmark)")
    return found


def prepare(public_dir, private_dir, seed):
    del private_dir, seed  # the validation shards are public: the evaluation, not the agent, runs them
    for pattern, split in zip(SOURCES, ("train", "val")):
        for path in _files(pattern, split):
            dest = os.path.join(public_dir, os.path.basename(path))
            try:
                os.link(path, dest)  # the same bytes for every task: no copy where the file system allows
            except OSError:
                shutil.copy(path, dest)
'''
