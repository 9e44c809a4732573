"""Cached decoding with the Llama model: prefill and decode steps over a slotted KV cache, and sampling.

A `Decoder` owns one `KVCache` of `slots` rows (one per sequence in flight, up to `max_len`
positions each) and two jitted functions, both donating the cache so it is updated in place:

- `prefill(slot, prompt)`: writes a prompt's keys and values into its slot, a chunk of up to
  `max(prefill_chunks)` tokens at a time, and samples the first new token;
- `decode(tokens, positions, ...)`: one token for every slot at once (free slots ride along at a
  padding position, which writes nothing), and samples the next token of each.

Shapes come in a few buckets (prefill chunk lengths, attended lengths), so a server compiles a handful
of programs at start-up and never per request. Sampling is greedy (temperature 0), or temperature with
nucleus (top-p) truncation, with an optional mask of allowed tokens per row (structured outputs). Each
row draws from its own key, fold_in(seed, step), so a seeded request samples the same tokens whatever
else shares the batch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from libs.models import layers, llama

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How one request samples: temperature 0 is greedy; top_p < 1 keeps the smallest set of tokens
    whose probabilities sum to at least top_p; `stop` strings end the reply (and are cut from it)."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None  # None: 0 in `generate`; the engine draws a random one per request
    ignore_eos: bool = False  # keep going past stop tokens (benchmarks: a fixed number of tokens)

    def __post_init__(self):
        if not (isinstance(self.max_tokens, int) and self.max_tokens > 0):
            raise ValueError(f"max_tokens={self.max_tokens!r}: expected a positive integer")
        if not 0 <= self.temperature <= 100:
            raise ValueError(f"temperature={self.temperature!r}: expected a number in [0, 100]")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p!r}: expected a number in (0, 1]")


def sample(logits: Array, allowed: Array, temperature: Array, top_p: Array, seeds: Array, counters: Array) -> Array:
    """Next tokens (B,) from float32 logits (B, V): greedy where temperature is 0, else temperature
    sampling within the top-p nucleus; tokens where `allowed` (B, V) is False are never chosen."""
    logits = jnp.where(allowed, logits, -jnp.inf)
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)

    def nucleus(z):
        ordered = jnp.sort(z, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(ordered, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # probability mass of the tokens ranked above
        keep = jnp.sum(before < top_p[:, None], axis=-1)  # >= 1: the top token is always kept
        threshold = jnp.take_along_axis(ordered, (keep - 1)[:, None], axis=-1)
        return jnp.where(z >= threshold, z, -jnp.inf)

    def draw(z):
        z = z / jnp.maximum(temperature, 1e-6)[:, None]
        z = jax.lax.cond(jnp.any(top_p < 1.0), nucleus, lambda z: z, z)
        # Inverse-CDF sampling: one uniform number per row (not one Gumbel draw per vocabulary entry).
        keys = jax.vmap(lambda s, c: jax.random.fold_in(jax.random.key(s), c))(seeds, counters)
        u = jax.vmap(jax.random.uniform)(keys)
        cdf = jnp.cumsum(jax.nn.softmax(z, axis=-1), axis=-1)
        # The first token whose cumulative mass exceeds u (so never one of probability 0).
        token = jnp.sum(cdf <= (u * cdf[:, -1] * (1 - 1e-6))[:, None], axis=-1).astype(jnp.int32)
        return jnp.where(temperature > 0, jnp.minimum(token, z.shape[-1] - 1), greedy)

    return jax.lax.cond(jnp.any(temperature > 0), draw, lambda z: greedy, logits)


def _bucket(n: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if n <= b:
            return b
    return buckets[-1]


class Decoder:
    """Prefill and decode steps of one model over a `slots` x `max_len` KV cache (see module doc)."""

    def __init__(self, cfg: llama.LlamaConfig, params: Any, *, slots: int = 8, max_len: int = 2048,
                 prefill_chunks: Sequence[int] = (32, 128, 512), attend_step: int = 256):
        if max_len > cfg.max_seq_len:
            raise ValueError(f"max_len={max_len} exceeds the model's max_seq_len {cfg.max_seq_len}")
        self.cfg, self.params, self.slots, self.max_len = cfg, params, slots, max_len
        self.model = llama.Llama(cfg)
        self.prefill_chunks = tuple(sorted(c for c in prefill_chunks if c <= max_len)) or (max_len,)
        # Attention reads the cache up to the bucket above the furthest position: finer buckets read less
        # (on a CPU, reading the cache is most of a long context's step) but compile more programs.
        self.attend_buckets = (*range(attend_step, max_len, attend_step), max_len)
        self.cache = layers.KVCache.zeros(cfg.num_layers, slots, max_len, cfg.num_kv_heads, cfg.dims_per_head,
                                          cfg.compute_dtype)
        self.vocab_size = cfg.vocab_size
        self._all_allowed = jnp.ones((slots, cfg.vocab_size), bool)
        self._step = jax.jit(self._step_fn, donate_argnums=(1,))
        self.compiled_shapes: set[tuple] = set()  # (rows, tokens, attend_len) of every program built

    def _step_fn(self, params, cache, tokens, call, logits_at, allowed, temperature, top_p, seeds, counters):
        logits, cache = self.model.apply({"params": params}, tokens, train=False, cache=cache, call=call,
                                         logits_at=logits_at)
        return sample(logits, allowed, temperature, top_p, seeds, counters), cache

    def _run(self, tokens, positions, slots, logits_at, allowed, sampling_arrays):
        attend = _bucket(int(positions[positions < self.max_len].max(initial=0)) + 1, self.attend_buckets)
        self.compiled_shapes.add((*tokens.shape, attend))
        call = layers.CachedCall(jnp.asarray(positions, jnp.int32),
                                 None if slots is None else jnp.asarray(slots, jnp.int32), attend)
        next_tokens, self.cache = self._step(self.params, self.cache, jnp.asarray(tokens, jnp.int32), call,
                                             jnp.asarray(logits_at, jnp.int32), allowed, *sampling_arrays)
        return np.asarray(next_tokens)

    def prefill(self, slot: int, prompt: Sequence[int], sampling: SamplingParams, allowed: np.ndarray | None = None,
                counter: int = 0, start: int = 0) -> int:
        """Writes `prompt[start:]` into `slot` and returns the first sampled token. `start` > 0 reuses the
        keys and values the slot already holds for prompt[:start] (a shared prefix: see the engine)."""
        if not 0 < len(prompt) < self.max_len:
            raise ValueError(f"prompt of {len(prompt)} tokens: expected 1 to {self.max_len - 1}")
        if not 0 <= start < len(prompt):
            raise ValueError(f"start={start}: expected 0 to {len(prompt) - 1}")
        chunk = self.prefill_chunks[-1]
        arrays = _sampling_arrays([sampling], [counter])
        mask = jnp.ones((1, self.vocab_size), bool) if allowed is None else jnp.asarray(allowed[None])
        token = None
        for begin in range(start, len(prompt), chunk):
            piece = list(prompt[begin:begin + chunk])
            width = _bucket(len(piece), self.prefill_chunks)
            tokens = np.zeros((1, width), np.int32)
            tokens[0, :len(piece)] = piece
            positions = np.full((1, width), self.max_len, np.int32)  # padding: written nowhere
            positions[0, :len(piece)] = np.arange(begin, begin + len(piece))
            token = self._run(tokens, positions, [slot], [len(piece) - 1], mask, arrays)[0]
        return int(token)

    def decode(self, tokens: np.ndarray, positions: np.ndarray, samplings: Sequence[SamplingParams | None],
               counters: Sequence[int], allowed: np.ndarray | None = None) -> np.ndarray:
        """One step for every busy slot: `tokens`, `positions` (slots,); a free slot has sampling None.
        Returns the next token of each slot (garbage for free slots).

        Only busy rows are computed, padded up to a power of two (1, 2, 4, ...): a lone request decodes at
        batch-1 cost however many slots the cache has; padding rows write nothing."""
        busy = [i for i, s in enumerate(samplings) if s is not None]
        rows = _bucket(max(1, len(busy)), [2 ** k for k in range(self.slots.bit_length())] + [self.slots])
        if rows >= self.slots:  # every slot, in order
            index, slots = np.arange(self.slots), None
            real = np.array([s is not None for s in samplings])
        else:  # the busy slots, padded by repeating one (padding rows write nothing)
            index = slots = np.array(busy + [busy[0] if busy else 0] * (rows - len(busy)))
            real = np.arange(rows) < len(busy)
        step_positions = np.where(real, np.asarray(positions)[index], self.max_len).astype(np.int32)
        arrays = _sampling_arrays([samplings[i] or SamplingParams() for i in index], [counters[i] for i in index])
        if allowed is None:
            mask = self._all_allowed[:len(index)]
        else:
            mask = jnp.asarray(allowed[index])
        out = np.zeros(self.slots, np.int32)
        out[index[real]] = self._run(np.asarray(tokens, np.int32)[index][:, None], step_positions[:, None], slots,
                                     np.zeros(len(index), np.int32), mask, arrays)[real]
        return out

    def warm_up(self) -> float:
        """Compiles the decode step for every attended-length bucket and the prefill chunks; returns seconds."""
        t0 = time.perf_counter()
        greedy = SamplingParams(max_tokens=1)
        for width in self.prefill_chunks:
            self.prefill(0, [0] * min(width, self.max_len - 1), greedy)
        for attend in self.attend_buckets:
            positions = np.full(self.slots, attend - 1)
            self.decode(np.zeros(self.slots, np.int32), positions, [greedy] * self.slots, [0] * self.slots)
        return time.perf_counter() - t0


def _sampling_arrays(samplings: Sequence[SamplingParams], counters: Sequence[int]) -> tuple[Array, ...]:
    return (jnp.asarray([s.temperature for s in samplings], jnp.float32),
            jnp.asarray([s.top_p for s in samplings], jnp.float32),
            jnp.asarray([(s.seed or 0) % (2 ** 32) for s in samplings], jnp.uint32),
            jnp.asarray(counters, jnp.int32))


def generate(decoder: Decoder, prompts: Sequence[Sequence[int]], sampling: SamplingParams,
             stop_ids: frozenset[int] = frozenset()) -> list[list[int]]:
    """Static-batch generation (tests and benchmarks): every prompt in its own slot, decoded together
    until each has max_tokens tokens or a stop token (kept out of the output)."""
    if len(prompts) > decoder.slots:
        raise ValueError(f"{len(prompts)} prompts for {decoder.slots} slots")
    outputs: list[list[int]] = [[] for _ in prompts]
    samplings: list[SamplingParams | None] = [None] * decoder.slots
    tokens = np.zeros(decoder.slots, np.int32)
    positions = np.zeros(decoder.slots, np.int32)
    for slot, prompt in enumerate(prompts):
        tokens[slot] = decoder.prefill(slot, prompt, sampling)
        positions[slot] = len(prompt)
        samplings[slot] = sampling
    step = 1
    while True:
        for slot in range(len(prompts)):
            if samplings[slot] is None:
                continue
            token = int(tokens[slot])
            if token in stop_ids:
                samplings[slot] = None
                continue
            outputs[slot].append(token)
            if len(outputs[slot]) >= sampling.max_tokens or positions[slot] + 1 >= decoder.max_len:
                samplings[slot] = None
        if all(s is None for s in samplings):
            return outputs
        tokens = decoder.decode(tokens, positions, samplings, [step] * decoder.slots)
        positions += 1
        step += 1

