"""tfds: sources: a local tensorflow-datasets builder prepared as array_record, converted to shards, trained on.

Everything runs offline and without TensorFlow (tests/train/tfds_fixture.py builds the dataset).
"""

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from libs.train import data, metrics, shards, tfds_source, tokenizers
from libs.train.errors import UserError
from libs.train.tfds_source import TfdsSpec
from tests.conftest import REPO_ROOT, run_binary

tfds_fixture = pytest.importorskip("tests.train.tfds_fixture")

TRAIN_TEXTS = [f"document {i}: {'héllo wörld ' * (i % 7 + 1)}\nline two of {i}\n" for i in range(60)]
TEST_TEXTS = [f"held-out text {i} — {'abc ' * (i + 3)}\n" for i in range(30)]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A tfds data_dir with local_text/plain (train + test) and local_text/other (train only)."""
    root = tmp_path_factory.mktemp("tfds")
    tfds_fixture.prepare(root / "data", tfds_fixture.write_texts(root / "plain", {"train": TRAIN_TEXTS,
                                                                               "test": TEST_TEXTS}))
    tfds_fixture.prepare(root / "data", tfds_fixture.write_texts(root / "other", {"train": TRAIN_TEXTS}), "other")
    return root / "data"


def _documents(pattern: str, tok) -> list[str]:
    stream = data.TokenStream(pattern)
    tokens = stream.read(0, stream.total_tokens)
    assert tokens[0] == tok.eot_id  # Every document starts with the end-of-text token.
    starts = list(np.flatnonzero(tokens == tok.eot_id)) + [tokens.size]
    return [tok.decode(tokens[a + 1:b]) for a, b in itertools.pairwise(starts)]


def test_parse_spec_grammar():
    assert tfds_source.parse_spec("tfds:local_text") == TfdsSpec("local_text")
    spec = tfds_source.parse_spec("tfds:wiki40b/en:1.3.0?split=train[:90%]+test&feature=body")
    assert spec == TfdsSpec("wiki40b", "en", "1.3.0", "train[:90%]+test", "body")
    assert str(spec) == "tfds:wiki40b/en:1.3.0?split=train[:90%]+test&feature=body"
    assert spec.dataset == "wiki40b/en:1.3.0"
    assert tfds_source.parse_spec("wikipedia/20201201.en?split=validation") == TfdsSpec(
        "wikipedia", "20201201.en", None, "validation")
    assert tfds_source.is_spec("tfds:x") and not tfds_source.is_spec("stdlib") and not tfds_source.is_spec(None)
    for bad in ("tfds:", "tfds:/en", "tfds:a/b/c", "tfds:a:1.0", "tfds:a?split=", "tfds:a?shuffle=1",
                "tfds:a?split=x&split=y", "tfds:a?split"):
        with pytest.raises(UserError, match="expected tfds:NAME"):
            tfds_source.parse_spec(bad)


def test_conversion_matches_the_tokenized_documents_and_is_reused(tfds_dir, tmp_path):
    out, tok = tmp_path / "shards", tokenizers.ByteTokenizer()
    train = tfds_source.build_shards("tfds:local_text/plain", "train", "bytes", tfds_dir, out, shard_tokens=700)
    val = tfds_source.build_shards("tfds:local_text/plain", "val", "bytes", tfds_dir, out, shard_tokens=700)
    assert "tensorflow" not in sys.modules  # tensorflow_datasets ran without TensorFlow.
    assert Path(train.manifest).parent == out / "bytes/tfds/local_text/plain/1.0.0/train-train-text"
    assert len(data.match_shards(train.pattern)) > 1 and all(
        shards.read_header(p) <= 700 for p in data.match_shards(train.pattern))
    assert data.match_shards(train.pattern)[0].name == "local_text_train_000001.bin"
    assert data.match_shards(val.pattern)[0].name == "local_text_val_000000.bin"

    # In the prepared dataset's (tfds-shuffled) order, exactly the documents of each split: the default
    # validation stream is the dataset's `test` split, the training stream all of `train`.
    import tensorflow_datasets as tfds

    source = tfds.data_source("local_text/plain", split="train", data_dir=str(tfds_dir), download=False)
    expected = [source[i]["text"].decode() for i in range(len(source))]
    assert _documents(train.pattern, tok) == expected and expected != TRAIN_TEXTS
    assert sorted(_documents(train.pattern, tok)) == sorted(TRAIN_TEXTS)
    assert sorted(_documents(val.pattern, tok)) == sorted(TEST_TEXTS)
    manifest = json.loads(Path(train.manifest).read_text())
    assert manifest["train_documents"] == 60 and manifest["split"] == "train" and manifest["part"] == "all"
    assert manifest["train_tokens"] == sum(len(t.encode()) + 1 for t in TRAIN_TEXTS)

    # A second conversion reuses the shards (nothing rewritten); another feature is another stream.
    stamps = {p: p.stat().st_mtime_ns for p in Path(train.manifest).parent.iterdir()}
    again = tfds_source.build_shards("tfds:local_text/plain?split=train", "train", "bytes", tfds_dir, out,
                                     shard_tokens=700)
    assert again == train
    assert {p: p.stat().st_mtime_ns for p in Path(train.manifest).parent.iterdir()} == stamps
    titles = tfds_source.build_shards("tfds:local_text/plain?feature=title", "train", "bytes", tfds_dir, out)
    assert sorted(_documents(titles.pattern, tok)) == [f"doc_{i:04d}" for i in range(60)]


def test_without_validation_or_test_split_a_hash_slice_of_train_is_held_out(tfds_dir, tmp_path):
    tok = tokenizers.ByteTokenizer()
    streams = [tfds_source.build_shards("tfds:local_text/other", role, "bytes", tfds_dir, tmp_path, 0.2)
               for role in ("train", "val")]
    train, val = (_documents(s.pattern, tok) for s in streams)
    assert 0 < len(val) < len(train) and not set(train) & set(val)
    assert sorted(train + val) == sorted(TRAIN_TEXTS)
    assert json.loads(Path(streams[1].manifest).read_text())["part"] == "heldout"


def test_errors_say_what_to_do(tfds_dir, tmp_path):
    def error(spec, data_dir=tfds_dir):
        with pytest.raises(UserError) as e:
            tfds_source.build_shards(spec, "train", "bytes", data_dir, tmp_path / "out")
        assert "\n" not in str(e.value)
        return str(e.value)

    msg = error("tfds:local_text/plain", tmp_path / "empty")
    assert "is not prepared in" in msg and 'file_format="array_record"' in msg and "data_dir" in msg
    assert "prepared configs: other, plain" in error("tfds:local_text/nope")
    assert "prepared versions: 1.0.0" in error("tfds:local_text/plain:2.0.0")
    msg = error("tfds:local_text")
    assert "several prepared configs" in msg and "name one, e.g. tfds:local_text/other" in msg
    assert "has no split 'validation' (available: test, train)" in error("tfds:local_text/plain?split=validation")
    assert "bad split 'train[abc]'" in error("tfds:local_text/plain?split=train[abc]")
    msg = error("tfds:local_text/plain?feature=body")
    assert "no feature 'body'" in msg and "text features: text, title" in msg
    assert "is Scalar, not text" in error("tfds:local_text/plain?feature=index")

    # Prepared only as TFRecord (as tfds leaves it by default, or older tfds without a fileFormat).
    for file_format in ("tfrecord", None):
        copy = tmp_path / f"tfrecord_{file_format}" / "local_text" / "plain" / "1.0.0"
        shutil.copytree(tfds_dir / "local_text" / "plain" / "1.0.0", copy)
        info = json.loads((copy / "dataset_info.json").read_text())
        info.pop("fileFormat") if file_format is None else info.update(fileFormat=file_format)
        (copy / "dataset_info.json").write_text(json.dumps(info))
        msg = error("tfds:local_text/plain", copy.parents[2])
        assert "only as tfrecord, which needs TensorFlow" in msg and 'file_format="array_record"' in msg


def test_missing_tensorflow_datasets_says_how_to_install(monkeypatch, tfds_dir, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # `import tensorflow_datasets` fails
    with pytest.raises(UserError, match=r"need tensorflow-datasets .* pip install -e \."):
        tfds_source.build_shards("tfds:local_text/plain", "train", "bytes", tfds_dir, tmp_path)


def test_default_data_dir_is_tfds_own(monkeypatch, tfds_dir, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    assert tfds_source.default_tfds_data_dir() == tfds_dir
    stream = tfds_source.build_shards("tfds:local_text/plain", "val", "bytes", None, tmp_path)
    assert data.TokenStream(stream.pattern).total_tokens == sum(len(t.encode()) + 1 for t in TEST_TEXTS)
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert tfds_source.default_tfds_data_dir() == Path.home() / "tensorflow_datasets"


def test_make_shards_tfds_cli_and_lazy_import(tfds_dir, tmp_path):
    cmd = [sys.executable, "-m", "tools.make_shards", "--tfds=local_text/other", f"--data_dir={tfds_dir}",
           f"--out_dir={tmp_path}", "--val_fraction=0.2"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "tfds:local_text/other (feature text), tokenizer bytes (vocab 257)"
    assert lines[1].startswith("train: split train (minus_heldout)") and "converting" in result.stderr
    pattern = lines[2].rsplit(": ", 1)[1]
    library = tfds_source.build_shards("tfds:local_text/other", "val", "bytes", tfds_dir, tmp_path, 0.2)
    assert pattern == library.pattern  # The same conversion, reused by the library.
    bad = subprocess.run(cmd + ["--feature=index"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: feature 'index'")

    code = ("import sys, libs.train.tfds_source, libs.train.trainer, tools.make_shards; "
            "sys.exit('tensorflow_datasets' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, timeout=120, check=False).returncode == 0


def test_speedrun_smoke_trains_from_a_tfds_source(tfds_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_MONOREPO_DATA", str(tmp_path / "data"))  # the shard cache
    workdir = tmp_path / "run"
    proc = run_binary("experiments.speedrun", "--gin_file=configs/speedrun/smoke.gin",
                      "--gin_bindings=train.train_data = 'tfds:local_text/plain'",
                      "--gin_bindings=train.val_data = 'tfds:local_text/plain'",
                      f"--gin_bindings=train.tfds_data_dir = '{tfds_dir}'",
                      "--gin_bindings=train.total_steps = 6", "--gin_bindings=train.eval_every = 3",
                      "--gin_bindings=train.log_every = 1", "--gin_bindings=train.seq_len = 32",
                      "--gin_bindings=train.global_batch_size = 4", "--gin_bindings=train.val_batch_size = 4",
                      "--gin_bindings=train.val_tokens = 256", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "data" / "bytes" / "tfds" / "local_text" / "plain" / "1.0.0").iterdir())
    summary = metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "summary")[-1]
    assert summary["status"] == "complete" and summary["step"] == 6
    assert len(metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "val")) >= 2
