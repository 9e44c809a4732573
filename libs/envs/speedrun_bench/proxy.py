"""The benchmark's fixed proxy scale (gin `speedrun_proxy`): the target and the evaluation's settings.

Its own module, free of model imports, so the workspace runner can read it before it installs the
workspace's model code in place of the project's.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import gin

from libs.envs.speedrun_bench.hints import PACKED_RECORDS
from libs.train.launch import POSITIVE, ConfigError

MEASURES = ("train_time_s", "steps", "tokens")
TARGET_RULES = ("per_step", "fixed")
SCALE_FILE = "configs/speedrun/cpu_scale.gin"  # records 1-11: 4 layers, 128-token rows
PACKED_SCALE_FILE = "configs/speedrun/cpu_scale_packed.gin"  # records 12+: 12 layers, 1,024-token packed rows


def scale_file_for(record: str) -> str:
    """The CPU proxy overlay a record's own workspace and reference runs use."""
    return PACKED_SCALE_FILE if record in PACKED_RECORDS else SCALE_FILE


@gin.configurable("speedrun_proxy")
@dataclasses.dataclass(frozen=True)
class Proxy:
    """The fixed proxy scale: what every run (reference, agent, harness check) is measured against.

    target_rule: "per_step" (default): task i -> i+1's target is the higher of the two records' best validation
    losses over their reference runs (the worst seed's) plus `target_margin`, so every reference run reaches it
    and it sits late in training, where the records differ; "fixed": every task's target is `target`.
    target: the fixed rule's validation loss (nats per byte token); eval_every: validation period in steps
    (the resolution of steps-to-target); val_tokens: validation tokens per evaluation; seed: the init seed
    the evaluation forces; measure: the task metric ("train_time_s", "steps" or "tokens"; FSR works on
    any); eval_time_limit_s: wall limit of one evaluation (compilation and validation included).
    train_data / val_data: the trainer's sources ("stdlib": the embedded corpus; tasks use its shards in ./data).
    total_steps: >0 fixes every run's schedule length (a quick look or a test; the records' own is 300 at
    cpu_scale.gin, and a workspace may change it when this is 0).
    scale_file: the gin file put on top of every record config ("" for the full-scale mode: the real configs,
    FineWeb shards as train_data / val_data, on a GPU; configs/speedrun_bench/full_scale.gin); seq_len,
    val_batch_size: the sequence length every run trains and validates at, the validation batch.
    packed_scale_file, packed_seq_len, packed_val_batch_size: the same for the steps into the packed-document
    records 12+ (`for_step`), whose layer-indexed switches need 12 layers and whose windows need long rows.
    """

    target: float = 3.0
    target_rule: str = "per_step"
    target_margin: float = 0.02
    eval_every: Annotated[int, POSITIVE] = 10
    val_tokens: Annotated[int, POSITIVE] = 16384
    seed: int = 0
    measure: str = "train_time_s"
    eval_time_limit_s: Annotated[float, POSITIVE] = 900.0
    train_data: str = "stdlib"
    val_data: str = "stdlib"
    total_steps: int = 0
    scale_file: str = SCALE_FILE
    seq_len: Annotated[int, POSITIVE] = 128
    val_batch_size: Annotated[int, POSITIVE] = 16
    packed_scale_file: str = PACKED_SCALE_FILE
    packed_seq_len: Annotated[int, POSITIVE] = 1024
    packed_val_batch_size: Annotated[int, POSITIVE] = 2

    def __post_init__(self):
        if self.measure not in MEASURES:
            raise ConfigError(f"speedrun_proxy.measure={self.measure!r}: expected one of {MEASURES}")
        if not self.target > 0:
            raise ConfigError(f"speedrun_proxy.target={self.target!r}: expected a positive loss")
        if self.target_rule not in TARGET_RULES:
            raise ConfigError(f"speedrun_proxy.target_rule={self.target_rule!r}: expected one of {TARGET_RULES}")
        if self.total_steps < 0:
            raise ConfigError(f"speedrun_proxy.total_steps={self.total_steps!r}: expected 0 (the records' own) or more")
        if not self.target_margin >= 0:
            raise ConfigError(f"speedrun_proxy.target_margin={self.target_margin!r}: expected 0 or more")

    def for_record(self, record: str) -> Proxy:
        """The proxy `record` is measured at: itself, or its packed settings for records 12+."""
        if record not in PACKED_RECORDS or self.scale_file == self.packed_scale_file:
            return self
        if not self.scale_file:
            raise ConfigError(f"speedrun_proxy: full-scale tasks reach record 11 for now; {record} needs its own "
                              "row length (65,536 or 49,152 tokens), which one full-scale proxy cannot fix")
        return self.packed()

    def packed(self) -> Proxy:
        """This proxy with its packed settings (scale file, row length, validation batch)."""
        return dataclasses.replace(self, scale_file=self.packed_scale_file, seq_len=self.packed_seq_len,
                                   val_batch_size=self.packed_val_batch_size)

    def for_step(self, step: tuple[str, str]) -> Proxy:
        """The proxy a ladder step's task and both its references use: the later record's."""
        return self.for_record(step[1])

    def bindings(self, seed: int | None = None, stop: bool = True) -> list[str]:
        """The gin bindings every measured run gets after its own config (`workspace.FIXED`); `stop=False`
        trains the whole schedule (a reference curve) instead of stopping at the target."""
        return [f"train.train_data={self.train_data!r}", f"train.val_data={self.val_data!r}",
                "train.stdlib_tokenizer='bytes'", f"train.val_tokens={self.val_tokens}",
                f"train.val_batch_size={self.val_batch_size}",
                f"train.eval_every={self.eval_every}", f"train.target_val_loss={self.target if stop else 0.0}",
                f"train.stop_at_target={stop}", f"train.seed={self.seed if seed is None else seed}", f"train.seq_len={self.seq_len}",
                "train.plot=False", "Checkpointer.every_steps=1000000", "Checkpointer.keep=1",
                *([f"train.total_steps={self.total_steps}"] if self.total_steps > 0 else [])]
