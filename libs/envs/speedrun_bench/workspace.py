"""A benchmark task's workspace: the editable code and config that one record trains with, at proxy scale.

`build_workspace(record, dest)` writes:

- `gpt.py`, `optim.py`: the project's model (libs/models/gpt.py) and optimizer (libs/train/optim.py)
  specialised to the record (`specialize`): every switch a later record of the ladder flips is folded to
  this record's value and its code removed, so the next record's change is not one gin value away.
- `losses.py`: the project's loss code (libs/models/losses.py), unchanged.
- `record.gin`: the record's effective config at proxy scale, flattened (no includes), without the folded
  switches and without the settings the evaluation fixes (data, validation, target, seed).
- `train.py`: runs this workspace as the evaluation does (`python train.py --workdir=run`).

The trainer loop, data, validation and clock stay the project's (libs/train), outside the workspace: they
are the benchmark's fixed measurement, as the reference keeps its validation fixed.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import re
from typing import Any

from libs.envs.speedrun_bench import hints, specialize
from libs.envs.speedrun_bench.proxy import PACKED_SCALE_FILE, scale_file_for
from libs.models import gpt
from libs.train import launch, optim

CONFIG_DIR = os.path.join(launch.REPO_ROOT, "configs", "speedrun")
EDITABLE = ("gpt.py", "optim.py", "losses.py", "record.gin")

# The fields and parameters that select code (not plain numbers such as learning rates): those a later
# record changes are folded out of an earlier record's workspace.
SWITCHES = {
    "GPTConfig": ("positional", "norm", "use_bias", "activation", "qk_norm", "zero_init_proj", "tie_embeddings",
                  "zero_init_head", "embed_norm", "logit_softcap", "embed_skip", "value_residual", "unet_skips",
                  "value_embeddings", "attn_branch_scale", "init_scheme", "fused_qkv", "dtype", "residual_dtype",
                  "embed_scalar_param_dtype", "doc_eot_id", "max_window_blocks", "window_block_size",
                  "window_block_clamp", "short_window_layers", "attentionless_layers", "ve_layout", "ve_mix",
                  "ve_init_std", "rotary_freqs", "head_fp8", "scalar_param_dtype", "attn_scale", "linear_init_scale"),
    "make_optimizer": ("kind", "muon_scale", "grad_normalize"),
    "window_schedule": ("growth_tokens", "rounding"),  # 0 growth: no schedule (records before 13)
}
_CONFIGURABLES = {"make_optimizer": optim.make_optimizer, "window_schedule": optim.window_schedule}
# Settings that only matter under one value of a switch: folded (to their own value) with it when the
# record's value of the switch is another one, so that, say, an AdamW record's optimizer has no Muon knobs.
COMPANIONS = {
    "GPTConfig": {"rotary_base": ("positional", "rotary"), "rotary_freqs": ("positional", "rotary"),
                  "head_fp8_scales": ("head_fp8", True)},
    "make_optimizer": {name: ("kind", "muon") for name in ("muon_lr", "muon_weight_decay", "muon_nesterov",
                                                           "muon_ns_steps", "muon_scale", "embed_lr", "head_lr",
                                                           "scalar_lr")},
}
# The evaluation's own settings (tasks.Proxy.bindings): a workspace config does not carry them.
FIXED = ("train.train_data", "train.val_data", "train.stdlib_tokenizer", "train.val_tokens", "train.val_batch_size",
         "train.eval_every", "train.target_val_loss", "train.stop_at_target", "train.seed", "train.seq_len",
         "train.plot", "train.tfds_data_dir", "Checkpointer.every_steps", "Checkpointer.keep")
_SOURCES = {"gpt.py": "libs/models/gpt.py", "optim.py": "libs/train/optim.py", "losses.py": "libs/models/losses.py"}
_KEEP = {"gpt.py": ("GPTConfig", "GPT", "flops_per_token"),
         "optim.py": ("make_optimizer", "lr_schedule", "momentum_warmup", "window_schedule")}


@dataclasses.dataclass(frozen=True)
class FlatConfig:
    """A gin file with its includes resolved: imports, and bindings in first-set order (last value wins)."""

    imports: list[str]
    bindings: dict[str, tuple[str, str]]  # name -> (value text, comment)

    def value(self, name: str, default: Any = None) -> Any:
        if name not in self.bindings:
            return default
        text = self.bindings[name][0]
        if text.startswith("%"):  # a gin macro (`EOT_ID = 256`, then `GPTConfig.doc_eot_id = %EOT_ID`)
            return self.value(text[1:], default)
        return ast.literal_eval(text)


def flatten(*paths: str) -> FlatConfig:
    """The bindings of the gin files `paths`, applied in order, includes resolved (this ladder's files
    have one binding per line and literal values)."""
    imports: list[str] = []
    bindings: dict[str, tuple[str, str]] = {}

    def read(path: str) -> None:
        with open(path) as f:
            for line in f:
                code, _, comment = line.partition("#")
                code = code.strip()
                if not code:
                    continue
                if code.startswith("include "):
                    read(os.path.join(launch.REPO_ROOT, ast.literal_eval(code[len("include "):].strip())))
                elif code.startswith("import "):
                    if code not in imports:
                        imports.append(code)
                else:
                    name, _, value = code.partition("=")
                    bindings[name.strip()] = (value.strip(), comment.strip())

    for path in paths:
        read(path)
    return FlatConfig(imports, bindings)


def record_config(record: str, scale_file: str | None = None) -> FlatConfig:
    """The record's config at a scale (the record's gin file, then `scale_file` unless it is ""; None: the
    record's own CPU proxy scale)."""
    scale_file = scale_file_for(record) if scale_file is None else scale_file
    scale = [os.path.join(launch.REPO_ROOT, scale_file)] if scale_file else []
    return flatten(os.path.join(CONFIG_DIR, f"{record}.gin"), *scale)


def _defaults() -> dict[str, dict[str, Any]]:
    defaults = {"GPTConfig": {f.name: f.default for f in dataclasses.fields(gpt.GPTConfig)}}
    for owner, fn in _CONFIGURABLES.items():
        defaults[owner] = {name: p.default for name, p in inspect.signature(fn).parameters.items()}
    return defaults


def switch_values(record: str) -> dict[str, dict[str, Any]]:
    """{configurable: {switch: value}} in effect for `record` at proxy scale."""
    config, defaults = record_config(record), _defaults()
    return {owner: {name: config.value(f"{owner}.{name}", defaults[owner][name]) for name in names}
            for owner, names in SWITCHES.items()}


def folded_switches(record: str, ladder: tuple[str, ...] = hints.RECORDS) -> dict[str, dict[str, Any]]:
    """The switches whose value some later record of `ladder` changes, at `record`'s value."""
    if record not in ladder:
        raise ValueError(f"unknown record {record!r}: expected one of {', '.join(ladder)}")
    mine = switch_values(record)
    later = [switch_values(r) for r in ladder[ladder.index(record) + 1:]]
    folds = {owner: {name: value for name, value in values.items() if any(v[owner][name] != value for v in later)}
             for owner, values in mine.items()}
    config, defaults = record_config(record), _defaults()
    for owner, companions in COMPANIONS.items():
        for name, (switch, active) in companions.items():
            if switch in folds[owner] and folds[owner][switch] != active:
                folds[owner][name] = config.value(f"{owner}.{name}", defaults[owner][name])
    return folds


def _later_terms(record: str, folds: dict[str, dict[str, Any]], ladder: tuple[str, ...]) -> tuple[str, ...]:
    terms = {"record", "records", "speedrun"}
    for owner, values in folds.items():
        terms.update(values)
        for other in ladder[ladder.index(record) + 1:]:
            for name in values:
                value = switch_values(other)[owner].get(name)
                if isinstance(value, str):
                    terms.add(value)
    return tuple(sorted(terms))


def _header(record: str, file: str) -> str:
    return (f'"""The project\'s {_SOURCES[file]} as {record} trains with it: a workspace copy, edit freely.\n\n'
            '(Generated by libs/envs/speedrun_bench/workspace.py.)\n"""\n')


def sources(record: str, ladder: tuple[str, ...] = hints.RECORDS, scale_file: str | None = None) -> dict[str, str]:
    """The workspace's files for `record` with its config at `scale_file` ("": full scale; None: the record's
    own CPU proxy scale): {name: text}."""
    folds = folded_switches(record, ladder)
    terms = _later_terms(record, folds, ladder)
    per_file = {
        "gpt.py": specialize.Folds(attributes=folds["GPTConfig"], config_class="GPTConfig",
                                   keep=frozenset(_KEEP["gpt.py"]), later_terms=terms),
        "optim.py": specialize.Folds(parameters={owner: folds[owner] for owner in _CONFIGURABLES},
                                     keep=frozenset(_KEEP["optim.py"]), later_terms=terms),
    }
    out = {}
    for file, project_path in _SOURCES.items():
        with open(os.path.join(launch.REPO_ROOT, project_path)) as f:
            text = f.read()
        if file in per_file:
            text = _header(record, file) + specialize.specialize(text, per_file[file])
        out[file] = text
    out["record.gin"] = record_gin(record, folds, scale_file)
    packed = (scale_file_for(record) if scale_file is None else scale_file) == PACKED_SCALE_FILE
    out["train.py"] = _TRAIN_PY.replace(', "--packed"', ', "--packed"' if packed else "")
    return out


def record_gin(record: str, folds: dict[str, dict[str, Any]], scale_file: str | None = None) -> str:
    """The record's flattened config at `scale_file` minus the folded switches and the evaluation's settings."""
    scale_file = scale_file_for(record) if scale_file is None else scale_file
    config = record_config(record, scale_file)
    dropped = {f"{owner}.{name}" for owner, values in folds.items() for name in values} | set(FIXED)
    if scale_file:
        where = f"the benchmark's proxy scale: the record's config with {os.path.basename(scale_file)} on top"
    else:
        where = "full scale: the record's own config"
    lines = [f"# {record} at {where}, flattened.",
             "# The evaluation adds its own data, validation, target and seed settings.", ""]
    lines += config.imports + [""]
    for name, (value, comment) in config.bindings.items():
        if name in dropped:
            continue
        keep_comment = comment and not re.search(r"\brecords?\b", comment, re.IGNORECASE)
        lines.append(f"{name} = {value}" + (f"  # {comment}" if keep_comment else ""))
    return "\n".join(lines) + "\n"


def build_workspace(record: str, dest: str, ladder: tuple[str, ...] = hints.RECORDS,
                    scale_file: str | None = None) -> dict[str, str]:
    """Writes the workspace of `record` into `dest` (created); returns its files."""
    files = sources(record, ladder, scale_file)
    os.makedirs(dest, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(dest, name), "w") as f:
            f.write(text)
    return files


_TRAIN_PY = '''"""Trains this workspace as the benchmark's evaluation does: python train.py --workdir=run

The model, loss and optimizer come from this folder (gpt.py, losses.py, optim.py), the config from
record.gin; the trainer, data, validation, target and clock are the project's (fixed by the benchmark).
"""

import sys
from pathlib import Path

from libs.envs.speedrun_bench import runner

if __name__ == "__main__":
    runner.main([sys.argv[0], f"--workspace={Path(__file__).resolve().parent}", "--packed", *sys.argv[1:]])
'''
