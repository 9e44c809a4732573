"""tensorflow-datasets as a training data source, without TensorFlow.

A source is written

    tfds:NAME[/CONFIG][:VERSION][?split=SPLIT][&feature=FEATURE]

e.g. `tfds:local_text`, `tfds:wiki40b/en?split=validation`, `tfds:imdb_reviews/plain_text:1.0.0?split=train[:90%]`.
NAME/CONFIG:VERSION is tfds's own naming (`:` is its version separator, so the options follow `?`). Without
CONFIG the only prepared config is used; without VERSION the newest prepared one. SPLIT is any tfds split
expression (`train`, `test`, `train[:10%]`, `train+test`). FEATURE is a scalar text (or bytes) feature,
`text` by default.

Splits: a training stream reads SPLIT, else `train`; a validation stream reads SPLIT, else `validation`, else
`test`. A dataset with neither holds out a hash-chosen `val_fraction` of `train`'s examples for validation
(`corpus.split_keys` over the example indices), and the default training stream skips exactly those.

The dataset must already be prepared in the tfds data_dir (`$TFDS_DATA_DIR`, else `~/tensorflow_datasets`) in
a random-access format: array_record (parquet works too). It is opened with
`tfds.builder_from_directory(...).as_data_source(split)`, so neither TensorFlow nor tf.data is imported; a
TFRecord-only dataset is refused with what to do. tensorflow_datasets itself is imported only when a source
is opened.

Each stream is converted once into FineWeb-format token shards (every document is `[eot] + tokens`, in the
prepared dataset's order, which tfds shuffled deterministically when preparing) and then read by the usual
deterministic per-process `data.Loader`: a batch stays a pure function of the step, reading costs nothing on
the step path, and many processes share one conversion. The shards live in

    <data dir>/<tokenizer>/tfds/NAME[/CONFIG]/VERSION/<train|val>-<split>-<feature>/

(`corpus.default_data_dir()`, the stdlib corpus's convention) with a manifest; a rerun with the same dataset,
split, feature and tokenizer reuses them, and a lock serialises concurrent conversions (`corpus.build_once`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from absl import logging

from libs.train import corpus, shards, tokenizers
from libs.train.errors import UserError

SCHEME = "tfds:"
DEFAULT_FEATURE = "text"
ROLES = ("train", "val")
VAL_SPLITS = ("validation", "test")  # the validation stream's default, first present wins
RANDOM_ACCESS_FORMATS = ("array_record", "parquet")
_OPTIONS = ("split", "feature")
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_FORMAT_VERSION = 1
_READ_BATCH = 256
_LOG_EVERY_S = 10.0


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
    """A parsed `tfds:` source; `split` None means the role's default split."""

    name: str
    config: str | None = None
    version: str | None = None
    split: str | None = None
    feature: str = DEFAULT_FEATURE

    def __str__(self) -> str:
        text = SCHEME + self.name + (f"/{self.config}" if self.config else "")
        text += f":{self.version}" if self.version else ""
        options = [f"split={self.split}"] if self.split else []
        options += [f"feature={self.feature}"] if self.feature != DEFAULT_FEATURE else []
        return text + ("?" + "&".join(options) if options else "")

    @property
    def dataset(self) -> str:
        """NAME[/CONFIG][:VERSION], as tfds writes it."""
        return str(dataclasses.replace(self, split=None, feature=DEFAULT_FEATURE))[len(SCHEME):]


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A prepared dataset version found in a tfds data_dir (its `dataset_info.json` read as JSON)."""

    spec: TfdsSpec
    directory: Path  # <data_dir>/NAME[/CONFIG]/VERSION
    info: dict
    config: str | None  # the config found (the spec's, or the only one prepared)

    @property
    def version(self) -> str:
        return self.directory.name

    @property
    def split_names(self) -> list[str]:
        return [s["name"] for s in self.info.get("splits", [])]


@dataclasses.dataclass(frozen=True)
class TfdsShards:
    """One converted stream: the glob of its shards and its manifest."""

    pattern: str
    manifest: str


def is_spec(source: Any) -> bool:
    """Whether a train_data / val_data value names a tfds source."""
    return isinstance(source, str) and source.startswith(SCHEME)


def parse_spec(spec: str) -> TfdsSpec:
    """Parses `tfds:NAME[/CONFIG][:VERSION][?split=...&feature=...]` (the `tfds:` prefix is optional)."""
    text = spec.removeprefix(SCHEME)
    head, _, query = text.partition("?")
    dataset, _, version = head.partition(":")
    name, _, config = dataset.partition("/")
    grammar = "expected tfds:NAME[/CONFIG][:VERSION][?split=SPLIT][&feature=FEATURE]"
    for part, what in ((name, "NAME"), (config, "CONFIG")):
        if (part or what == "NAME") and not _NAME_RE.match(part):
            raise UserError(f"{spec!r}: bad {what} {part!r}; {grammar}")
    if version and not _VERSION_RE.match(version):
        raise UserError(f"{spec!r}: bad VERSION {version!r} (like 1.0.0); {grammar}")
    options: dict[str, str] = {}
    for item in query.split("&") if query else []:
        key, eq, value = item.partition("=")
        if key not in _OPTIONS or not eq or not value.strip() or key in options:
            raise UserError(f"{spec!r}: bad option {item!r} (options: split=..., feature=..., each once); {grammar}")
        options[key] = value.strip()
    return TfdsSpec(name, config or None, version or None, options.get("split"),
                    options.get("feature", DEFAULT_FEATURE))


def default_tfds_data_dir() -> Path:
    """tfds's own default: `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`."""
    return Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets").expanduser()


def _subdirs(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(d.name for d in directory.iterdir()
                  if d.is_dir() and not d.name.startswith((".", "incomplete.")))


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def find_prepared(spec: TfdsSpec, data_dir: str | os.PathLike | None = None) -> Prepared:
    """Locates the prepared dataset version of `spec` (no tfds import), or a UserError saying what to do."""
    root = Path(data_dir).expanduser() if data_dir else default_tfds_data_dir()
    base, config = root / spec.name, spec.config
    children = _subdirs(base)
    has_configs = children and not any(_VERSION_RE.match(c) for c in children)
    if config and config not in children:
        found = f"prepared configs: {', '.join(children)}" if has_configs else ""
        raise _not_prepared(spec, root, found or (f"prepared without configs: tfds:{spec.name}" if children else ""))
    if not config and has_configs:
        if len(children) > 1:
            raise UserError(f"tfds:{spec.name} has several prepared configs in {root} ({', '.join(children)}): "
                            f"name one, e.g. tfds:{spec.name}/{children[0]}")
        config = children[0]
    base = base / config if config else base
    versions = [v for v in _subdirs(base) if _VERSION_RE.match(v) and (base / v / "dataset_info.json").is_file()]
    if not versions or spec.version not in (None, *versions):
        raise _not_prepared(spec, root, f"prepared versions: {', '.join(versions)}" if versions else "")
    directory = base / (spec.version or max(versions, key=_version_key))
    try:
        info = json.loads((directory / "dataset_info.json").read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{directory / 'dataset_info.json'}: unreadable ({e}); prepare the dataset again") from None
    file_format = info.get("fileFormat") or "tfrecord"  # tfds wrote no fileFormat for TFRecord in older versions
    if file_format not in RANDOM_ACCESS_FORMATS:
        raise UserError(
            f"tfds:{spec.dataset} is prepared in {directory} only as {file_format}, which needs TensorFlow to read: "
            f're-prepare it with download_and_prepare(file_format="array_record"), or where TensorFlow is installed '
            f"convert it: tfds convert_format --dataset_version_dir={directory} --out_file_format=array_record "
            f"--out_dir=<new dir>")
    return Prepared(spec, directory, info, config)


def _not_prepared(spec: TfdsSpec, root: Path, found: str) -> UserError:
    return UserError(
        f"tfds:{spec.dataset} is not prepared in {root}{f' ({found})' if found else ''}: prepare it with "
        f'tensorflow-datasets as array_record (`builder.download_and_prepare(file_format="array_record")`, or '
        f"`tfds build {spec.dataset} --file_format=array_record` where TensorFlow is installed), or point the "
        "data_dir (train.tfds_data_dir, make_shards --data_dir) at the directory that holds it")


def import_tfds():
    """Imports tensorflow_datasets (never TensorFlow), or a UserError saying how to install it."""
    try:
        import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    except ImportError as e:
        raise _install_error(e) from None
    return tfds


def _install_error(e: ImportError) -> UserError:
    return UserError(f"tfds: sources need tensorflow-datasets and array_record ({e}); both are core dependencies "
                     "of this project: pip install -e . (or pip install 'tensorflow-datasets>=4.9,<5' "
                     "'array_record>=0.8,<1'); TensorFlow is not needed")


def open_data_source(prepared: Prepared, split: str):
    """Returns `(data_source, features)`: random-access numpy records of `split` and the FeaturesDict."""
    names = prepared.split_names
    for part in split.split("+"):
        base = re.split(r"[\[\s]", part.strip(), maxsplit=1)[0]
        if base not in names:
            raise UserError(f"tfds:{prepared.spec.dataset} has no split {base!r} (available: {', '.join(names)})")
    tfds = import_tfds()
    builder = tfds.builder_from_directory(str(prepared.directory))
    try:
        source = builder.as_data_source(split)
    except ValueError as e:
        raise UserError(f"tfds:{prepared.spec.dataset}: bad split {split!r} ({str(e).splitlines()[0]})") from None
    except ImportError as e:  # array_record is imported when the first split is opened
        raise _install_error(e) from None
    except NotImplementedError as e:
        raise UserError(f"tfds:{prepared.spec.dataset} in {prepared.directory}: {str(e).splitlines()[0]} "
                        're-prepare it with file_format="array_record"') from None
    return source, builder.info.features


def check_text_feature(prepared: Prepared, features) -> None:
    """A UserError unless `spec.feature` is a scalar string (text or bytes) feature."""
    feature = prepared.spec.feature
    text_features = sorted(k for k, f in features.items() if _is_text(f))
    listed = f"text features: {', '.join(text_features) or 'none'}; all: {', '.join(sorted(features))}"
    if feature not in features:
        raise UserError(f"tfds:{prepared.spec.dataset} has no feature {feature!r} ({listed}); "
                        "choose one with ?feature=NAME (make_shards: --feature)")
    if not _is_text(features[feature]):
        raise UserError(f"feature {feature!r} of tfds:{prepared.spec.dataset} is {type(features[feature]).__name__}, "
                        f"not text ({listed}); choose one with ?feature=NAME (make_shards: --feature)")


def _is_text(feature) -> bool:
    return getattr(feature, "shape", None) == () and str(getattr(feature, "np_dtype", "")) == "object"


def stream_plan(prepared: Prepared, role: str) -> tuple[str, str]:
    """Returns (split, part) of a stream; part is 'all', 'heldout' or 'minus_heldout' (of `train`)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    names = prepared.split_names
    holdout = not any(s in names for s in VAL_SPLITS)
    if role == "train":
        split = prepared.spec.split or "train"
        return split, "minus_heldout" if holdout and split == "train" else "all"
    if prepared.spec.split:
        return prepared.spec.split, "all"
    return ("train", "heldout") if holdout else (next(s for s in VAL_SPLITS if s in names), "all")


def _slug(split: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", split)
    return slug if slug == split else f"{slug}{hashlib.sha1(split.encode()).hexdigest()[:8]}"


class _Progress:
    """Logs documents and tokens done, with rates, every `_LOG_EVERY_S` seconds and at the end."""

    def __init__(self, label: str, total: int):
        self.label, self.total = label, total
        self.start = self.last = time.perf_counter()

    def update(self, documents: int, tokens: int, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < _LOG_EVERY_S:
            return
        self.last, elapsed = now, max(now - self.start, 1e-9)
        logging.info("%s: %d/%d documents, %d tokens in %.1f s (%.0f documents/s, %.0f tokens/s)", self.label,
                     documents, self.total, tokens, elapsed, documents / elapsed, tokens / elapsed)


def write_documents(source, indices, feature: str, tok: tokenizers.Tokenizer, writer: shards.ShardWriter,
                    label: str) -> int:
    """Writes records `indices` of `source` as `[eot] + tokens(record[feature])`; returns how many."""
    progress = _Progress(label, len(indices))
    for start in range(0, len(indices), _READ_BATCH):
        for record in source.__getitems__(list(indices[start:start + _READ_BATCH])):
            value = record[feature]
            text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
            writer.add([tok.eot_id])
            writer.add(tok.encode_array(text))
        progress.update(min(start + _READ_BATCH, len(indices)), writer.total_tokens)
    progress.update(len(indices), writer.total_tokens, final=True)
    return len(indices)


def build_shards(
    spec: str | TfdsSpec,
    role: str = "train",
    tokenizer: str = "bytes",
    data_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.05,
    shard_tokens: int = 10_000_000,
    force: bool = False,
) -> TfdsShards:
    """Converts (once) the `role` stream ('train' or 'val') of a tfds source into token shards.

    Args:
      spec: `tfds:NAME[/CONFIG][:VERSION][?split=...&feature=...]` or a parsed TfdsSpec.
      role: 'train' or 'val'; picks the default split and the shard names.
      tokenizer: 'bytes', 'gpt2' or 'auto'.
      data_dir: the tfds data_dir holding the prepared dataset (None: `default_tfds_data_dir()`).
      out_dir: root of the shard cache (None: `corpus.default_data_dir()`).
      val_fraction: fraction of `train` held out when the dataset has no validation or test split.
      shard_tokens: maximum tokens per shard file.
      force: convert again even if matching shards exist.
    """
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    prepared = find_prepared(spec, data_dir)
    split, part = stream_plan(prepared, role)
    tok = tokenizers.get_tokenizer(tokenizer)
    dataset_path = [spec.name, *([prepared.config] if prepared.config else []), prepared.version]
    stream_dir = Path(out_dir or corpus.default_data_dir(), tok.name, "tfds", *dataset_path,
                      f"{role}-{_slug(split)}-{spec.feature}")
    settings = {
        "format_version": _FORMAT_VERSION,
        "dataset_dir": str(prepared.directory.resolve()),
        "dataset_splits": {s["name"]: [s.get("shardLengths"), s.get("numBytes")]
                           for s in prepared.info.get("splits", [])},
        "split": split, "part": part, "val_fraction": None if part == "all" else val_fraction,
        "feature": spec.feature, "tokenizer": tok.name, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id,
        "shard_tokens": shard_tokens,
    }

    def write(writer: shards.ShardWriter) -> int:
        source, features = open_data_source(prepared, split)
        check_text_feature(prepared, features)
        indices = list(range(len(source)))
        if part != "all":
            kept, heldout = corpus.split_keys([str(i) for i in indices], val_fraction)
            indices = [int(i) for i in (heldout if part == "heldout" else kept)]
        label = f"tfds:{spec.dataset} {split}{'' if part == 'all' else f' ({part})'} -> {role}"
        logging.info("%s: converting %d documents with tokenizer %s into %s", label, len(indices), tok.name,
                     stream_dir)
        return write_documents(source, indices, spec.feature, tok, writer, label)

    paths = corpus.build_once(stream_dir, spec.name, settings, {role: write}, shard_tokens, force, unit="documents")
    return TfdsShards(paths.train_pattern if role == "train" else paths.val_pattern, paths.manifest)
