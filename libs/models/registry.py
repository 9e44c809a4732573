"""The model families the trainer can build, chosen by gin: `make_model.family = "llama"`.

Each family is a (config class, module class, FLOP counter) triple; the config class
is gin-configurable (`GPTConfig.*`, `LlamaConfig.*`) and the module has the shared call
interface `__call__(tokens, targets=None, train=True)` -> mean loss or float32 logits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import gin
from flax import linen as nn

from libs.models import gpt, llama
from libs.train.launch import ConfigError


@dataclasses.dataclass(frozen=True)
class Family:
    config: type
    module: type[nn.Module]
    flops_per_token: Callable[[Any, Any, int], float]


FAMILIES = {
    "gpt": Family(gpt.GPTConfig, gpt.GPT, gpt.flops_per_token),
    "llama": Family(llama.LlamaConfig, llama.Llama, llama.flops_per_token),
}


@dataclasses.dataclass(frozen=True)
class Model:
    family: str
    cfg: Any
    module: nn.Module

    def flops_per_token(self, params: Any, seq_len: int) -> float:
        return FAMILIES[self.family].flops_per_token(self.cfg, params, seq_len)


@gin.configurable
def make_model(family: str = "gpt") -> Model:
    """The gin-configured model of `family` ("gpt" | "llama")."""
    if family not in FAMILIES:
        raise ConfigError(f"make_model.family={family!r}: expected one of {tuple(FAMILIES)}")
    spec = FAMILIES[family]
    cfg = spec.config()
    return Model(family, cfg, spec.module(cfg))
