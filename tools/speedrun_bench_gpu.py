r"""The speedrunning benchmark's full-scale mode on a GPU, harness checks only (no agent, no model stack).

    python -m tools.speedrun_bench_gpu --step=gpt2_124m__record_02 --total_steps=20 --eval_every=5 \
        --train_data=data/fineweb10B/fineweb_train_*.bin --val_data=data/fineweb10B/fineweb_val_*.bin

For one ladder step: the two records' real configs (no cpu_scale.gin; 1024-token sequences) trained by the
project's binary (the references, `references.run_reference`), the step's target by the proxy's rule, then
record i+1's own workspace (the oracle) and record i's (the no-op) trained to that target by the task
evaluation's runner (`evaluation.evaluate`, here WITHOUT the sandbox: a GPU machine runs it directly), and
their FSR on training seconds, steps and tokens. `--total_steps` cuts every schedule (a check, not the
speedrun). It needs neither litellm nor bubblewrap, so it runs on a bare accelerator image.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

from absl import app, flags

from libs.envs.speedrun_bench import evaluation, hints, references, workspace
from libs.envs.speedrun_bench.proxy import MEASURES, Proxy
from libs.evals import speedrun_scores

_STEP = flags.DEFINE_string("step", "gpt2_124m__record_02", "Ladder step <record i>__<record i+1>.")
_TOTAL_STEPS = flags.DEFINE_integer("total_steps", 20, "Every run's schedule length (0: the records' own).")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 5, "Validation period in steps.")
_VAL_TOKENS = flags.DEFINE_integer("val_tokens", 262144, "Validation tokens per validation.")
_TARGET = flags.DEFINE_float("target", 0.0, "A fixed target loss (0: the per-step rule).")
_TRAIN = flags.DEFINE_string("train_data", "data/fineweb10B/fineweb_train_*.bin", "Training shards (glob).")
_VAL = flags.DEFINE_string("val_data", "data/fineweb10B/fineweb_val_*.bin", "Validation shards (glob).")
_SCALE = flags.DEFINE_string("scale_file", "", "A gin file on top of each record ('': full scale; a CPU dry run: "
                             "configs/speedrun/cpu_scale.gin with --seq_len=128 --val_batch_size=16).")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 1024, "Sequence length of every run.")
_VAL_BATCH = flags.DEFINE_integer("val_batch_size", 64, "Sequences per validation batch.")
_OUT = flags.DEFINE_string("out", "runs/speedrun_bench_gpu/result.json", "The JSON result (runs beside it).")


def main(argv):
    del argv
    import jax  # pylint: disable=import-outside-toplevel  (the device line only)

    step = tuple(_STEP.value.split("__"))
    full_scale_steps = [s for s in hints.LADDER_STEPS if s[1] not in hints.PACKED_RECORDS]
    if step not in full_scale_steps:  # the packed records 12+ each have their own row length
        raise app.UsageError(f"--step={_STEP.value}: expected one of {[hints.step_name(s) for s in full_scale_steps]}")
    root = os.path.dirname(os.path.abspath(_OUT.value))
    os.makedirs(root, exist_ok=True)
    proxy = Proxy(scale_file=_SCALE.value, seq_len=_SEQ_LEN.value, val_batch_size=_VAL_BATCH.value, eval_every=_EVAL_EVERY.value,
                  val_tokens=_VAL_TOKENS.value, total_steps=_TOTAL_STEPS.value, train_data=os.path.abspath(_TRAIN.value),
                  val_data=os.path.abspath(_VAL.value), target_rule="fixed" if _TARGET.value else "per_step",
                  target=_TARGET.value or 3.28)
    runs = [references.run_reference(record, 0, os.path.join(root, "references"), proxy, print) for record in step]
    if _TARGET.value == 0:
        target = references.step_target(runs, step, proxy.target_margin)
        if target is None:
            raise app.UsageError(f"a reference run produced no validation curve: see {root}/references/*.log")
        proxy = dataclasses.replace(proxy, target=target)
    before, after = references.medians(runs, list(step), proxy.target)
    print(f"target {proxy.target}: {step[0]} {({m: before[m] for m in MEASURES})}, "
          f"{step[1]} {({m: after[m] for m in MEASURES})}", flush=True)
    proxy_path = Path(root) / "proxy.json"
    proxy_path.write_text(json.dumps(dataclasses.asdict(proxy)))
    checks = {}
    for agent, record in (("oracle", step[1]), ("noop", step[0])):
        submission = Path(tempfile.mkdtemp(prefix=f"{agent}_", dir=root))
        workspace.build_workspace(record, str(submission), scale_file=_SCALE.value)
        try:
            costs = evaluation.evaluate(submission, proxy_path)
        except evaluation.taskkit.Invalid as e:
            costs = None
            print(f"{agent}: invalid: {e}", flush=True)
        scores = {m: dataclasses.asdict(speedrun_scores.fsr(before[m], after[m], costs[m] if costs else None))
                  if before[m] is not None and after[m] is not None else None for m in MEASURES}
        checks[agent] = {"workspace": record, "costs": costs, "fsr": scores}
        print(f"{agent} (harness check): costs {costs}; FSR {scores}", flush=True)
    result = {"device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})", "step": list(step),
              "proxy": dataclasses.asdict(proxy), "references": [before, after], "checks": checks,
              "reference_runs": runs}
    with open(_OUT.value, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
