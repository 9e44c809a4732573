"""Meta's Llama checkpoints: `consolidated.NN.pth` tensor-parallel shards + params.json, read without torch.

A .pth is a zip: `<name>/data.pkl` (a pickle of the state dict) and one raw storage per tensor under
`<name>/data/<key>`. The pickle is read by a restricted unpickler that resolves only
`torch._utils._rebuild_tensor_v2`, the float storage types and `collections.OrderedDict`; any other global
is refused. Tensors stay lazy (storage key, offset, size, stride) until converted, so a tensor's bytes are
read only when it is its turn. Shards merge as Meta's model-parallel layers split them: column-parallel
weights (wq, wk, wv, w1, w3, output) on dim 0, row-parallel ones (wo, w2) on dim 1, the embedding on dim 1
(ParallelEmbedding splits the model dim); norms are replicated. Meta's RoPE is interleaved.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np

from libs.models import llama
from libs.models.weights import layout
from libs.train.errors import UserError

NAMES = layout.NameMap(
    top={"embed": "tok_embeddings.weight", "norm": "norm.weight", "head": "output.weight"},
    layer_name="layers.{layer}.{part}.weight",
    parts={"attn_norm": "attention_norm", "wq": "attention.wq", "wk": "attention.wk", "wv": "attention.wv",
           "wo": "attention.wo", "mlp_norm": "ffn_norm", "w1": "feed_forward.w1", "w2": "feed_forward.w2",
           "w3": "feed_forward.w3"},
)
CONCAT_AXIS = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "head": 0, "wo": 1, "w2": 1, "embed": 1}
STORAGES = {"FloatStorage": np.dtype(np.float32), "HalfStorage": np.dtype(np.float16),
            "BFloat16Storage": np.dtype(ml_dtypes.bfloat16)}
_SKIPPED = ("rope.freqs",)  # Llama 2 saved its RoPE table


@dataclasses.dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _Storage:
    archive: zipfile.ZipFile
    record: str
    dtype: np.dtype
    numel: int


@dataclasses.dataclass(frozen=True)
class LazyTensor:
    """A tensor of a .pth whose bytes are read by `load()`."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def load(self) -> np.ndarray:
        try:
            flat = np.frombuffer(self.storage.archive.read(self.storage.record), self.storage.dtype)
        except KeyError:
            raise UserError(f"{self.storage.archive.filename}: storage {self.storage.record} is missing") from None
        if flat.size != self.storage.numel:
            raise UserError(f"{self.storage.archive.filename}: storage {self.storage.record} holds {flat.size} "
                            f"elements, the pickle says {self.storage.numel}")
        size = int(np.prod(self.shape))
        if size == 0:
            return np.zeros(self.shape, flat.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
        if self.offset < 0 or min(self.stride, default=0) < 0 or last >= flat.size:
            raise UserError(f"{self.storage.archive.filename}: a tensor reaches past its storage {self.storage.record}")
        if self.stride == tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape))):  # contiguous
            return flat[self.offset:self.offset + size].reshape(self.shape)
        strides = tuple(s * flat.itemsize for s in self.stride)
        return np.lib.stride_tricks.as_strided(flat[self.offset:], self.shape, strides, writeable=False).copy()


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *metadata) -> LazyTensor:
    del requires_grad, hooks, metadata
    if not isinstance(storage, _Storage) or len(size) != len(stride):
        raise TypeError("_rebuild_tensor_v2 called without a storage or with mismatched size and stride")
    return LazyTensor(storage, int(offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    """Resolves only tensors, their storages and OrderedDict; any other global is a UserError."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGES:
            return _StorageType(STORAGES[name])
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise UserError(f"{self.archive.filename}: refusing pickle global {module}.{name} (only tensors and "
                        f"storages of {', '.join(STORAGES)} are allowed)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise UserError(f"{self.archive.filename}: unexpected persistent id {pid!r:.80}")
        _, kind, key, _location, numel = pid
        return _Storage(self.archive, f"{self.prefix}/data/{key}", kind.dtype, int(numel))


def open_pth(path: str, archive: zipfile.ZipFile) -> dict[str, LazyTensor]:
    """The state dict of a zip-format .pth as lazy tensors (`archive` must stay open for `load()`)."""
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise UserError(f"{path}: expected one <name>/data.pkl in the archive, found {len(pickles)}")
    with archive.open(pickles[0]) as f:
        try:
            state = _Unpickler(f, archive, pickles[0].split("/")[0]).load()
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 (a malformed pickle fails in many ways)
            raise UserError(f"{path}: unreadable pickle ({type(e).__name__}: {str(e)[:200]!r})") from None
    if not isinstance(state, dict) or not all(isinstance(v, LazyTensor) for v in state.values()):
        raise UserError(f"{path}: expected a dict of tensors")
    return state


def _open_archive(path: str) -> zipfile.ZipFile:
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a zip-format PyTorch checkpoint (legacy .pth files are not supported)")
    return zipfile.ZipFile(path)


def config_of(folder: str, shard0: dict[str, LazyTensor]) -> llama.LlamaConfig:
    """The LlamaConfig of params.json (a vocab_size of -1 is read off the embedding's shape)."""
    path = os.path.join(folder, "params.json")
    try:
        with open(path) as f:
            p = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not readable ({e})") from None
    try:
        return _config(path, p, shard0)
    except KeyError as e:
        raise UserError(f"{path}: lacks {e} (or the checkpoint lacks that tensor)") from None


def _config(path: str, p: dict, shard0: dict[str, LazyTensor]) -> llama.LlamaConfig:
    vocab = p.get("vocab_size", -1)
    if vocab <= 0:
        vocab = shard0[NAMES.top["embed"]].shape[0]
    scaled = bool(p.get("use_scaled_rope", False))
    return layout.make_config(
        path, vocab_size=vocab, num_layers=p["n_layers"], model_dim=p["dim"], num_heads=p["n_heads"],
        num_kv_heads=p.get("n_kv_heads") or p["n_heads"], ffn_dim_multiplier=p.get("ffn_dim_multiplier"),
        multiple_of=p.get("multiple_of", 256), norm_eps=float(p.get("norm_eps", 1e-5)),
        rope_theta=float(p.get("rope_theta", 10000.0)), rope_style="interleaved", use_scaled_rope=scaled,
        # Meta's reference apply_scaling: factor 8, high frequency factor 4 unless params.json says otherwise.
        rope_scale_factor=float(p.get("rope_scaling_factor") or 8.0),
        rope_high_freq_factor=float(p.get("rope_high_freq_factor") or 4.0),
        max_seq_len=131072 if scaled else 8192, tie_embeddings=NAMES.top["head"] not in shard0)


def _merge(role: str, pieces: list[np.ndarray]) -> np.ndarray:
    if len(pieces) == 1 or role not in CONCAT_AXIS:
        return pieces[0]
    return np.concatenate(pieces, axis=CONCAT_AXIS[role])


def tensors(folder: str, shards: list[dict[str, LazyTensor]], archives: list[zipfile.ZipFile]) -> layout.Tensors:
    """(our param path, array in our layout) per tensor, merged across the shards, one at a time."""
    try:
        for name in shards[0]:
            if name in _SKIPPED:
                continue
            found = NAMES.role(name)
            if found is None:
                raise layout.unknown_tensor(folder, name)
            if any(name not in shard for shard in shards):
                raise UserError(f"{folder}: tensor {name} is missing from some consolidated.*.pth shards")
            merged = _merge(found[0], [shard[name].load() for shard in shards])
            yield layout.param_path(*found), layout.to_ours(found[0], merged)
    finally:
        for archive in archives:
            archive.close()


def read(folder: str) -> tuple[llama.LlamaConfig, layout.Tensors]:
    """The config of a Meta checkpoint folder and a stream of its (merged) params."""
    if os.path.isfile(folder):
        folder = os.path.dirname(os.path.abspath(folder))
    files = sorted(glob.glob(os.path.join(folder, "consolidated.*.pth")))
    if not files:
        raise UserError(f"{folder}: no consolidated.*.pth files found")
    archives = []
    try:
        for path in files:
            archives.append(_open_archive(path))
        shards = [open_pth(path, archive) for path, archive in zip(files, archives)]
        cfg = config_of(folder, shards[0])
    except BaseException:
        for archive in archives:
            archive.close()
        raise
    return cfg, tensors(folder, shards, archives)
