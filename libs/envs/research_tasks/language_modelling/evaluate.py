"""Validation loss of the submitted speedrun run (`run/config.gin` + its latest checkpoint) on the hidden
test shard: {"val_loss": mean next-byte cross-entropy in nats over EVAL_TOKENS tokens, 128-token rows}.

The model is rebuilt from the run's own effective config and its parameters restored; the test text is
never in ./data. A config that imports anything outside `libs`, a missing or mismatched checkpoint, or a
model that cannot read 128-token rows rejects the submission.
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # taskkit.py, also where the project is not importable
import taskkit  # noqa: E402

EVAL_SEQ_LEN, EVAL_BATCH, EVAL_TOKENS = 128, 16, 131_072
_ALLOWED_IMPORT = re.compile(r"^import libs(\.\w+)+( as \w+)?$")


def check_config(text: str) -> None:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("import ", "from ")) and not _ALLOWED_IMPORT.match(stripped):
            raise taskkit.Invalid(f"run/config.gin may import only project modules, not {stripped!r}")
        if stripped.startswith("include"):
            raise taskkit.Invalid("run/config.gin must be the run's effective config (no include)")


def val_loss(run_dir, test_pattern: str) -> float:
    import gin
    import jax
    import numpy as np

    from libs.train import checkpoint, data, launch, trainer
    from libs.train.errors import ConfigError, UserError

    try:
        launch.parse_config([str(run_dir / "config.gin")], [])
        steps, batch, micro = (gin.query_parameter(f"train.{name}") for name in
                               ("total_steps", "global_batch_size", "microbatches"))
        exp = trainer.build(steps, EVAL_SEQ_LEN, batch, micro)
    except (ConfigError, UserError, ValueError) as e:
        raise taskkit.Invalid(f"run/config.gin: {str(e).splitlines()[0]}") from None
    batches = data.validation_batches(test_pattern, EVAL_SEQ_LEN, EVAL_BATCH, EVAL_TOKENS)
    with exp.context():
        try:
            restored = checkpoint.Checkpointer(str(run_dir)).restore_latest(exp.abstract_state())
        except Exception as e:  # noqa: BLE001 - orbax raises many kinds for a checkpoint of another model
            raise taskkit.Invalid(f"the checkpoint does not fit run/config.gin: {str(e).splitlines()[0]}") from None
        if restored is None:
            raise taskkit.Invalid("run/ holds no checkpoint")
        params = restored[1]["params"]
        losses = []
        for inputs, targets in batches:
            put = lambda a: jax.make_array_from_process_local_data(exp.batch_sharding, a)
            losses.append(exp.eval_fn(params, put(inputs), put(targets)))
    loss = float(np.mean(jax.device_get(losses)))
    if not np.isfinite(loss):
        raise taskkit.Invalid(f"the model's test loss is {loss}")
    return loss


def main():
    args = taskkit.parse_args()
    run_dir = args.submission_dir / "run"
    with taskkit.evaluation():
        check_config(taskkit.require(run_dir / "config.gin", "run/config.gin").read_text())
        loss = val_loss(run_dir, str(args.private_dir / "lm_test_*.bin"))
    taskkit.report({"val_loss": round(loss, 4)})


if __name__ == "__main__":
    main()
